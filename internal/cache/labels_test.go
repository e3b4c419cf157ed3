package cache_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/convsync/convsync/internal/cache"
	"github.com/convsync/convsync/internal/logging"
	"github.com/convsync/convsync/internal/testenv"
)

// Labelled counters exist at 0 from registration: a dashboard shows them and increase()
// sees their first step.
func TestLabelledCountersStartAtZero(t *testing.T) {
	rc, prefix := testenv.Redis(t)
	reg := prometheus.NewRegistry()
	cfg := cache.Defaults()
	cfg.Prefix = prefix
	cache.New(cache.NewRedis(rc, prefix), cfg, reg, logging.Discard())
	want := map[string][]string{
		"convsync_cache_requests_total":      {"hit", "miss", "error"},
		"convsync_cache_writes_total":        {"stored", "rejected", "error"},
		"convsync_cache_invalidations_total": {"ok", "error", "unpublished"},
		"convsync_cache_checks_total":        {"current", "stale", "error"},
		"convsync_cache_near_resets_total":   {"subscribed", "lost", "flush"},
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = map[string]bool{}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				got[mf.GetName()][l.GetValue()] = true
			}
		}
	}
	for name, values := range want {
		for _, v := range values {
			if !got[name][v] {
				t.Errorf("a fresh registry lacks %s{%s}: it would appear only at its first increment", name, v)
			}
		}
	}
}
