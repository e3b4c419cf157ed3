package backfill

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Before any backfill, every outcome and type is there at 0, so the Backfill runs panel
// shows zeros and ConvsyncBackfillFailures' increase() sees the first failure.
func TestLabelledCountersStartAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := newMetrics(reg); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		`convsync_backfill_pages_total{outcome="ok"}`:         true,
		`convsync_backfill_pages_total{outcome="token"}`:      true,
		`convsync_backfill_pages_total{outcome="error"}`:      true,
		`convsync_backfill_events_total{type="conversation"}`: true,
		`convsync_backfill_events_total{type="message"}`:      true,
		`convsync_backfill_events_total{type="page_synced"}`:  true,
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetType().String() != "COUNTER" || len(m.GetLabel()) != 1 {
				continue
			}
			l := m.GetLabel()[0]
			series := mf.GetName() + "{" + l.GetName() + `="` + l.GetValue() + `"}`
			if !want[series] {
				t.Errorf("fresh registry has series %s, which the test does not know", series)
			}
			if v := m.GetCounter().GetValue(); v != 0 {
				t.Errorf("%s = %v on a fresh registry, want 0", series, v)
			}
			delete(want, series)
		}
	}
	for series := range want {
		t.Errorf("fresh registry lacks %s: it would appear only at its first increment", series)
	}
}
