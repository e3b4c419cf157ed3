package projector

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/schemas/dlq"
)

type metrics struct {
	batchDeltas prometheus.Histogram
	batchTime   prometheus.Histogram
	merge       *prometheus.HistogramVec
	rows        *prometheus.CounterVec
	freshness   prometheus.Histogram
	stages      *prometheus.HistogramVec
	deadLetters *prometheus.CounterVec // convsync_dlq_records_total{topic, reason}, shared with the processor
	retries     prometheus.Counter
	gaps        prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, deltasTopic string) (*metrics, error) {
	m := &metrics{
		batchDeltas: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "convsync_projector_batch_deltas",
			Help:    "Deltas per projector transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 13),
		}),
		batchTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "convsync_projector_batch_duration_seconds",
			Help:    "Time to decode, merge and commit one batch.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 15),
		}),
		merge: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "convsync_projector_merge_duration_seconds",
			Help:    "Server time of one batch's merge statement, by table (clock_timestamp() between statements of the pipeline).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 15),
		}, []string{"table"}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "convsync_projector_rows_total",
			Help: "Rows written by the projector's merges, by table.",
		}, []string{"table"}),
		freshness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "convsync_event_freshness_seconds",
			Help:    "Time from an event's arrival at convsync (the webhook) to the commit of its rows: the latency users feel.",
			Buckets: []float64{.005, .01, .015, .025, .05, .075, .1, .15, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "convsync_freshness_stage_seconds",
			Help: "Where freshness goes, by stage: ingest_to_delta (webhook arrival to the processor producing its delta, per event), " +
				"delta_to_projector (the delta produced to its projector batch starting: the fetch, and with exactly-once the processor's Kafka transaction commit, per delta), " +
				"projector_commit (the batch starting to its Postgres commit, waiting for the writer included, per delta). Stages across hosts carry their clock skew.",
			Buckets: []float64{.001, .0025, .005, .0075, .01, .015, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"stage"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "convsync_projector_retries_total",
			Help: "Batches that failed to commit and were retried (Postgres away); a rising count with no commits is a stalled projector.",
		}),
	}
	m.gaps = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "convsync_projector_offset_gaps",
		Help: "Partitions the projector refuses to consume because the deltas log no longer holds the offset Postgres stored (retention, a recreated topic): their deltas were lost before being applied. Run convsync replay.",
	})
	reg.MustRegister(m.batchDeltas, m.batchTime, m.merge, m.rows, m.freshness, m.stages, m.retries, m.gaps)
	for _, t := range []string{"facebook_pages", "messages", "conversations", "conversation_events"} {
		m.rows.WithLabelValues(t) // every table from the start, at 0
	}
	dead, err := kafka.DLQCounter(reg)
	if err != nil {
		return nil, err
	}
	m.deadLetters = dead
	for _, c := range []string{dlq.CategoryDecode, dlq.CategoryRefused} { // what the projector dead-letters
		m.deadLetters.WithLabelValues(deltasTopic, c)
	}
	return m, nil
}

func (p *Projector) observe(res Result, nd int, took time.Duration) {
	p.m.batchDeltas.Observe(float64(nd))
	p.m.batchTime.Observe(took.Seconds())
	for table, d := range res.Durations {
		p.m.merge.WithLabelValues(table).Observe(d.Seconds())
	}
	for table, n := range res.Rows {
		p.m.rows.WithLabelValues(table).Add(float64(n))
	}
	committed := res.Committed.UnixMilli()
	for _, ms := range res.ReceivedMS {
		p.m.freshness.Observe(float64(committed-ms) / 1000)
	}
}

// observeStages splits the freshness of a committed batch that started at start: each
// record's timestamp is when the processor produced its delta.
func (p *Projector) observeStages(recs []*kgo.Record, in []Input, start, committed time.Time) {
	toDelta, toProjector, commit := p.m.stages.WithLabelValues("ingest_to_delta"),
		p.m.stages.WithLabelValues("delta_to_projector"), p.m.stages.WithLabelValues("projector_commit")
	produced := make(map[int64]time.Time, len(recs))
	for _, r := range recs {
		produced[r.Offset] = r.Timestamp
		toProjector.Observe(start.Sub(r.Timestamp).Seconds())
		commit.Observe(committed.Sub(start).Seconds())
	}
	for _, d := range in {
		at, ok := produced[d.Offset]
		if !ok {
			continue
		}
		for _, ms := range d.Delta.ReceivedMS {
			toDelta.Observe(float64(at.UnixMilli()-ms) / 1000)
		}
	}
}
