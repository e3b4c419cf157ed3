package ingest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A labelled counter that appears only at its first increment shows nothing on a
// dashboard and gives increase() nothing to compare, so an alert misses the first one.
// Every bounded label value is there, at 0, from registration.
func TestLabelledCountersStartAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	types := []string{"message", "echo", "delivery", "read", "reaction", "edit", "postback", "referral", "optin", "conversation_changed", "unknown"}
	// Counted before any child is looked up: a lookup would create it.
	if n := testutil.CollectAndCount(m.events); n != len(types) {
		t.Errorf("convsync_webhook_events_total has %d series on a fresh registry, want one per webhook event type (%d)", n, len(types))
	}
	for _, typ := range types {
		c, err := m.events.GetMetricWithLabelValues(typ)
		if err != nil {
			t.Fatal(err)
		}
		if got := testutil.ToFloat64(c); got != 0 {
			t.Errorf("convsync_webhook_events_total{type=%q} = %v on a fresh registry, want 0", typ, got)
		}
	}
	if n := testutil.CollectAndCount(m.verify); n != 2 {
		t.Errorf("convsync_webhook_verifications_total has %d series on a fresh registry, want 2 (ok, forbidden)", n)
	}
	if n := testutil.CollectAndCount(m.produce); n != 2 {
		t.Errorf("convsync_webhook_produce_duration_seconds has %d series on a fresh registry, want 2 (ok, error)", n)
	}
}
