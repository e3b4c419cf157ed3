package backfill

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/convsync/convsync/ingest/graph"
)

type metrics struct {
	pages       *prometheus.CounterVec
	events      *prometheus.CounterVec
	pageSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		pages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "convsync_backfill_pages_total",
			Help: "Pages backfilled, by outcome (ok, token: the token was rejected, error).",
		}, []string{"outcome"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "convsync_backfill_events_total",
			Help: "Events appended by backfills, by type (conversation, message, page_synced).",
		}, []string{"type"}),
		pageSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "convsync_backfill_page_seconds",
			Help:    "Time to backfill one Page.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}),
	}
	for _, c := range []prometheus.Collector{m.pages, m.events, m.pageSeconds} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register backfill metrics: %w", err)
		}
	}
	// Every outcome and type from the start: the Backfill runs panel shows zeros before
	// the first run, and ConvsyncBackfillFailures' increase() sees the first failure.
	for _, o := range []string{"ok", "token", "error"} {
		m.pages.WithLabelValues(o)
	}
	for _, typ := range []string{"conversation", "message", "page_synced"} {
		m.events.WithLabelValues(typ)
	}
	return m, nil
}

func outcomeOf(err error) string {
	if graph.IsTokenError(err) {
		return "token"
	}
	return "error"
}
