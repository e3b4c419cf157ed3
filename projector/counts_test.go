package projector_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/projector"
	"github.com/convsync/convsync/schemas/deltas"
)

func conversationCounts(t *testing.T, ctx context.Context, pool *pgxpool.Pool, page, psid string) (messages, unread int) {
	t.Helper()
	if err := pool.QueryRow(ctx, `SELECT message_count, unread_count FROM conversations WHERE page_id = $1 AND psid = $2`, page, psid).Scan(&messages, &unread); err != nil {
		t.Fatalf("read conversation %s/%s: %v", page, psid, err)
	}
	return messages, unread
}

// Graph's updated_time has whole seconds, webhook times milliseconds. A backfill's
// snapshot of a thread whose newest message came by webhook at created_time + 123 ms
// counts that message already: unread is the Graph's, in either order of arrival.
func TestSnapshotInTheSecondOfTheNewestMessageDoesNotCountItTwice(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Postgres(t)
	w := projector.NewWriter(pool)
	ctx := testenv.Context(t, time.Minute)
	const page = "104400000000911"
	created := time.Date(2026, 5, 3, 10, 0, 0, 0, time.UTC)
	msg := func(psid, mid, dir string, at time.Time) deltas.Delta {
		return deltas.Delta{PageID: page, Events: 1, Conversations: []deltas.ConversationDelta{{
			PSID: psid, LastAt: at, LastMID: mid, LastDirection: dir, LastOutboundAt: outboundAt(dir, at),
			Messages: []deltas.MessageDelta{{MID: mid, ContentSource: deltas.SourceWebhook, Direction: dir, Text: mid, SentAt: at}},
		}}}
	}
	snapshot := func(psid string, updated time.Time, count, unread int) deltas.Delta {
		return deltas.Delta{PageID: page, Events: 1, Conversations: []deltas.ConversationDelta{{
			PSID: psid, ThreadID: "t_" + psid, Snapshot: &deltas.Snapshot{UpdatedTime: updated, MessageCount: count, UnreadCount: unread},
		}}}
	}
	tests := []struct {
		name       string
		batches    [][]deltas.Delta
		wantUnread int
	}{
		{"webhook, then the backfill", [][]deltas.Delta{
			{msg("u1", "m_a", "outbound", created.Add(-time.Minute))},
			{msg("u1", "m_b", "inbound", created.Add(123*time.Millisecond))},
			{snapshot("u1", created, 2, 1)},
		}, 1},
		{"the backfill, then the webhook", [][]deltas.Delta{
			{snapshot("u2", created, 2, 1)},
			{msg("u2", "m_c", "outbound", created.Add(-time.Minute))},
			{msg("u2", "m_d", "inbound", created.Add(123*time.Millisecond))},
		}, 1},
		{"both in one batch", [][]deltas.Delta{
			{msg("u3", "m_e", "inbound", created.Add(999*time.Millisecond)), snapshot("u3", created, 1, 1)},
		}, 1},
		{"a message a second later is new", [][]deltas.Delta{
			{snapshot("u4", created, 1, 1)},
			{msg("u4", "m_f", "inbound", created.Add(time.Second))},
		}, 2},
	}
	for _, tt := range tests {
		for _, b := range tt.batches {
			if _, err := w.Apply(ctx, nil, inputs(b)); err != nil {
				t.Fatalf("%s: Apply: %v", tt.name, err)
			}
		}
		psid := tt.batches[len(tt.batches)-1][0].Conversations[0].PSID
		if _, unread := conversationCounts(t, ctx, pool, page, psid); unread != tt.wantUnread {
			t.Errorf("%s: unread_count = %d, want %d", tt.name, unread, tt.wantUnread)
		}
	}
}

func outboundAt(dir string, at time.Time) time.Time {
	if dir == "outbound" {
		return at
	}
	return time.Time{}
}

// Two transactions applying the same new message at once (replay's per-partition
// writers; one page's deltas on two partitions): the second must not count it again.
// A third transaction holds the conversation's row, so the first waits there with its
// message inserted, and the second waits behind it; then both go on. The messages
// merge reads which messages had content before in its own snapshot; what keeps that
// read right is that every transaction upserts the page's row first, which makes the
// second wait for the first's commit before its merges start (moving the pages merge
// after the messages merge makes this test fail with message_count 2).
func TestConcurrentAppliesOfOneMessageCountItOnce(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Postgres(t)
	w := projector.NewWriter(pool)
	ctx := testenv.Context(t, time.Minute)
	const page, psid = "104400000000912", "7300000000000912"
	at := time.Date(2026, 5, 3, 11, 0, 0, 0, time.UTC)
	if _, err := w.Apply(ctx, nil, inputs([]deltas.Delta{{PageID: page, Events: 1,
		Conversations: []deltas.ConversationDelta{{PSID: psid, ReadWatermark: at}}}})); err != nil {
		t.Fatal(err)
	}
	locker, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Rollback(ctx)
	if _, err := locker.Exec(ctx, `SELECT 1 FROM conversations WHERE page_id = $1 AND psid = $2 FOR UPDATE`, page, psid); err != nil {
		t.Fatal(err)
	}
	d := deltas.Delta{PageID: page, Events: 1, Conversations: []deltas.ConversationDelta{{
		PSID: psid, LastAt: at, LastMID: "m_once", LastDirection: "inbound",
		Messages: []deltas.MessageDelta{{MID: "m_once", ContentSource: deltas.SourceWebhook, Direction: "inbound", Text: "once", SentAt: at}},
	}}}
	waiting := func(n int) {
		t.Helper()
		waitFor(t, 20*time.Second, "transactions waiting on a lock", func() (bool, string) {
			var got int
			err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&got)
			return err == nil && got >= n, "waiting: " + itoa(got)
		})
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() { _, errs[i] = w.Apply(ctx, nil, inputs([]deltas.Delta{d})) })
		waiting(i + 1)
	}
	if err := locker.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Apply %d: %v", i, err)
		}
	}
	if messages, unread := conversationCounts(t, ctx, pool, page, psid); messages != 1 || unread != 1 {
		t.Errorf("after two concurrent applies of one message: message_count %d, unread_count %d; want 1 and 1", messages, unread)
	}
}

func itoa(n int) string { return time.Duration(n).String() }
