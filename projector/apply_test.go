package projector_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/pipelinetest"
	"github.com/convsync/convsync/projector"
	"github.com/convsync/convsync/schemas/deltas"
)

var seeds = flag.Int("seeds", 200, "random histories per model-based test (more with -seeds=N)")

// RowsDiff compares two read models: JSON by value, times by instant.
func RowsDiff(want, got projector.Rows) string {
	return cmp.Diff(want, got, cmpopts.EquateEmpty(), cmp.Transformer("json", func(r json.RawMessage) any {
		var v any
		_ = json.Unmarshal(r, &v)
		return v
	}))
}

func truncate(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), `TRUNCATE facebook_pages, conversations, messages, conversation_events, projector_offsets`); err != nil {
		t.Fatal(err)
	}
}

func fold(evs []pipelinetest.Event) []deltas.Delta {
	in := make([]deltas.Event, len(evs))
	for i, e := range evs {
		in[i] = deltas.Event{Env: e.Env, Data: e.Data}
	}
	return deltas.Fold(in)
}

func inputs(ds []deltas.Delta) []projector.Input {
	out := make([]projector.Input, len(ds))
	for i, d := range ds {
		out[i] = projector.Input{Delta: d}
	}
	return out
}

// Invariant 2 at the writer: random histories, folded in random batches applied in random
// order, some twice, give exactly the rows of the plain reference fold.
func TestApplyIsOrderInsensitiveAndIdempotent(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Postgres(t)
	w := projector.NewWriter(pool)
	ctx := testenv.Context(t, 10*time.Minute)
	for seed := range uint64(*seeds) {
		evs, err := pipelinetest.History(seed, pipelinetest.DefaultHistoryConfig())
		if err != nil {
			t.Fatal(err)
		}
		want := pipelinetest.Reference(evs)
		truncate(t, pool)
		rng := rand.New(rand.NewPCG(seed, 42))
		// Split the delivery into batches of random size, fold each, apply in a random
		// order, and apply a few batches a second time.
		var batches [][]deltas.Delta
		for i := 0; i < len(evs); {
			n := 1 + rng.IntN(12)
			batches = append(batches, fold(evs[i:min(i+n, len(evs))]))
			i += n
		}
		rng.Shuffle(len(batches), func(i, j int) { batches[i], batches[j] = batches[j], batches[i] })
		for _, b := range batches {
			if _, err := w.Apply(ctx, nil, inputs(b)); err != nil {
				t.Fatalf("seed %d: Apply: %v", seed, err)
			}
			if rng.IntN(4) == 0 {
				if _, err := w.Apply(ctx, nil, inputs(b)); err != nil {
					t.Fatalf("seed %d: Apply again: %v", seed, err)
				}
			}
		}
		got, err := projector.Dump(ctx, pool)
		if err != nil {
			t.Fatal(err)
		}
		if diff := RowsDiff(want, got); diff != "" {
			t.Fatalf("seed %d (replay with -run %s -seeds %d): rows differ from the reference fold (-want +got):\n%s", seed, t.Name(), seed+1, diff)
		}
	}
}

// The offsets row fences a batch that was applied already: applying the same offsets
// twice changes nothing, and a writer that read stale offsets is rejected.
func TestApplySkipsDeltasBelowTheStoredOffset(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Postgres(t)
	w := projector.NewWriter(pool)
	ctx := testenv.Context(t, time.Minute)
	evs, err := pipelinetest.History(7, pipelinetest.DefaultHistoryConfig())
	if err != nil {
		t.Fatal(err)
	}
	ds := fold(evs)
	in := make([]projector.Input, len(ds))
	for i, d := range ds {
		in[i] = projector.Input{Offset: int64(10 + i), Delta: d}
	}
	pos := &projector.Position{Group: "g", Topic: "deltas", Partition: 3, From: 10, Next: int64(10 + len(in))}
	first, err := w.Apply(ctx, pos, in)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := projector.Dump(ctx, pool)
	var knownBefore int
	_ = pool.QueryRow(ctx, `SELECT sum(known_message_count) FROM conversations`).Scan(&knownBefore)

	again, err := w.Apply(ctx, pos, in)
	if err != nil {
		t.Fatalf("re-applying a committed batch: %v", err)
	}
	if first.Applied != len(in) || again.Applied != 0 {
		t.Errorf("applied %d then %d deltas, want %d then 0", first.Applied, again.Applied, len(in))
	}
	after, _ := projector.Dump(ctx, pool)
	if diff := RowsDiff(before, after); diff != "" {
		t.Errorf("re-applying a committed batch changed rows:\n%s", diff)
	}
	var next int64
	if err := pool.QueryRow(ctx, `SELECT next_offset FROM projector_offsets WHERE consumer_group='g' AND topic='deltas' AND partition=3`).Scan(&next); err != nil || next != pos.Next {
		t.Errorf("stored next offset = %d (%v), want %d", next, err, pos.Next)
	}
}

