package processor

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/schemas/dlq"
)

// Values of the outcome labels.
const (
	outcomeOK        = "ok"        // events: decoded and folded into a delta
	outcomeDLQ       = "dlq"       // events: sent to the dead-letter topic
	outcomeCommitted = "committed" // transactions
	outcomeAborted   = "aborted"   // transactions: a rebalance, a produce error, shutdown mid-batch
)

type metrics struct {
	events *prometheus.CounterVec // outcome
	deltas prometheus.Counter
	ratio  prometheus.Histogram
	batch  prometheus.Histogram
	txns   *prometheus.CounterVec // outcome
	dlq    *prometheus.CounterVec // topic, reason
}

// dlqOpts is convsync_dlq_records_total, shared by every stage that dead-letters records: each registers it on
// the process's registry with exactly these options and labels, and the second one
// reuses the first one's collector.
func newMetrics(reg prometheus.Registerer, eventsTopic string) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "convsync_processor_events_total",
			Help: "Events consumed in committed transactions, by outcome (ok: folded into a delta, dlq: dead-lettered).",
		}, []string{"outcome"}),
		deltas: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "convsync_processor_deltas_total",
			Help: "Deltas written to the deltas topic in committed transactions.",
		}),
		ratio: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "convsync_processor_compaction_ratio",
			Help:    "Events folded into each committed delta.",
			Buckets: []float64{1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 5000},
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "convsync_processor_batch_duration_seconds",
			Help:    "Time from a batch's fetch to its transaction's commit.",
			Buckets: []float64{.002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10, 30},
		}),
		txns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "convsync_processor_transactions_total",
			Help: "Batches ended, by outcome: committed (exactly-once: the Kafka transaction committed; at-least-once: every record produced and the offsets marked), aborted.",
		}, []string{"outcome"}),
	}
	for _, c := range []prometheus.Collector{m.events, m.deltas, m.ratio, m.batch, m.txns} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register processor metrics: %w", err)
		}
	}
	dlqs, err := kafka.DLQCounter(reg)
	if err != nil {
		return nil, err
	}
	m.dlq = dlqs
	m.events.WithLabelValues(outcomeOK)
	m.events.WithLabelValues(outcomeDLQ)
	m.txns.WithLabelValues(outcomeCommitted)
	m.txns.WithLabelValues(outcomeAborted)
	for _, c := range dlq.Categories() {
		m.dlq.WithLabelValues(eventsTopic, c)
	}
	return m, nil
}

// committed counts what a committed transaction wrote. Nothing is counted for an aborted
// one: its records come again and are counted when they commit.
func (m *metrics) committed(topic string, r batchResult) {
	m.txns.WithLabelValues(outcomeCommitted).Inc()
	m.events.WithLabelValues(outcomeOK).Add(float64(r.events))
	var dlq int
	for c, n := range r.dlq {
		m.dlq.WithLabelValues(topic, c).Add(float64(n))
		dlq += n
	}
	m.events.WithLabelValues(outcomeDLQ).Add(float64(dlq))
	m.deltas.Add(float64(len(r.perDelta)))
	for _, n := range r.perDelta {
		m.ratio.Observe(float64(n))
	}
}
