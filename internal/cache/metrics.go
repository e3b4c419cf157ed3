package cache

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

type metrics struct {
	requests      *prometheus.CounterVec
	writes        *prometheus.CounterVec
	invalidations *prometheus.CounterVec
	checks        *prometheus.CounterVec
	// requests' children, resolved once: a hit is counted on every read.
	hit, miss, errors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, kind string) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "convsync_cache_requests_total",
			Help: "Cache reads by result: hit, miss, error (an error is served from Postgres).",
		}, []string{"result"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "convsync_cache_writes_total",
			Help: "Cache writes by result: stored, rejected (something newer was there), error.",
		}, []string{"result"}),
		invalidations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "convsync_cache_invalidations_total",
			Help: "Markers raised after projector commits, by result: ok, error, unpublished (raised in Redis, but other processes' near caches were not told).",
		}, []string{"result"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "convsync_cache_checks_total",
			Help: "Checks of hit entries against the database (at most one per entry per CACHE_MAX_STALENESS/2 per process), by result: current, stale (newer rows: a marker was lost, now raised again), error.",
		}, []string{"result"}),
	}
	backend := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "convsync_cache_backend",
		Help:        "1 for the cache store in use (label kind: redis or memory).",
		ConstLabels: prometheus.Labels{"kind": kind},
	})
	backend.Set(1)
	reg.MustRegister(m.requests, m.writes, m.invalidations, m.checks, backend)
	m.hit, m.miss, m.errors = m.requests.WithLabelValues("hit"), m.requests.WithLabelValues("miss"), m.requests.WithLabelValues("error")
	// Every bounded label value from the start: dashboards and increase() see the first one.
	for _, r := range []string{"stored", "rejected", "error"} {
		m.writes.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "error", "unpublished"} {
		m.invalidations.WithLabelValues(r)
	}
	for _, r := range []string{"current", "stale", "error"} {
		m.checks.WithLabelValues(r)
	}
	return m
}

// poolCollector reports go-redis pool stats at scrape time.
type poolCollector struct {
	c                                                    redis.UniversalClient
	hits, misses, timeouts, total, idle, stale, waitTime *prometheus.Desc
}

func newPoolCollector(c redis.UniversalClient) *poolCollector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &poolCollector{c: c,
		hits:     d("convsync_redis_pool_hits_total", "Free connections found in the pool."),
		misses:   d("convsync_redis_pool_misses_total", "Connections that had to be made."),
		timeouts: d("convsync_redis_pool_timeouts_total", "Waits for a connection that timed out."),
		total:    d("convsync_redis_pool_connections", "Connections in the pool."),
		idle:     d("convsync_redis_pool_idle_connections", "Idle connections in the pool."),
		stale:    d("convsync_redis_pool_stale_connections_total", "Stale connections removed from the pool."),
		waitTime: d("convsync_redis_pool_wait_seconds_total", "Time spent waiting for a connection."),
	}
}

func (p *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{p.hits, p.misses, p.timeouts, p.total, p.idle, p.stale, p.waitTime} {
		ch <- d
	}
}

func (p *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := p.c.PoolStats()
	ch <- prometheus.MustNewConstMetric(p.hits, prometheus.CounterValue, float64(s.Hits))
	ch <- prometheus.MustNewConstMetric(p.misses, prometheus.CounterValue, float64(s.Misses))
	ch <- prometheus.MustNewConstMetric(p.timeouts, prometheus.CounterValue, float64(s.Timeouts))
	ch <- prometheus.MustNewConstMetric(p.total, prometheus.GaugeValue, float64(s.TotalConns))
	ch <- prometheus.MustNewConstMetric(p.idle, prometheus.GaugeValue, float64(s.IdleConns))
	ch <- prometheus.MustNewConstMetric(p.stale, prometheus.CounterValue, float64(s.StaleConns))
	ch <- prometheus.MustNewConstMetric(p.waitTime, prometheus.CounterValue, float64(s.WaitDurationNs)/1e9)
}
