package bench

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/pipelinetest"
	"github.com/convsync/convsync/projector"
	"github.com/convsync/convsync/schemas"
)

// verify checks what a run must not lose: the event log holds every event the webhook
// counted as appended (exactly that many when no request failed: a request answered 503
// may still have landed), and the read model equals the reference fold
// (pipelinetest.Reference) of everything in the log, within d.
func (st *stack) verify(b *testing.B, d time.Duration, requestsFailed bool) {
	b.Helper()
	ing := st.exporter(b, "convsync_webhook_events_total")
	appended := counter(scrape(b, ing.base), "convsync_webhook_events_total", nil)
	log := readLog(b, st.kc)
	switch {
	case float64(len(log)) < appended:
		b.Errorf("the events topic holds %d events, but the webhook appended %.0f", len(log), appended)
	case !requestsFailed && float64(len(log)) != appended:
		b.Errorf("the events topic holds %d events, but the webhook appended %.0f and no request failed", len(log), appended)
	}
	checkRows(b, st.db, pipelinetest.Reference(log), len(log), d)
}

// readLog reads the events topic from its start to its end offsets, decoded.
func readLog(b *testing.B, kc kafka.Config) []pipelinetest.Event {
	b.Helper()
	adm := testenv.Admin(b, kc)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, kc.EventsTopic)
	if err != nil {
		b.Fatalf("list end offsets of %s: %v", kc.EventsTopic, err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	cl, err := kgo.NewClient(append(kc.Opts(), kgo.ConsumeTopics(kc.EventsTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(64<<20))...)
	if err != nil {
		b.Fatalf("kafka client: %v", err)
	}
	defer cl.Close()
	codec, err := schemas.NewCodec()
	if err != nil {
		b.Fatal(err)
	}
	var out []pipelinetest.Event
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			b.Fatalf("read %s: %d partitions not read to their end within 3 minutes", kc.EventsTopic, len(want))
		}
		fs.EachError(func(_ string, p int32, err error) { b.Logf("fetch %s/%d: %v", kc.EventsTopic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := want[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			env, data, err := codec.Decode(r.Value)
			if err != nil {
				b.Errorf("event at %d/%d does not decode: %v", r.Partition, r.Offset, err)
			} else {
				out = append(out, pipelinetest.Event{Env: env, Data: data, Raw: r.Value})
			}
			if r.Offset+1 >= end {
				delete(want, r.Partition)
			}
		})
	}
	return out
}

// checkRows waits up to d for the read model in db to equal want, the reference fold of
// n events.
func checkRows(b *testing.B, db string, want projector.Rows, n int, d time.Duration) {
	b.Helper()
	pool, err := pgxpool.New(context.Background(), db)
	if err != nil {
		b.Fatalf("connect: %v", err)
	}
	defer pool.Close()
	var diff string
	start := time.Now()
	poll(d, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		got, err := projector.Dump(ctx, pool)
		if err != nil {
			b.Logf("read the read model: %v", err)
			return false
		}
		diff = cmp.Diff(want, got, cmpopts.EquateEmpty(), cmp.Transformer("json", func(r json.RawMessage) any {
			var v any
			_ = json.Unmarshal(r, &v)
			return v
		}))
		return diff == ""
	})
	if diff != "" {
		if len(diff) > 6000 {
			diff = diff[:6000] + "…"
		}
		b.Errorf("after %s the read model still differs from the reference fold of the %d events in the log (-want +got):\n%s", d, n, diff)
		return
	}
	b.Logf("read model equals the reference fold of the %d events in the log (%d pages, %d conversations, %d messages; checked in %s)",
		n, len(want.Pages), len(want.Conversations), len(want.Messages), time.Since(start).Round(time.Millisecond))
}
