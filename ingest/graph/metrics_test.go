package graph

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Every bounded label value of the client's counters is there, at 0, from registration:
// dashboards and increase() alerts see the first rate limit or token error.
func TestLabelledCountersStartAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	kinds := []string{kindConversations, kindMessages, kindAccounts, kindBatch}
	outcomes := []string{outcomeOK, outcomeRateLimited, outcomeToken, outcomeTransient, outcomeError}
	tests := []struct {
		name string
		vec  *prometheus.CounterVec
		want int
	}{
		{"convsync_graph_requests_total", m.requests, len(kinds) * len(outcomes)},
		{"convsync_graph_batch_operations_total", m.ops, len(outcomes) + 1}, // and null
		{"convsync_graph_throttle_waits_total", m.throttleWaits, 2},         // rate, pause
	}
	for _, tt := range tests {
		if n := testutil.CollectAndCount(tt.vec); n != tt.want {
			t.Errorf("%s has %d series on a fresh registry, want %d", tt.name, n, tt.want)
		}
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues(kindBatch, outcomeToken)); got != 0 {
		t.Errorf("convsync_graph_requests_total{kind=batch,outcome=token} = %v, want 0", got)
	}
	if n := testutil.CollectAndCount(m.requests); n != len(kinds)*len(outcomes) {
		t.Errorf("convsync_graph_requests_total grew to %d series by reading one, want %d", n, len(kinds)*len(outcomes))
	}
}
