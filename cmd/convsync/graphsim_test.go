package main

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/convsync/convsync/ingest/graph"
	"github.com/convsync/convsync/internal/graphsim"
)

// `convsync graphsim --page-rate 2`, as its help suggests for Meta's limit, reports usage
// the way Meta does: a share of a rolling hour's budget. The client with its defaults
// then reads a page at 2 calls per second without pausing. (It used to report the
// one-second window's share: the second call of each second read 100%, the client
// paused 30 s, and a backfill of 50 pages took more than 10 minutes.)
func TestGraphsimUsageLetsTheClientRunAtMetasRate(t *testing.T) {
	cfg, _, err := graphsimConfig([]string{"--pages", "1", "--conversations", "60", "--page-rate", "2"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HourlyBudget != graphsim.DefaultHourlyBudget {
		t.Errorf("graphsim --page-rate 2 has an hourly budget of %d, want %d by default", cfg.HourlyBudget, graphsim.DefaultHourlyBudget)
	}
	sim, err := graphsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	gcfg := graph.Defaults()
	gcfg.BaseURL, gcfg.Version, gcfg.PageSize = srv.URL, sim.Version(), 20 // 3 calls of the inbox's 54 threads
	reg := prometheus.NewRegistry()
	gc, err := graph.New(gcfg, nil, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	page := sim.Pages()[0]
	for _, err := range gc.Conversations(ctx, page.ID, page.AccessToken, graph.FolderInbox, time.Time{}, nil) {
		if err != nil {
			t.Fatalf("Conversations(%s) error = %v, want the walk done in about a second", page.ID, err)
		}
	}
	if n := pauses(t, reg); n != 0 {
		t.Errorf("the client paused %v times on usage headers, want none: 3 calls of an hourly budget of %d", n, cfg.HourlyBudget)
	}

	cfg, _, err = graphsimConfig([]string{"--hourly-budget", "100"})
	if err != nil || cfg.HourlyBudget != 100 {
		t.Errorf("graphsim --hourly-budget 100 = %d, %v; want 100", cfg.HourlyBudget, err)
	}
	if _, _, err := graphsimConfig([]string{"--hourly-budget", "0"}); err == nil {
		t.Error("graphsim --hourly-budget 0 is accepted, want an error")
	}
}

// pauses is the graph client's convsync_graph_throttle_waits_total{reason="pause"}.
func pauses(t *testing.T, g prometheus.Gatherer) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "convsync_graph_throttle_waits_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == "pause" {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}
