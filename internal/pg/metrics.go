package pg

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Collector reports a pool's state at scrape time from pgxpool.Stat: no polling
// goroutine. pool names the pool ("primary", "read") and is the only label.
type Collector struct {
	pool *pgxpool.Pool
	name string

	conns, max, acquires, emptyAcquires, acquireSeconds, canceled *prometheus.Desc
}

// NewCollector returns a collector for p; register it on the service's registry.
func NewCollector(name string, p *pgxpool.Pool) *Collector {
	l := prometheus.Labels{"pool": name}
	return &Collector{
		pool: p, name: name,
		conns: prometheus.NewDesc("convsync_pg_pool_connections",
			"Connections in the pool by state (idle, acquired, constructing) and total.", []string{"state"}, l),
		max: prometheus.NewDesc("convsync_pg_pool_max_connections",
			"The pool's maximum size (PG_POOL_MAX).", nil, l),
		acquires: prometheus.NewDesc("convsync_pg_pool_acquires_total",
			"Connections acquired from the pool.", nil, l),
		emptyAcquires: prometheus.NewDesc("convsync_pg_pool_acquire_waits_total",
			"Acquires that had to wait because the pool had no idle connection.", nil, l),
		acquireSeconds: prometheus.NewDesc("convsync_pg_pool_acquire_seconds_total",
			"Time spent acquiring connections.", nil, l),
		canceled: prometheus.NewDesc("convsync_pg_pool_acquire_canceled_total",
			"Acquires canceled by their context.", nil, l),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.conns, c.max, c.acquires, c.emptyAcquires, c.acquireSeconds, c.canceled} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(s.TotalConns()), "total")
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(s.IdleConns()), "idle")
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(s.AcquiredConns()), "acquired")
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(s.ConstructingConns()), "constructing")
	ch <- prometheus.MustNewConstMetric(c.max, prometheus.GaugeValue, float64(s.MaxConns()))
	ch <- prometheus.MustNewConstMetric(c.acquires, prometheus.CounterValue, float64(s.AcquireCount()))
	ch <- prometheus.MustNewConstMetric(c.emptyAcquires, prometheus.CounterValue, float64(s.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(c.acquireSeconds, prometheus.CounterValue, s.AcquireDuration().Seconds())
	ch <- prometheus.MustNewConstMetric(c.canceled, prometheus.CounterValue, float64(s.CanceledAcquireCount()))
}
