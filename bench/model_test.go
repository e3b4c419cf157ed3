package bench

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/pipelinetest"
	"github.com/convsync/convsync/projector"
)

// verify checks what a run must not lose: the event log holds every event the webhook
// counted as appended (exactly that many when no request failed: a request answered 503
// may still have landed), and the read model equals the reference fold
// (pipelinetest.Reference) of everything in the log, within d.
func (st *stack) verify(b *testing.B, d time.Duration, requestsFailed bool) {
	b.Helper()
	ing := st.exporter(b, "convsync_webhook_events_total")
	appended := counter(scrape(b, ing.base), "convsync_webhook_events_total", nil)
	log := pipelinetest.ReadLog(b, st.kc.Brokers, st.kc.EventsTopic)
	switch {
	case float64(len(log)) < appended:
		b.Errorf("the events topic holds %d events, but the webhook appended %.0f", len(log), appended)
	case !requestsFailed && float64(len(log)) != appended:
		b.Errorf("the events topic holds %d events, but the webhook appended %.0f and no request failed", len(log), appended)
	}
	checkRows(b, st.db, pipelinetest.Reference(log), len(log), d)
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
	testenv.Poll(d, func() bool {
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
