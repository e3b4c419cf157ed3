package projector_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/logging"
	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/pipelinetest"
	"github.com/convsync/convsync/projector"
	"github.com/convsync/convsync/schemas/deltas"
)

// projectLive builds the live tables from evs as the processor and projector would:
// batches folded and applied with their offsets on the deltas topic's partitions.
func projectLive(t *testing.T, ctx context.Context, pool *pgxpool.Pool, evs []pipelinetest.Event, group, topic string) {
	t.Helper()
	w := projector.NewWriter(pool)
	next := map[int32]int64{}
	for i, n := 0, 0; i < len(evs); i, n = i+50, n+1 {
		ds := fold(evs[i:min(i+50, len(evs))])
		part := int32(n % 3)
		pos := &projector.Position{Group: group, Topic: topic, Partition: part, From: next[part], Next: next[part] + int64(len(ds))}
		in := make([]projector.Input, len(ds))
		for j, d := range ds {
			in[j] = projector.Input{Offset: pos.From + int64(j), Delta: d}
		}
		if _, err := w.Apply(ctx, pos, in); err != nil {
			t.Fatalf("project the live tables: %v", err)
		}
		next[part] = pos.Next
	}
}

// commitProcessor sets group's committed offsets on the events topic: at the end of each
// partition, plus ahead on partition 0 (a group that claims more than the log holds).
func commitProcessor(t *testing.T, ctx context.Context, kc kafka.Config, group string, ahead int64) {
	t.Helper()
	adm := testenv.Admin(t, kc)
	ends, err := adm.ListEndOffsets(ctx, kc.EventsTopic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("list end offsets: %v", err)
	}
	offs := ends.Offsets()
	if o, ok := offs.Lookup(kc.EventsTopic, 0); ok && ahead > 0 {
		o.At += ahead
		offs.Add(o)
	}
	resp, err := adm.CommitOffsets(ctx, group, offs)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("commit the processor group's offsets: %v", err)
	}
}

// produceGarbage appends n records that do not decode.
func produceGarbage(t *testing.T, kc kafka.Config, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.Brokers...), kgo.DefaultProduceTopic(kc.EventsTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := range n {
		v := []byte(`{"specversion":"1.0","type":"convsync.nonsense.v1"}`)
		if i%2 == 0 {
			v = []byte("not json at all")
		}
		recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprintf("garbage-%d", i)), Value: v})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatalf("produce undecodable records: %v", err)
	}
}

func replayConfig(group string) projector.ReplayConfig {
	cfg := projector.ReplayDefaults()
	cfg.ProcessorGroup = group
	cfg.Batch = 500 // several batches per partition
	return cfg
}

