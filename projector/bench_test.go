package projector_test

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/ingest"
	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/loadgen"
	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/pipelinetest"
	"github.com/convsync/convsync/projector"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/schemas/deltas"
)

// logEvents makes n events of the load generator's mix (Zipf over pages and users),
// encoded as the webhook ingest writes them, with their page ids as keys.
func logEvents(b *testing.B, n int) ([]*kgo.Record, []deltas.Event) {
	b.Helper()
	gen := loadgen.NewGenerator(loadgen.GenConfig{Seed: 7, Pages: 200, UsersPerPage: 500})
	codec, err := schemas.NewCodec()
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	var recs []*kgo.Record
	var evs []deltas.Event
	for len(recs) < n {
		d, err := gen.Next()
		if err != nil {
			b.Fatal(err)
		}
		data, err := ingest.Parse(d.Body, now)
		if err != nil {
			b.Fatal(err)
		}
		for _, x := range data {
			raw, _, err := schemas.Encode(schemas.SourceWebhook, now, x)
			if err != nil {
				b.Fatal(err)
			}
			env, dec, err := codec.Decode(raw)
			if err != nil {
				b.Fatal(err)
			}
			recs = append(recs, &kgo.Record{Key: []byte(env.PageID), Value: raw})
			evs = append(evs, deltas.Event{Env: env, Data: dec})
		}
	}
	return recs, evs
}

func produceRecords(b *testing.B, kc kafka.Config, recs []*kgo.Record) {
	b.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.Brokers...), kgo.DefaultProduceTopic(kc.EventsTopic),
		kgo.ProducerLinger(10*time.Millisecond), kgo.MaxBufferedRecords(1<<20),
		kgo.UnknownTopicRetries(-1)) // a just-created topic's partitions come up one by one
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	// Fresh records each time: the client fills in topic, partition and offset.
	fresh := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		fresh[i] = &kgo.Record{Topic: kc.EventsTopic, Key: r.Key, Value: r.Value}
	}
	if err := cl.ProduceSync(context.Background(), fresh...).FirstErr(); err != nil {
		b.Fatal(err)
	}
}

func counter(reg *prometheus.Registry, name string) float64 {
	mfs, _ := reg.Gather()
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetCounter() != nil {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

// histogramQuantile estimates a quantile from a histogram's buckets, as PromQL's
// histogram_quantile does (linear within the bucket).
func histogramQuantile(reg *prometheus.Registry, name string, q float64) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) == 0 {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		return quantile(h, q)
	}
	return 0
}

func quantile(h *dto.Histogram, q float64) float64 {
	total := float64(h.GetSampleCount())
	if total == 0 {
		return 0
	}
	rank := q * total
	prevCount, prevBound := 0.0, 0.0
	for _, bk := range h.GetBucket() {
		c := float64(bk.GetCumulativeCount())
		if c >= rank {
			if c == prevCount {
				return bk.GetUpperBound()
			}
			return prevBound + (bk.GetUpperBound()-prevBound)*(rank-prevCount)/(c-prevCount)
		}
		prevCount, prevBound = c, bk.GetUpperBound()
	}
	return prevBound
}

