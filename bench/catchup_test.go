package bench

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/ingest"
	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/loadgen"
	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/pipelinetest"
	"github.com/convsync/convsync/schemas"
)

// catchUpEvents is how many events BenchmarkLoadBinaryCatchUp preloads:
// CONVSYNC_BENCH_CATCHUP_EVENTS, 1,000,000 by default (the figure).
func catchUpEvents(b *testing.B) int {
	b.Helper()
	v := os.Getenv("CONVSYNC_BENCH_CATCHUP_EVENTS")
	if v == "" {
		return 1_000_000
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1000 {
		b.Fatalf("CONVSYNC_BENCH_CATCHUP_EVENTS=%q: want a count of at least 1000", v)
	}
	return n
}

// BenchmarkLoadBinaryCatchUp preloads a fresh 12-partition events topic with
// CONVSYNC_BENCH_CATCHUP_EVENTS events (1,000,000 by default) of the load generator's
// mix (200 pages × 500 users drawn Zipf, 1–3 events per webhook, 2% redeliveries),
// encoded and keyed as the webhook appends them, then starts `convsync process` and
// `convsync project` with their defaults, each a process of its own, and measures from
// the read model's first commit until every event is in it (each event's freshness is
// observed once, when its rows commit; project's /metrics, polled every 100 ms): events/s,
// the processor's own events/s over the same start, and CPU seconds per 1,000 events of
// the two processes, PostgreSQL and Kafka. Bounded by 10 minutes. Then the processor's
// group has no lag (kadm) and the read model equals the reference fold of the events.
func BenchmarkLoadBinaryCatchUp(b *testing.B) {
	bin := binary(b)
	n := catchUpEvents(b)
	b.StopTimer()
	for range b.N {
		st := newStack(b, bin)
		genStart := time.Now()
		events := preload(b, st.kc, n)
		b.Logf("preloaded %d events in %s", len(events), time.Since(genStart).Round(time.Millisecond))

		proc := st.start(b, "process")
		proj := st.start(b, "project")
		const fresh = "convsync_event_freshness_seconds"
		var start, procDone, done time.Time
		var first float64
		var cpu0 cpu
		if !testenv.Poll(10*time.Minute, func() bool {
			now := time.Now()
			if procDone.IsZero() && counter(scrape(b, proc.base), "convsync_processor_events_total", nil) >= float64(n) {
				procDone = now
			}
			c := histCount(scrape(b, proj.base), fresh, nil)
			if start.IsZero() && c > 0 {
				start, first, cpu0 = now, c, st.readCPU()
				b.StartTimer()
			}
			if c >= float64(n) {
				done = now
				return true
			}
			return false
		}) {
			st.alive(b)
			b.Fatalf("the read model did not catch up with %d events within 10 minutes", n)
		}
		b.StopTimer()
		used := st.readCPU().sub(cpu0)
		st.alive(b)
		if procDone.IsZero() {
			procDone = done
		}

		counted := float64(n) - first
		m := map[string]float64{
			"events_per_s":           counted / done.Sub(start).Seconds(),
			"processor_events_per_s": counted / procDone.Sub(start).Seconds(),
			"seconds":                done.Sub(start).Seconds(),
			"first_commit_events":    first,
		}
		used.perThousand(m, counted)
		if lag := groupLag(b, st.kc, st.group("processor")); lag != 0 {
			b.Errorf("the processor's group still lags %d events behind the events topic after the read model caught up", lag)
		}
		checkRows(b, st.db, pipelinetest.Reference(events), len(events), time.Minute)
		report(b, m)
		b.Logf("binary process + project, catch-up of %d events: %.0f events/s over %.1f s from the first commit (%.0f events in it); "+
			"the processor alone %.0f events/s; CPU s/1k events convsync %.3f postgres %.3f kafka %.3f total %.3f; loadavg %s",
			n, m["events_per_s"], m["seconds"], first, m["processor_events_per_s"],
			m["cpu_s_per_1k_convsync"], m["cpu_s_per_1k_postgres"], m["cpu_s_per_1k_kafka"], m["cpu_s_per_1k_total"], loadavg())
	}
}

// preload appends n events of the load generator's mix to kc's events topic as the
// webhook would (the same encoding, key, headers and producer settings, batched more,
// since nothing waits on it) and returns them.
func preload(b *testing.B, kc kafka.Config, n int) []pipelinetest.Event {
	b.Helper()
	gen := loadgen.NewGenerator(loadgen.GenConfig{Seed: 7, Pages: 200, UsersPerPage: 500})
	received := time.Now()
	events := make([]pipelinetest.Event, 0, n)
	recs := make([]*kgo.Record, 0, n)
	for len(events) < n {
		d, err := gen.Next()
		if err != nil {
			b.Fatal(err)
		}
		data, err := ingest.Parse(d.Body, received)
		if err != nil {
			b.Fatal(err)
		}
		for _, x := range data[:min(len(data), n-len(events))] {
			raw, env, err := schemas.Encode(schemas.SourceWebhook, received, x)
			if err != nil {
				b.Fatal(err)
			}
			events = append(events, pipelinetest.Event{Env: env, Data: x, Raw: raw})
			recs = append(recs, &kgo.Record{Topic: kc.EventsTopic, Key: []byte(env.PageID), Value: raw,
				Headers: []kgo.RecordHeader{
					{Key: "content-type", Value: []byte("application/cloudevents+json")},
					{Key: "ce_type", Value: []byte(env.Type)},
					{Key: "ce_id", Value: []byte(env.ID)},
				}})
		}
		received = received.Add(time.Millisecond)
	}
	opts := append(append(kc.Opts(), ingest.ProducerOpts()...),
		kgo.ProducerLinger(10*time.Millisecond), kgo.MaxBufferedRecords(n+1),
		kgo.UnknownTopicRetries(-1)) // a just-created topic's partitions come up one by one
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		b.Fatalf("preload %d events: %v", n, err)
	}
	return events
}

// groupLag is how far group's committed offsets are behind the end of the events topic.
func groupLag(b *testing.B, kc kafka.Config, group string) int64 {
	b.Helper()
	adm := testenv.Admin(b, kc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lags, err := adm.Lag(ctx, group)
	if err != nil {
		b.Fatalf("lag of %s: %v", group, err)
	}
	var sum int64
	lags.Each(func(l kadm.DescribedGroupLag) {
		for _, ps := range l.Lag {
			for _, p := range ps {
				if p.Topic == kc.EventsTopic {
					sum += p.Lag
				}
			}
		}
	})
	return sum
}