// A NUL in message text or raw JSON, which Postgres refuses, must not stop the projector.
func TestApplyTakesNULCharacters(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Postgres(t)
	w := projector.NewWriter(pool)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	d := deltas.Delta{PageID: "p-nul", Events: 1, Conversations: []deltas.ConversationDelta{{PSID: "u1",
		LastAt: at, LastMID: "m_nul", LastDirection: "inbound",
		Messages: []deltas.MessageDelta{{MID: "m_nul", ContentSource: deltas.SourceWebhook, Direction: "inbound",
			SentAt: at, Text: "a\x00b", Attachments: json.RawMessage(`[{"type":"file","title":"x\u0000y"}]`)}}}}}
	if _, err := w.Apply(context.Background(), nil, []projector.Input{{Delta: d}}); err != nil {
		t.Fatalf("Apply(text with NUL) = %v, want the row written", err)
	}
	var text string
	if err := pool.QueryRow(context.Background(), `SELECT text FROM messages WHERE mid = 'm_nul'`).Scan(&text); err != nil || text != "a\uFFFDb" {
		t.Errorf("stored text = %q (%v), want the NUL replaced by U+FFFD", text, err)
	}
}

// A caller that knows the stored offset (the projector's partition worker, after its
// first commit) saves the round trip that reads it; a wrong one is caught by the offsets
// row and the whole transaction rolls back.
func TestApplyWithAKnownStoredOffset(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Postgres(t)
	w := projector.NewWriter(pool)
	ctx := testenv.Context(t, time.Minute)
	evs, err := pipelinetest.History(11, pipelinetest.DefaultHistoryConfig())
	if err != nil {
		t.Fatal(err)
	}
	ds := fold(evs)
	if len(ds) < 2 {
		t.Fatalf("history folds into %d deltas, want at least 2", len(ds))
	}
	in := make([]projector.Input, len(ds))
	for i, d := range ds {
		in[i] = projector.Input{Offset: int64(i), Delta: d}
	}
	half := len(in) / 2
	posA := &projector.Position{Group: "g", Topic: "deltas", Partition: 0, From: 0, Next: int64(half)}
	if _, err := w.Apply(ctx, posA, in[:half]); err != nil {
		t.Fatal(err)
	}
	if posA.Stored == nil || *posA.Stored != int64(half) {
		t.Fatalf("after a commit Stored = %v, want %d", posA.Stored, half)
	}
	before, _ := projector.Dump(ctx, pool)

	stale := int64(-1) // a writer that believes nothing is stored yet
	posB := &projector.Position{Group: "g", Topic: "deltas", Partition: 0, From: int64(half), Next: int64(len(in)), Stored: &stale}
	if _, err := w.Apply(ctx, posB, in[half:]); !errors.Is(err, projector.ErrFenced) {
		t.Fatalf("Apply with a wrong stored offset = %v, want ErrFenced", err)
	}
	after, _ := projector.Dump(ctx, pool)
	if diff := RowsDiff(before, after); diff != "" {
		t.Errorf("a fenced batch changed rows:\n%s", diff)
	}

	posB.Stored = posA.Stored
	res, err := w.Apply(ctx, posB, in[half:])
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != len(in)-half || posB.Stored == nil || *posB.Stored != int64(len(in)) {
		t.Errorf("applied %d deltas and left Stored %v, want %d and %d", res.Applied, posB.Stored, len(in)-half, len(in))
	}
	whole, _ := projector.Dump(ctx, pool)
	pool2, _ := testenv.Postgres(t)
	if _, err := projector.NewWriter(pool2).Apply(ctx, nil, in); err != nil {
		t.Fatal(err)
	}
	once, _ := projector.Dump(ctx, pool2)
	if diff := RowsDiff(once, whole); diff != "" {
		t.Errorf("two batches with known offsets differ from one batch:\n%s", diff)
	}
}

// PG_EXEC_MODE lets convsync run behind poolers that cannot keep prepared statements:
// the array parameters must encode in every mode, and give the same rows.
func TestApplyInEveryQueryExecMode(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t, time.Minute)
	evs, err := pipelinetest.History(5, pipelinetest.DefaultHistoryConfig())
	if err != nil {
		t.Fatal(err)
	}
	ds := fold(evs)
	in := make([]projector.Input, len(ds))
	for i, d := range ds {
		in[i] = projector.Input{Offset: int64(i), Delta: d}
	}
	refPool, _ := testenv.Postgres(t)
	if _, err := projector.NewWriter(refPool).Apply(ctx, nil, in); err != nil {
		t.Fatal(err)
	}
	want, _ := projector.Dump(ctx, refPool)
	for _, mode := range []string{"exec", "simple_protocol", "describe_exec", "cache_describe"} {
		_, u := testenv.Postgres(t)
		sep := "?"
		if strings.Contains(u, "?") {
			sep = "&"
		}
		pool, err := pgxpool.New(ctx, u+sep+"default_query_exec_mode="+mode)
		if err != nil {
			t.Fatal(err)
		}
		half := len(in) / 2
		pos := &projector.Position{Group: "g", Topic: "deltas", Partition: 1, From: 0, Next: int64(half)}
		if _, err := projector.NewWriter(pool).Apply(ctx, pos, in[:half]); err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		next := &projector.Position{Group: "g", Topic: "deltas", Partition: 1, From: int64(half), Next: int64(len(in)), Stored: pos.Stored}
		if _, err := projector.NewWriter(pool).Apply(ctx, next, in[half:]); err != nil {
			t.Fatalf("%s, known stored offset: %v", mode, err)
		}
		got, _ := projector.Dump(ctx, pool)
		pool.Close()
		if diff := RowsDiff(want, got); diff != "" {
			t.Errorf("%s: rows differ from cache_statement's:\n%s", mode, diff)
		}
	}
}