// BenchmarkLoadPipeline measures, in one run:
//
//   - pipeline: events per second from a preloaded events topic (12 partitions) through
//     the processor and projector to the committed read model, and the compaction ratio;
//
//   - ceiling/writers=N: the same events folded in process and written straight into
//     Postgres with the same COPY and merge, no Kafka, with N parallel writers;
//
//   - freshness: the loadgen at 1,000 events/s through the webhook, processor and
//     projector; p50 and p99 from convsync_event_freshness_seconds.
//
//     make bench BENCH=none LOADBENCH=LoadPipeline
func BenchmarkLoadPipeline(b *testing.B) {
	const n = 100_000
	recs, evs := logEvents(b, n)
	var pipelineRate float64

	for _, writers := range []int{1, 2} {
		b.Run("pipeline/writers="+string(rune('0'+writers)), func(b *testing.B) {
			for range b.N {
				kc := testenv.Kafka(b, 12)
				pool, _ := testenv.Postgres(b)
				produceRecords(b, kc, recs)
				procReg, projReg := prometheus.NewRegistry(), prometheus.NewRegistry()
				ctx, cancel := context.WithCancel(context.Background())
				stop := pipelinetest.PipelineWith(b, ctx, kc, pool, procReg, projReg, nil, func(c *projector.Config) { c.Writers = writers })
				// Every event has an arrival time, so it is observed once in the freshness
				// histogram when its rows commit (exactly once): caught up at n observations.
				// The clock starts at the first commit, so the groups' joining is not counted.
				deadline := time.Now().Add(10 * time.Minute)
				var start time.Time
				var first uint64
				for {
					n := histogramCount(projReg, "convsync_event_freshness_seconds")
					if start.IsZero() && n > 0 {
						start, first = time.Now(), n
					}
					if n >= uint64(len(recs)) {
						break
					}
					if time.Now().After(deadline) {
						b.Fatal("pipeline did not catch up in 10 minutes")
					}
					time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
				}
				elapsed := time.Since(start)
				cancel()
				stop()
				rate := float64(uint64(len(recs))-first) / elapsed.Seconds()
				if writers == projector.Defaults().Writers {
					pipelineRate = rate // what the ceilings are compared with: the default
				}
				b.ReportMetric(rate, "events/s")
				b.ReportMetric(float64(len(recs))/counter(procReg, "convsync_processor_deltas_total"), "events/delta")
				b.ReportMetric(0, "ns/op")
			}
		})
	}

	for _, writers := range []int{1, 2} {
		b.Run("ceiling/writers="+string(rune('0'+writers)), func(b *testing.B) {
			for range b.N {
				pool, _ := testenv.Postgres(b)
				w := projector.NewWriter(pool)
				// The same batching the pipeline sees: events grouped by partition, folded in
				// batches, split among the writers by partition.
				parts := map[int][]deltas.Event{}
				for i, e := range evs {
					p := kgo.StickyKeyPartitioner(nil).ForTopic("x").Partition(recs[i], 12)
					parts[p] = append(parts[p], e)
				}
				keys := make([]int, 0, len(parts))
				for k := range parts {
					keys = append(keys, k)
				}
				sort.Ints(keys)
				start := time.Now()
				var wg sync.WaitGroup
				for wi := range writers {
					wg.Go(func() {
						for _, p := range keys {
							if p%writers != wi {
								continue
							}
							pe := parts[p]
							for i := 0; i < len(pe); i += 2000 {
								ds := deltas.Fold(pe[i:min(i+2000, len(pe))])
								if _, err := w.Apply(context.Background(), nil, inputs(ds)); err != nil {
									b.Error(err)
									return
								}
							}
						}
					})
				}
				wg.Wait()
				rate := float64(len(evs)) / time.Since(start).Seconds()
				b.ReportMetric(rate, "events/s")
				if pipelineRate > 0 {
					b.ReportMetric(pipelineRate/rate, "pipeline-ratio")
				}
				b.ReportMetric(0, "ns/op")
			}
		})
	}

	b.Run("freshness/loadgen=1000ev/s", func(b *testing.B) {
		for range b.N {
			kc := testenv.Kafka(b, 12)
			pool, _ := testenv.Postgres(b)
			procReg, projReg := prometheus.NewRegistry(), prometheus.NewRegistry()
			ctx, cancel := context.WithCancel(context.Background())
			stop := pipelinetest.Pipeline(b, ctx, kc, pool, procReg, projReg, nil)
			url := pipelinetest.Webhook(b, kc)
			// The mix averages two events per request: 500 requests/s is 1,000 events/s.
			res, err := loadgen.Run(context.Background(), loadgen.RunConfig{URL: url, Secret: pipelinetest.Secret, Rate: 500,
				Duration: 10 * time.Second, Concurrency: 32, Gen: loadgen.DefaultGenConfig()}, loadgen.Client(32))
			if err != nil {
				b.Fatal(err)
			}
			// Let the last events land, then read the histogram.
			deadline := time.Now().Add(30 * time.Second)
			for histogramCount(projReg, "convsync_event_freshness_seconds") < uint64(res.Events) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
			}
			cancel()
			stop()
			b.ReportMetric(res.EventsPerS, "events/s")
			b.ReportMetric(histogramQuantile(projReg, "convsync_event_freshness_seconds", 0.5)*1000, "p50-ms")
			b.ReportMetric(histogramQuantile(projReg, "convsync_event_freshness_seconds", 0.99)*1000, "p99-ms")
			// Where the time goes: a processor batch (fetch to Kafka commit) and a projector
			// batch (decode to Postgres commit), medians.
			b.ReportMetric(histogramQuantile(procReg, "convsync_processor_batch_duration_seconds", 0.5)*1000, "proc-batch-p50-ms")
			b.ReportMetric(histogramQuantile(projReg, "convsync_projector_batch_duration_seconds", 0.5)*1000, "proj-batch-p50-ms")
			for _, stage := range []string{"ingest_to_delta", "delta_to_projector", "projector_commit"} {
				b.ReportMetric(labeledQuantile(projReg, "convsync_freshness_stage_seconds", "stage", stage, 0.5)*1000, stage+"-p50-ms")
				b.ReportMetric(labeledQuantile(projReg, "convsync_freshness_stage_seconds", "stage", stage, 0.99)*1000, stage+"-p99-ms")
			}
			for _, tbl := range []string{"facebook_pages", "messages", "conversations", "projector_offsets"} {
				b.ReportMetric(labeledQuantile(projReg, "convsync_projector_merge_duration_seconds", "table", tbl, 0.5)*1000, tbl+"-p50-ms")
			}
			b.ReportMetric(0, "ns/op")
		}
	})
}

func histogramCount(reg *prometheus.Registry, name string) uint64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

func labeledQuantile(reg *prometheus.Registry, name, label, value string, q float64) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return quantile(m.GetHistogram(), q)
				}
			}
		}
	}
	return 0
}
