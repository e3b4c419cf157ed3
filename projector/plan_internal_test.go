package projector

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/schemas/deltas"
)

// Once the tables pass planGrowth's sizes the merges run on cached generic plans, which
// are made from the planner's estimates without a batch at hand. At exactly those sizes,
// with no statistics yet (autovacuum has not come by), every lookup must already use the
// index that fits it: a plan that scans a page's messages for each row, or a whole table,
// would stay until an ANALYZE replaces it.
func TestGenericMergePlansUseTheRightIndexes(t *testing.T) {
	t.Parallel()
	pool, u := testenv.Postgres(t)
	ctx := testenv.Context(t, time.Minute)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	// No statistics: autovacuum must not analyze the tables halfway.
	if _, err := conn.Exec(ctx, `ALTER TABLE messages SET (autovacuum_enabled = off)`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `ALTER TABLE conversations SET (autovacuum_enabled = off)`); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	oneBatch := []Input{{Delta: deltas.Delta{PageID: "p-plan", Events: 1, Conversations: []deltas.ConversationDelta{{PSID: "u-plan",
		LastAt: at, LastMID: "m_plan", LastDirection: "inbound",
		Messages: []deltas.MessageDelta{{MID: "m_plan", ContentSource: deltas.SourceWebhook, Direction: "inbound", SentAt: at, Text: "hi"}}}}}}}
	young := NewWriter(pool)
	if _, err := young.Apply(ctx, nil, oneBatch); err != nil {
		t.Fatal(err)
	}
	if young.grown.Load() {
		t.Error("a writer on empty tables left custom plans")
	}
	grown := func() bool {
		var ok bool
		if err := conn.QueryRow(ctx, planGrowth, planGrowthMessages, planGrowthConversations).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for i := 0; !grown(); i += 200 {
		if i > 1_000_000 {
			t.Fatal("the tables never reached planGrowth's sizes")
		}
		for _, fill := range []string{`
			INSERT INTO messages (page_id, mid, psid, direction, text, sent_at, content_source, version)
			SELECT 'p' || (n % 40), 'm_' || n, 'u' || (n % 2000), CASE WHEN n % 3 = 0 THEN 'outbound' ELSE 'inbound' END,
			       'the text of message ' || n, now() - n * interval '1 second', 1, 1
			FROM generate_series($1::int, $1::int + 199) n`, `
			INSERT INTO conversations (page_id, psid, last_message_at, version)
			SELECT 'p' || (n % 40), 'u' || n, now(), 1 FROM generate_series($1::int, $1::int + 199) n`,
		} {
			if _, err := conn.Exec(ctx, fill, i); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The writer switches after its first batch on grown tables, and its later batches
	// run on generic plans (one connection, so its prepared statements can be read).
	one, err := pgxpool.New(ctx, u+map[bool]string{true: "&", false: "?"}[strings.Contains(u, "?")]+"pool_max_conns=1")
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	w := NewWriter(one)
	for range 3 {
		if _, err := w.Apply(ctx, nil, oneBatch); err != nil {
			t.Fatal(err)
		}
	}
	if !w.grown.Load() {
		t.Error("a writer's first batch on tables past planGrowth's sizes did not switch to cached plans")
	}
	var generic int64
	if err := one.QueryRow(ctx, `SELECT coalesce(sum(generic_plans), 0) FROM pg_prepared_statements
		WHERE statement LIKE '%INSERT INTO conversations AS c%' AND statement NOT LIKE '%pg_prepared_statements%'`).Scan(&generic); err != nil || generic == 0 {
		t.Errorf("the conversations merge ran on %d generic plans (%v), want some", generic, err)
	}

	if _, err := conn.Exec(ctx, `SET plan_cache_mode = force_generic_plan`); err != nil {
		t.Fatal(err)
	}
	nulls := func(n int) string { return strings.TrimSuffix(strings.Repeat("NULL, ", n), ", ") }
	for _, c := range []struct {
		name, sql string
		params    int
		want      map[string]int // index scans the plan must use, and how often at least
	}{
		{"messages", mergeMessages, len(msgKinds), map[string]int{"Index Scan using messages_pkey on messages": 1}},
		{"conversations", mergeConversations, len(convKinds), map[string]int{
			// each lookup twice: for a new row (SELECT list) and a merged one (DO UPDATE)
			"Index Scan using messages_pkey on messages":             2, // the snippet's message
			"Index Scan using messages_conversation_idx on messages": 2, // the unread count
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := conn.Exec(ctx, `DEALLOCATE ALL`); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(ctx, `PREPARE s AS `+c.sql); err != nil {
				t.Fatal(err)
			}
			rows, err := conn.Query(ctx, `EXPLAIN (COSTS OFF) EXECUTE s(`+nulls(c.params)+`)`)
			if err != nil {
				t.Fatal(err)
			}
			var plan strings.Builder
			for rows.Next() {
				var line string
				if err := rows.Scan(&line); err != nil {
					t.Fatal(err)
				}
				plan.WriteString(line + "\n")
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			p := plan.String()
			for w, n := range c.want {
				if got := strings.Count(p, w); got < n {
					t.Errorf("generic plan has %d of %q, want %d:\n%s", got, w, n, p)
				}
			}
			bad := regexp.MustCompile(`Seq Scan on (messages|conversations)\b|Bitmap|on messages \w+\n\s+Index Cond: \(page_id = [^()]*\)\n`)
			if m := bad.FindString(p); m != "" {
				t.Errorf("generic plan scans more than the batch's rows (%q):\n%s", m, p)
			}
		})
	}
}

// Every row the writer builds fits the kinds its statements unnest: a kind out of step
// panics instead of writing NULL.
func TestColumnsMatchTheirKinds(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	rows := coalesce([]deltas.Delta{{PageID: "p", PageName: "n", PageNameAt: at, Events: 1,
		Conversations: []deltas.ConversationDelta{{PSID: "u", LastAt: at, LastMID: "m", LastDirection: "inbound",
			Snapshot: &deltas.Snapshot{UpdatedTime: at, MessageCount: 2, UnreadCount: 1, Snippet: "s"},
			Messages: []deltas.MessageDelta{{MID: "m", ContentSource: deltas.SourceWebhook, Direction: "inbound", SentAt: at, Text: "t"}}}},
		Others: []deltas.Other{{ID: "e", Type: "read", OccurredAt: at, Data: []byte(`{}`)}}}})
	for _, c := range []struct {
		rows  [][]any
		kinds string
	}{{rows.pages, pageKinds}, {rows.convs, convKinds}, {rows.msgs, msgKinds}, {rows.events, eventKinds}} {
		if len(c.rows) != 1 || len(c.rows[0]) != len(c.kinds) {
			t.Fatalf("%d rows of %d columns for kinds %q, want 1 of %d", len(c.rows), len(c.rows[0]), c.kinds, len(c.kinds))
		}
		columns(c.rows, c.kinds) // panics on a mismatch
	}
	defer func() {
		if recover() == nil {
			t.Error("a time in a text column did not panic")
		}
	}()
	columns([][]any{{at}}, "s")
}
