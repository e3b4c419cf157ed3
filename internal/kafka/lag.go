package kafka

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
)

// LagCollector reports consumer lag per group, topic and partition at scrape time
// (kadm's Lag: the group's committed offsets against the partitions' end offsets), so no
// goroutine polls. On the transactional deltas topic an idle partition shows a lag of 1:
// the commit marker of the last transaction takes an offset.
type LagCollector struct {
	adm     *kadm.Client
	mu      sync.Mutex
	groups  []string
	timeout time.Duration
	lag     *prometheus.Desc
	up      *prometheus.Desc
}

// NewLagCollector reports the lag of groups through adm (whose client the caller owns).
func NewLagCollector(adm *kadm.Client, groups ...string) *LagCollector {
	return &LagCollector{adm: adm, groups: groups, timeout: 5 * time.Second,
		lag: prometheus.NewDesc("convsync_kafka_consumer_lag",
			"Records a consumer group has yet to commit, per topic and partition.", []string{"group", "topic", "partition"}, nil),
		up: prometheus.NewDesc("convsync_kafka_consumer_lag_up",
			"1 when the lag of the group could be read at this scrape.", []string{"group"}, nil),
	}
}

// Add reports the lag of one more group (each role of a process adds its own).
func (c *LagCollector) Add(group string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.groups = append(c.groups, group)
}

// Describe implements prometheus.Collector.
func (c *LagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.lag; ch <- c.up }

// Collect implements prometheus.Collector.
func (c *LagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	c.mu.Lock()
	groups := append([]string(nil), c.groups...)
	c.mu.Unlock()
	lags, err := c.adm.Lag(ctx, groups...)
	for _, g := range groups {
		l, ok := lags[g]
		if err != nil || !ok || l.Error() != nil {
			ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0, g)
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1, g)
		for _, m := range l.Lag.Sorted() {
			if m.Err != nil || m.Lag < 0 {
				continue
			}
			ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(m.Lag), g, m.Topic, strconv.Itoa(int(m.Partition)))
		}
	}
}