func schemaExists(t *testing.T, ctx context.Context, pool *pgxpool.Pool, name string) bool {
	t.Helper()
	var ok bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// dropAtCleanup drops a schema Replay left on purpose (or on a failed test).
func dropAtCleanup(t *testing.T, schema string) {
	if schema == "" {
		return
	}
	base, err := pgxpool.New(context.Background(), testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer base.Close()
		if _, err := base.Exec(context.Background(), `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
}

// ownPool is a pool of the test's own on url, as another process (the projector) has.
func ownPool(t *testing.T, ctx context.Context, url string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func tableOIDs(t *testing.T, ctx context.Context, pool *pgxpool.Pool) map[string]uint32 {
	t.Helper()
	out := map[string]uint32{}
	for _, tbl := range []string{"facebook_pages", "conversations", "messages", "conversation_events", "projector_offsets"} {
		var oid uint32
		if err := pool.QueryRow(ctx, `SELECT $1::regclass::oid`, tbl).Scan(&oid); err != nil {
			t.Fatalf("oid of %s: %v", tbl, err)
		}
		out[tbl] = oid
	}
	return out
}

type offsetRow struct {
	Group, Topic string
	Partition    int32
	Next         int64
}

func offsetRows(t *testing.T, ctx context.Context, pool *pgxpool.Pool) []offsetRow {
	t.Helper()
	rows, err := pool.Query(ctx, `SELECT consumer_group, topic, partition, next_offset FROM projector_offsets ORDER BY 1, 2, 3`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (offsetRow, error) {
		var o offsetRow
		err := r.Scan(&o.Group, &o.Topic, &o.Partition, &o.Next)
		return o, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Invariant 7: the tables rebuilt from the log equal the live projection of the same
// events and the reference fold; values that are not in the log (imported tokens and
// names, import-only pages, the projector's offsets) survive the swap; the tables are
// new ones, versions keep growing, and no schema is left behind.
func TestReplayRebuildsTheLiveProjectionAndKeepsImportedTokens(t *testing.T) {
	t.Parallel()
	kc := testenv.Kafka(t, 4)
	pool, _ := testenv.Postgres(t)
	ctx := testenv.Context(t, 5*time.Minute)
	all, refs, _ := histories(t, *seeds, 20000)
	produce(t, kc, all)
	produceGarbage(t, kc, 7)
	projectLive(t, ctx, pool, all, "proj-"+testenv.ID(), kc.DeltasTopic)

	// Imports: a token for every page, a name for a page no event named, a page only an
	// import knows.
	if _, err := pool.Exec(ctx, `UPDATE facebook_pages SET access_token = 'token-' || page_id`); err != nil {
		t.Fatal(err)
	}
	var named string
	if err := pool.QueryRow(ctx, `UPDATE facebook_pages SET name = 'Imported name'
		WHERE page_id = (SELECT min(page_id) FROM facebook_pages WHERE name IS NULL) RETURNING page_id`).Scan(&named); err != nil {
		t.Fatalf("import a name for a page without one: %v", err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO facebook_pages (page_id, name, access_token, created_at)
		VALUES ('imported-only', 'Imported Shop', 'token-imported-only', '2020-01-01T00:00:00Z')`); err != nil {
		t.Fatal(err)
	}
	var seed uint64
	if _, err := fmt.Sscanf(named, "s%d-", &seed); err != nil {
		t.Fatalf("page id %q names no seed: %v", named, err)
	}
	for i, p := range refs[seed].Pages {
		if p.PageID == named {
			name := "Imported name"
			refs[seed].Pages[i].Name = &name
		}
	}

	before, err := projector.Dump(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	tokens := func() map[string]string {
		rows, err := pool.Query(ctx, `SELECT page_id, coalesce(access_token, '') FROM facebook_pages`)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		var id, tok string
		if _, err := pgx.ForEachRow(rows, []any{&id, &tok}, func() error { out[id] = tok; return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	tokensBefore, offsetsBefore, oidsBefore := tokens(), offsetRows(t, ctx, pool), tableOIDs(t, ctx, pool)
	var maxVersion int64
	if err := pool.QueryRow(ctx, `SELECT greatest((SELECT max(version) FROM facebook_pages),
		(SELECT max(version) FROM conversations), (SELECT max(version) FROM messages))`).Scan(&maxVersion); err != nil {
		t.Fatal(err)
	}

	group := "proc-" + testenv.ID()
	commitProcessor(t, ctx, kc, group, 0)
	var progress bytes.Buffer
	res, err := projector.Replay(ctx, replayConfig(group), kc, pool, nil, logging.Discard(), &progress)
	dropAtCleanup(t, res.ArchiveSchema)
	if err != nil {
		t.Fatalf("Replay() error = %v, want nil", err)
	}
	if !res.Swapped || res.Events != int64(len(all)) || res.Skipped != 7 {
		t.Errorf("Replay() swapped %v after %d events and %d skipped, want a swap after %d events and 7 skipped", res.Swapped, res.Events, res.Skipped, len(all))
	}

	after, err := projector.Dump(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if diff := RowsDiff(before, after); diff != "" {
		t.Errorf("the rebuilt tables differ from the live ones they replaced (-live +rebuilt):\n%s", diff)
	}
	reportBySeed(t, refs, after)
	if diff := cmp.Diff(tokensBefore, tokens()); diff != "" {
		t.Errorf("access tokens changed in the swap (-before +after):\n%s", diff)
	}
	var created time.Time
	if err := pool.QueryRow(ctx, `SELECT created_at FROM facebook_pages WHERE page_id = 'imported-only'`).Scan(&created); err != nil || !created.Equal(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("the import-only page has created_at %v (%v), want 2020-01-01 as imported", created, err)
	}
	if diff := cmp.Diff(offsetsBefore, offsetRows(t, ctx, pool)); diff != "" {
		t.Errorf("projector_offsets changed in the swap (-before +after):\n%s", diff)
	}
	for tbl, oid := range tableOIDs(t, ctx, pool) {
		if oid == oidsBefore[tbl] {
			t.Errorf("table %s is still the old one (oid %d) after the swap", tbl, oid)
		}
	}
	if res.Rows["messages"] != int64(len(after.Messages)) || res.Rows["conversation_events"] != int64(len(after.Events)) {
		t.Errorf("Replay() counted %v rows, want %d messages and %d conversation events", res.Rows, len(after.Messages), len(after.Events))
	}
	var next int64
	if err := pool.QueryRow(ctx, `SELECT nextval('read_model_version_seq')`).Scan(&next); err != nil || next <= maxVersion {
		t.Errorf("the next version after the swap is %d (%v), want above every version before it (%d)", next, err, maxVersion)
	}
	for _, s := range []string{res.RebuildSchema, res.ArchiveSchema} {
		if schemaExists(t, ctx, pool, s) {
			t.Errorf("schema %s still exists after the swap without --keep-old", s)
		}
	}
	if res.ArchiveKept {
		t.Errorf("Replay() kept the archive %s without --keep-old", res.ArchiveSchema)
	}
	if !strings.Contains(progress.String(), "progress: done") {
		t.Errorf("progress output %q lacks the final line", progress.String())
	}
}

// writer applies one-page batches to the live tables in a loop, as the projector does
// (with offsets) or as a plain Writer does (without), until stopped.
type writer struct {
	prefix string
	mu     sync.Mutex
	n      int // batches committed: 0..n-1
	tick   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	err    error
}

// writeBatch applies batch i of a writer: one page with one conversation and a message
// with a reaction (so the merge calls merge_reactions), with offsets or without.
func writeBatch(ctx context.Context, w *projector.Writer, prefix string, i int, withOffsets bool) error {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	mid := fmt.Sprintf("m_%s_%d", prefix, i)
	d := deltas.Delta{PageID: fmt.Sprintf("%s-%05d", prefix, i), LastSyncedAt: at, Events: 1,
		Conversations: []deltas.ConversationDelta{{PSID: "u1", LastAt: at, LastMID: mid, LastDirection: "inbound",
			Messages: []deltas.MessageDelta{{MID: mid, ContentSource: deltas.SourceWebhook, Direction: "inbound",
				SentAt: at, Text: "hello", Reactions: map[string]deltas.Reaction{"u1": {Action: "react", Reaction: "love", At: at}}}}}}}
	var pos *projector.Position
	if withOffsets {
		pos = &projector.Position{Group: prefix, Topic: "writer", Partition: 0, From: int64(i), Next: int64(i + 1)}
	}
	if _, err := w.Apply(ctx, pos, []projector.Input{{Offset: int64(i), Delta: d}}); err != nil {
		return fmt.Errorf("writer %s batch %d: %w", prefix, i, err)
	}
	return nil
}

func startWriter(ctx context.Context, pool *pgxpool.Pool, prefix string, withOffsets bool) *writer {
	wr := &writer{prefix: prefix, tick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	w := projector.NewWriter(pool)
	go func() {
		defer close(wr.done)
		for i := 0; ; i++ {
			select {
			case <-wr.stop:
				return
			default:
			}
			if err := writeBatch(ctx, w, prefix, i, withOffsets); err != nil {
				wr.err = err
				return
			}
			wr.mu.Lock()
			wr.n = i + 1
			wr.mu.Unlock()
			select {
			case wr.tick <- struct{}{}:
			default:
			}
		}
	}()
	return wr
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// waitFor waits until the writer has committed n batches.
func (w *writer) waitFor(t *testing.T, n int) {
	t.Helper()
	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	for w.count() < n {
		select {
		case <-w.tick:
		case <-w.done:
			t.Fatalf("writer %s stopped after %d batches, before %d: %v", w.prefix, w.count(), n, w.err)
		case <-deadline.C:
			t.Fatalf("writer %s committed %d batches in a minute, want %d", w.prefix, w.count(), n)
		}
	}
}

func (w *writer) halt(t *testing.T) {
	t.Helper()
	close(w.stop)
	<-w.done
	if w.err != nil {
		t.Errorf("the writer failed: %v", w.err)
	}
}

// batchesIn returns the writer's batch numbers found in schema's tables: a batch counts
// when its page and its message are both there.
func batchesIn(t *testing.T, ctx context.Context, pool *pgxpool.Pool, schema, prefix string) map[int]bool {
	t.Helper()
	rows, err := pool.Query(ctx, `SELECT p.page_id FROM `+pgx.Identifier{schema, "facebook_pages"}.Sanitize()+` p
		JOIN `+pgx.Identifier{schema, "messages"}.Sanitize()+` m ON m.page_id = p.page_id
		WHERE p.page_id LIKE $1`, prefix+"-%")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]bool{}
	var id string
	if _, err := pgx.ForEachRow(rows, []any{&id}, func() error {
		var n int
		if _, err := fmt.Sscanf(strings.TrimPrefix(id, prefix+"-"), "%d", &n); err != nil {
			return err
		}
		out[n] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// The swap while writers keep applying to the live schema through prepared statements,
// one with projector offsets (it waits on projector_offsets) and one without (it waits
// on the tables): every batch committed before the swap is in the archived tables, every
// one after it in the new tables, none in both and none lost, and the writer with
// offsets goes on from the offsets the swap carried over.
func TestReplaySwapKeepsWhatConcurrentWritersCommit(t *testing.T) {
	t.Parallel()
	kc := testenv.Kafka(t, 2)
	pool, url := testenv.Postgres(t)
	ctx := testenv.Context(t, 5*time.Minute)
	var live string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&live); err != nil {
		t.Fatal(err)
	}
	all, _, _ := histories(t, 20, 30000)
	produce(t, kc, all)
	projectLive(t, ctx, pool, all, "proj-"+testenv.ID(), kc.DeltasTopic)
	group := "proc-" + testenv.ID()
	commitProcessor(t, ctx, kc, group, 0)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wpool := ownPool(t, ctx, url)
	writers := []*writer{startWriter(wctx, wpool, "wa", true), startWriter(wctx, wpool, "wb", false)}
	for _, w := range writers {
		w.waitFor(t, 3)
	}
	before := []int{writers[0].count(), writers[1].count()}
	cfg := replayConfig(group)
	cfg.KeepOld = true
	res, err := projector.Replay(ctx, cfg, kc, pool, nil, logging.Discard(), nil)
	dropAtCleanup(t, res.ArchiveSchema)
	if err != nil {
		t.Fatalf("Replay() error = %v, want nil", err)
	}
	if !res.Swapped || !res.ArchiveKept || !schemaExists(t, ctx, pool, res.ArchiveSchema) {
		t.Fatalf("Replay() = swapped %v, archive %q kept %v; want a swap and the archive kept with --keep-old", res.Swapped, res.ArchiveSchema, res.ArchiveKept)
	}
	for i, w := range writers {
		after := w.count()
		w.waitFor(t, after+5)
		w.halt(t)
		total := w.count()

		inOld := batchesIn(t, ctx, pool, res.ArchiveSchema, w.prefix)
		inNew := batchesIn(t, ctx, pool, live, w.prefix)
		maxOld, minNew := -1, total
		for n := range total {
			switch {
			case inOld[n] && inNew[n]:
				t.Errorf("writer %s: batch %d is in both the archived and the new tables", w.prefix, n)
			case !inOld[n] && !inNew[n]:
				t.Errorf("writer %s: batch %d (of %d) is in neither the archived nor the new tables: lost", w.prefix, n, total)
			case n < before[i] && !inOld[n]:
				t.Errorf("writer %s: batch %d, committed before the replay began, is not in the archived tables", w.prefix, n)
			case n >= after && !inNew[n]:
				t.Errorf("writer %s: batch %d, committed after the replay returned, is not in the new tables", w.prefix, n)
			case inOld[n]:
				maxOld = max(maxOld, n)
			default:
				minNew = min(minNew, n)
			}
		}
		if maxOld > minNew {
			t.Errorf("writer %s: batch %d went to the archived tables after batch %d went to the new ones", w.prefix, maxOld, minNew)
		}
		t.Logf("writer %s: %d batches before the replay, %d after it returned, %d in all; %d archived, %d in the new tables", w.prefix, before[i], after, total, len(inOld), len(inNew))
		if len(inNew) == 0 {
			t.Errorf("writer %s: none of its %d batches is in the new tables", w.prefix, total)
		}
	}
	var next int64
	if err := pool.QueryRow(ctx, `SELECT next_offset FROM projector_offsets WHERE consumer_group = 'wa'`).Scan(&next); err != nil || next != int64(writers[0].count()) {
		t.Errorf("writer wa's offsets in the new tables say %d (%v), want %d: the batches after the swap did not go on from the carried offsets", next, err, writers[0].count())
	}
}

// waitLocks polls pg_locks until n lock requests on the live table are waiting.
func waitLocks(t *testing.T, ctx context.Context, pool *pgxpool.Pool, table, mode string, n int) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		var waiting int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE relation = $1::regclass AND mode = $2 AND NOT granted`,
			table, mode).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting >= n {
			return
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("%d requests for %s on %s wait, want %d", waiting, mode, table, n)
		}
	}
}

// The swap with writes held up in it, step by step: a reader holds conversation_events,
// so the swap waits there holding projector_offsets and the other tables; a batch with
// offsets (it has drawn its version, then waits on projector_offsets, as the projector
// does) and one without (it waits on facebook_pages) start meanwhile. Once the reader
// lets go, the swap commits without a deadlock and both held batches land in the new
// tables through their prepared statements; the batches before are archived, the ones
// after are new.
func TestReplaySwapTakesHeldUpBatchesIntoTheNewTables(t *testing.T) {
	t.Parallel()
	kc := testenv.Kafka(t, 2)
	pool, url := testenv.Postgres(t)
	ctx := testenv.Context(t, 3*time.Minute)
	var live string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&live); err != nil {
		t.Fatal(err)
	}
	// The writers and the test's watching have pools of their own, as the projector
	// has: the swap holds one of the replay's connections.
	wpool, watch := ownPool(t, ctx, url), ownPool(t, ctx, url)
	all, _, _ := histories(t, 5, 60000)
	produce(t, kc, all)
	projectLive(t, ctx, pool, all, "proj-"+testenv.ID(), kc.DeltasTopic)
	group := "proc-" + testenv.ID()
	commitProcessor(t, ctx, kc, group, 0)

	w := projector.NewWriter(wpool)
	writers := []struct {
		prefix      string
		withOffsets bool
		waitsOn     string
		mode        string
	}{{"ha", true, "projector_offsets", "RowShareLock"}, {"hb", false, "facebook_pages", "RowExclusiveLock"}}
	for i := range 3 {
		for _, wr := range writers {
			if err := writeBatch(ctx, w, wr.prefix, i, wr.withOffsets); err != nil {
				t.Fatal(err)
			}
		}
	}

	reader, err := watch.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = reader.Rollback(context.Background()) }()
	if _, err := reader.Exec(ctx, `SELECT count(*) FROM conversation_events`); err != nil {
		t.Fatal(err)
	}
	cfg := replayConfig(group)
	cfg.LockTimeout = 30 * time.Second
	cfg.KeepOld = true
	type outcome struct {
		res projector.ReplayResult
		err error
	}
	replayed := make(chan outcome, 1)
	rctx, stop := context.WithCancel(ctx)
	finished := make(chan struct{})
	t.Cleanup(func() { stop(); <-finished }) // a failed test still lets Replay clean up
	go func() {
		defer close(finished)
		res, err := projector.Replay(rctx, cfg, kc, pool, nil, logging.Discard(), nil)
		replayed <- outcome{res, err}
	}()
	waitLocks(t, ctx, watch, "conversation_events", "AccessExclusiveLock", 1)

	held := make(chan error, len(writers))
	for _, wr := range writers {
		go func() { held <- writeBatch(ctx, w, wr.prefix, 3, wr.withOffsets) }()
	}
	for _, wr := range writers {
		waitLocks(t, ctx, watch, wr.waitsOn, wr.mode, 1)
	}
	if err := reader.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	out := <-replayed
	dropAtCleanup(t, out.res.ArchiveSchema)
	if out.err != nil || !out.res.Swapped || out.res.SwapAttempts != 1 {
		t.Fatalf("Replay() = swapped %v in %d attempts, error %v; want a swap in one attempt", out.res.Swapped, out.res.SwapAttempts, out.err)
	}
	for range writers {
		if err := <-held; err != nil {
			t.Errorf("a batch held up by the swap failed: %v", err)
		}
	}
	for _, wr := range writers {
		for i := 4; i < 6; i++ {
			if err := writeBatch(ctx, w, wr.prefix, i, wr.withOffsets); err != nil {
				t.Errorf("a batch after the swap failed: %v", err)
			}
		}
	}
	want := map[string]map[int]bool{"archived": {0: true, 1: true, 2: true}, "new": {3: true, 4: true, 5: true}}
	for _, wr := range writers {
		for name, schema := range map[string]string{"archived": out.res.ArchiveSchema, "new": live} {
			if diff := cmp.Diff(want[name], batchesIn(t, ctx, pool, schema, wr.prefix)); diff != "" {
				t.Errorf("writer %s: the %s tables hold other batches than expected (-want +got):\n%s", wr.prefix, name, diff)
			}
		}
	}
	var next int64
	if err := pool.QueryRow(ctx, `SELECT next_offset FROM projector_offsets WHERE consumer_group = 'ha'`).Scan(&next); err != nil || next != 6 {
		t.Errorf("writer ha's offsets in the new tables say %d (%v), want 6", next, err)
	}
}

// A dry run rebuilds and measures the differences the swap would make (imports are
// none), and changes nothing live: the same rows and the same tables, and no schema
// left behind.
func TestReplayDryRunReportsDifferencesAndLeavesTheLiveTablesAlone(t *testing.T) {
	t.Parallel()
	kc := testenv.Kafka(t, 2)
	pool, _ := testenv.Postgres(t)
	ctx := testenv.Context(t, 5*time.Minute)
	all, _, _ := histories(t, 20, 40000)
	produce(t, kc, all)
	projectLive(t, ctx, pool, all, "proj-"+testenv.ID(), kc.DeltasTopic)
	group := "proc-" + testenv.ID()
	commitProcessor(t, ctx, kc, group, 0)
	// Damage the live tables: one message's text changed, one event row deleted.
	for _, q := range []string{
		`UPDATE messages SET text = 'tampered' WHERE (page_id, mid) = (SELECT page_id, mid FROM messages ORDER BY 1, 2 LIMIT 1)`,
		`DELETE FROM conversation_events WHERE (page_id, event_id) = (SELECT page_id, event_id FROM conversation_events ORDER BY 1, 2 LIMIT 1)`,
	} {
		if ct, err := pool.Exec(ctx, q); err != nil || ct.RowsAffected() != 1 {
			t.Fatalf("%s: %v rows, %v; want 1 row", q, ct.RowsAffected(), err)
		}
	}
	// An import the swap would carry over is no difference.
	if _, err := pool.Exec(ctx, `INSERT INTO facebook_pages (page_id, name, access_token) VALUES ('imported-only', 'Imported Shop', 'token')`); err != nil {
		t.Fatal(err)
	}
	before, err := projector.Dump(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	oidsBefore, offsetsBefore := tableOIDs(t, ctx, pool), offsetRows(t, ctx, pool)

	cfg := replayConfig(group)
	cfg.DryRun = true
	res, err := projector.Replay(ctx, cfg, kc, pool, nil, logging.Discard(), nil)
	if err != nil {
		t.Fatalf("Replay(dry run) error = %v, want nil", err)
	}
	if res.Swapped || res.ArchiveSchema != "" {
		t.Errorf("Replay(dry run) swapped %v into archive %q, want no swap", res.Swapped, res.ArchiveSchema)
	}
	want := map[string]projector.TableDiff{
		"facebook_pages":      {Live: int64(len(before.Pages)), Rebuilt: int64(len(before.Pages))},
		"conversations":       {Live: int64(len(before.Conversations)), Rebuilt: int64(len(before.Conversations))},
		"messages":            {Live: int64(len(before.Messages)), Rebuilt: int64(len(before.Messages)), OnlyLive: 1, OnlyRebuilt: 1},
		"conversation_events": {Live: int64(len(before.Events)), Rebuilt: int64(len(before.Events)) + 1, OnlyRebuilt: 1},
	}
	if diff := cmp.Diff(want, res.Diff); diff != "" {
		t.Errorf("Replay(dry run) reported differences that are not the damage done (-want +got):\n%s", diff)
	}
	after, err := projector.Dump(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if diff := RowsDiff(before, after); diff != "" {
		t.Errorf("a dry run changed the live rows (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(oidsBefore, tableOIDs(t, ctx, pool)); diff != "" {
		t.Errorf("a dry run replaced live tables (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(offsetsBefore, offsetRows(t, ctx, pool)); diff != "" {
		t.Errorf("a dry run changed projector_offsets (-before +after):\n%s", diff)
	}
	if schemaExists(t, ctx, pool, res.RebuildSchema) {
		t.Errorf("a dry run without --keep-old left schema %s", res.RebuildSchema)
	}
}

// A processor group whose offsets the log cannot reach (a wrong group name) stops the
// replay with an error naming the option; the live tables stay and the rebuild schema
// goes.
func TestReplayFailsCleanlyWhenTheProcessorGroupIsPastTheLog(t *testing.T) {
	t.Parallel()
	kc := testenv.Kafka(t, 2)
	pool, _ := testenv.Postgres(t)
	ctx := testenv.Context(t, 2*time.Minute)
	all, _, _ := histories(t, 5, 50000)
	produce(t, kc, all)
	projectLive(t, ctx, pool, all, "proj-"+testenv.ID(), kc.DeltasTopic)
	group := "proc-" + testenv.ID()
	commitProcessor(t, ctx, kc, group, 10)
	oidsBefore := tableOIDs(t, ctx, pool)

	res, err := projector.Replay(ctx, replayConfig(group), kc, pool, nil, logging.Discard(), nil)
	if err == nil || !strings.Contains(err.Error(), "--processor-group") {
		t.Fatalf("Replay() error = %v, want one naming --processor-group", err)
	}
	if res.Swapped {
		t.Errorf("Replay() swapped although it failed")
	}
	if diff := cmp.Diff(oidsBefore, tableOIDs(t, ctx, pool)); diff != "" {
		t.Errorf("a failed replay replaced live tables (-before +after):\n%s", diff)
	}
	if res.RebuildSchema == "" || schemaExists(t, ctx, pool, res.RebuildSchema) {
		t.Errorf("a failed replay left its rebuild schema %q", res.RebuildSchema)
	}
}

func TestReplayConfigValidateNamesTheOption(t *testing.T) {
	t.Parallel()
	if err := projector.ReplayDefaults().Validate(); err != nil {
		t.Fatalf("ReplayDefaults().Validate() = %v, want nil", err)
	}
	for _, tc := range []struct {
		name string
		set  func(*projector.ReplayConfig)
		want string
	}{
		{"no batch", func(c *projector.ReplayConfig) { c.Batch = 0 }, "--batch (REPLAY_BATCH)"},
		{"huge batch", func(c *projector.ReplayConfig) { c.Batch = 2_000_000 }, "--batch (REPLAY_BATCH)"},
		{"blank group", func(c *projector.ReplayConfig) { c.ProcessorGroup = " " }, "--processor-group (PROCESSOR_GROUP)"},
		{"no attempts", func(c *projector.ReplayConfig) { c.SwapAttempts = 0 }, "--swap-attempts (REPLAY_SWAP_ATTEMPTS)"},
		{"no swap wait", func(c *projector.ReplayConfig) { c.SwapWait = 0 }, "--swap-wait (REPLAY_SWAP_WAIT)"},
		{"tiny lock timeout", func(c *projector.ReplayConfig) { c.LockTimeout = time.Millisecond }, "--lock-timeout (REPLAY_LOCK_TIMEOUT)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := projector.ReplayDefaults()
			tc.set(&cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error naming %s", err, tc.want)
			}
			// Replay checks before it touches anything: no pool, no broker needed.
			if _, err := projector.Replay(context.Background(), cfg, kafka.Defaults(), nil, nil, nil, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Replay() = %v, want the error naming %s", err, tc.want)
			}
		})
	}
}
