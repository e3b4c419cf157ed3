package projector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/convsync/convsync/schemas/deltas"
)

// ErrFenced means another writer advanced the partition's offsets first (a rebalance
// overlap): the transaction was rolled back and this writer must stop.
var ErrFenced = errors.New("projector offsets moved by another writer")

// Position is where a partition's batch ends: the offsets row written in the same
// transaction as the rows.
type Position struct {
	Group     string
	Topic     string
	Partition int32
	// From is the offset of the batch's first delta, Next the offset after its last.
	// Deltas below the stored next offset were applied already and are skipped.
	From, Next int64
	// Stored is the partition's next offset as stored in Postgres, when the caller knows
	// it (it has held the partition since it read or wrote it); nil has the writer read
	// it first, one more round trip, and so does a batch that does not end past it. A
	// successful apply sets it to the value it left, so a caller that keeps the partition
	// can pass it on; after an error it should pass nil (a commit whose answer was lost
	// may have happened). A wrong value rolls the transaction back with ErrFenced: retry
	// with nil.
	Stored *int64
}

// Input is one delta and its offset.
type Input struct {
	Offset int64
	Delta  deltas.Delta
}

// PageVersion and ConversationVersion name rows a batch touched, with the version they
// were merged at: what the cache hook refreshes.
type PageVersion struct {
	PageID  string
	Version int64
}

// ConversationVersion is a touched conversation.
type ConversationVersion struct {
	PageID  string
	PSID    string
	Version int64
}

// Touched is what one committed batch changed.
type Touched struct {
	Pages         []PageVersion
	Conversations []ConversationVersion
}

// Result is the outcome of one applied batch.
type Result struct {
	Touched Touched
	// Applied counts the deltas written (not skipped as already applied).
	Applied int
	// ReceivedMS are the arrival times of the events in the applied deltas.
	ReceivedMS []int64
	// Rows per table, and merge time per table.
	Rows      map[string]int64
	Durations map[string]time.Duration
	Committed time.Time
}

// Writer merges deltas into the read model, one transaction per batch.
type Writer struct {
	pool *pgxpool.Pool
	// searchPath, when set, is the search_path of every transaction (SET LOCAL, so it
	// holds behind a transaction-mode pooler): replay writes into its rebuild schema so.
	searchPath string
	// grown is set once the read-model tables are large enough for cached (generic)
	// plans (see planGrowth); until then each batch plans its merges afresh.
	grown   atomic.Bool
	batches atomic.Int64
}

// NewWriter writes through pool (whose search_path names the schema).
func NewWriter(pool *pgxpool.Pool) *Writer { return &Writer{pool: pool} }

// Part is one partition's share of a transaction: its deltas and, unless nil (replay),
// where they end.
type Part struct {
	Pos *Position
	In  []Input
}

// Apply writes a batch of deltas of one partition in one transaction: coalesce per key,
// one merge statement per table, the offsets row. With pos nil no offsets are kept
// (replay writes that way). Deltas whose offset is below the stored next offset were
// applied before and are skipped, so a batch applied twice changes nothing.
func (w *Writer) Apply(ctx context.Context, pos *Position, in []Input) (Result, error) {
	return w.ApplyMany(ctx, []Part{{Pos: pos, In: in}})
}

// ApplyMany is Apply for the batches of several partitions in one transaction (group
// commit): one offsets row per partition, each fenced on its own; ErrFenced when any
// partition's offsets moved under this writer.
//
// The transaction takes two round trips when every Position's Stored is known: the
// statements go in one pipeline (BEGIN, the offsets, the merges with the rows as array
// parameters), then COMMIT once the offsets are seen not to have moved. An unknown
// Stored costs one more, first, to read the stored offsets under a row lock (and a
// connection's first batch one more, to prepare the statements).
func (w *Writer) ApplyMany(ctx context.Context, parts []Part) (Result, error) {
	// Lock offsets rows in one order, so two writers cannot deadlock on them.
	parts = slices.Clone(parts)
	sort.SliceStable(parts, func(i, j int) bool {
		a, b := parts[i].Pos, parts[j].Pos
		return a != nil && b != nil && (a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition)
	})
	conn, err := w.pool.Acquire(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("acquire a connection: %w", err)
	}
	defer conn.Release() // a connection left in a transaction is closed, not reused
	return w.apply(ctx, conn.Conn(), parts)
}

// apply runs ApplyMany's transaction on conn.
func (w *Writer) apply(ctx context.Context, conn *pgx.Conn, parts []Part) (Result, error) {
	res := Result{Rows: map[string]int64{}, Durations: map[string]time.Duration{}}
	committed := false
	defer func() {
		if !committed && !conn.IsClosed() && conn.PgConn().TxStatus() != 'I' {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_, _ = conn.Exec(rctx, "ROLLBACK")
		}
	}()

	expected := make([]int64, len(parts))
	reads := 0
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	if w.searchPath != "" {
		b.Queue(`SELECT set_config('search_path', $1, true)`, w.searchPath)
	}
	for i, part := range parts {
		expected[i] = -1
		pos := part.Pos
		switch {
		case pos == nil:
		case pos.Stored != nil && pos.Next > *pos.Stored:
			expected[i] = *pos.Stored
		default: // unknown, or a batch that ends where the caller thinks it stored: look
			reads++
			b.Queue(`SELECT next_offset FROM projector_offsets
				WHERE consumer_group = $1 AND topic = $2 AND partition = $3 FOR UPDATE`,
				pos.Group, pos.Topic, pos.Partition).Query(func(rows pgx.Rows) error {
				for rows.Next() {
					if err := rows.Scan(&expected[i]); err != nil {
						return err
					}
				}
				return rows.Err()
			})
		}
	}
	if reads > 0 {
		// Which deltas were applied already follows from the stored offsets: read first.
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			return res, fmt.Errorf("read offsets: %w", err)
		}
		b = &pgx.Batch{}
	}

	var ds []deltas.Delta
	for i, part := range parts {
		for _, d := range part.In {
			if part.Pos != nil && d.Offset < expected[i] {
				continue // applied by an earlier transaction
			}
			ds = append(ds, d.Delta)
			res.ReceivedMS = append(res.ReceivedMS, d.Delta.ReceivedMS...)
		}
	}
	res.Applied = len(ds)
	rows := coalesce(ds)

	// Cached plans once the tables have grown (planGrowth), and only where there is a
	// cache: the other exec modes prepare afresh for every batch anyway. A SET LOCAL
	// covers every statement of the transaction; only the merges look rows up.
	// Large batches (a catch-up) are planned for their size too: there planning is
	// cheap beside the work, and a generic plan assumes 100 rows an array.
	cached := conn.Config().DefaultQueryExecMode == pgx.QueryExecModeCacheStatement
	small := max(len(rows.pages), len(rows.msgs), len(rows.convs), len(rows.events)) <= genericPlanRows
	if cached && small && w.grown.Load() {
		// Postgres would otherwise go on planning each batch: its generic plan is priced
		// for arrays of 100 rows where a batch holds a few.
		b.Queue("SET LOCAL plan_cache_mode = force_generic_plan")
	} else {
		b.Queue("SET LOCAL plan_cache_mode = force_custom_plan")
	}
	b.Queue(`SELECT nextval('read_model_version_seq')`)
	// Each table's statement is timed on the server: the pipeline answers all at once.
	var marks []time.Time
	var tables []string
	mark := func(table string) {
		tables = append(tables, table)
		b.Queue(`SELECT clock_timestamp()`).QueryRow(func(r pgx.Row) error {
			var t time.Time
			err := r.Scan(&t)
			marks = append(marks, t)
			return err
		})
	}
	mark("")
	// The offsets first: every writer, and a replay's swap, locks projector_offsets
	// before the read-model tables, in one order, so none can deadlock with another.
	// Each upsert moves the offset only from the value this transaction expects; one that
	// moved under it fences the batch (checked before COMMIT).
	fenced := false
	saved := slices.Clone(expected)
	for i, part := range parts {
		pos := part.Pos
		if pos == nil || pos.Next <= expected[i] {
			continue // nothing new: a late batch never moves the offset back
		}
		saved[i] = pos.Next
		b.Queue(saveOffsets, pos.Group, pos.Topic, pos.Partition, pos.Next, expected[i]).Exec(func(ct pgconn.CommandTag) error {
			fenced = fenced || ct.RowsAffected() != 1
			return nil
		})
	}
	if !slices.Equal(saved, expected) {
		mark("projector_offsets")
	}
	// The pages merge comes first: its row lock makes the transactions of a page wait
	// for each other's commit before their merges start, which keeps the messages
	// merge's read of what had content before right under READ COMMITTED
	// (TestConcurrentAppliesOfOneMessageCountItOnce). Every delta has a page row.
	if len(rows.pages) > 0 {
		b.Queue(mergePages, columns(rows.pages, pageKinds)...).Query(func(r pgx.Rows) error {
			for r.Next() {
				var pv PageVersion
				if err := r.Scan(&pv.PageID, &pv.Version); err != nil {
					return err
				}
				res.Touched.Pages = append(res.Touched.Pages, pv)
			}
			res.Rows["facebook_pages"] = int64(len(res.Touched.Pages))
			return r.Err()
		})
		mark("facebook_pages")
	}
	if len(rows.msgs) > 0 {
		b.Queue(mergeMessages, columns(rows.msgs, msgKinds)...)
		res.Rows["messages"] = int64(len(rows.msgs))
		mark("messages")
	}
	if len(rows.convs) > 0 {
		b.Queue(mergeConversations, columns(rows.convs, convKinds)...).Query(func(r pgx.Rows) error {
			for r.Next() {
				var cv ConversationVersion
				if err := r.Scan(&cv.PageID, &cv.PSID, &cv.Version); err != nil {
					return err
				}
				res.Touched.Conversations = append(res.Touched.Conversations, cv)
			}
			res.Rows["conversations"] = int64(len(res.Touched.Conversations))
			return r.Err()
		})
		mark("conversations")
	}
	if len(rows.events) > 0 {
		b.Queue(mergeEvents, columns(rows.events, eventKinds)...).Exec(func(ct pgconn.CommandTag) error {
			res.Rows["conversation_events"] = ct.RowsAffected()
			return nil
		})
		mark("conversation_events")
	}
	if cached && w.batches.Add(1)%planGrowthCheckEvery == 1 {
		// Last, after the offsets and the merges: the size check locks the tables too.
		// Checked for good, not once: emptied tables go back to per-batch plans.
		b.Queue(planGrowth, planGrowthMessages, planGrowthConversations).QueryRow(func(r pgx.Row) error {
			var grown bool
			if err := r.Scan(&grown); err != nil {
				return err
			}
			w.grown.Store(grown)
			return nil
		})
	}
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return res, fmt.Errorf("merge: %w", err)
	}
	for i := 1; i < len(marks); i++ {
		res.Durations[tables[i]] = marks[i].Sub(marks[i-1])
	}
	if fenced {
		return res, ErrFenced
	}
	ct, err := conn.Exec(ctx, "COMMIT")
	if err != nil {
		return res, fmt.Errorf("commit: %w", err)
	}
	if ct.String() != "COMMIT" {
		return res, fmt.Errorf("commit: the transaction was rolled back (%s)", ct)
	}
	committed = true
	res.Committed = time.Now()
	for i, part := range parts {
		if part.Pos != nil {
			part.Pos.Stored = &saved[i]
		}
	}
	return res, nil
}

// columns turns rows into one typed slice per column, by kinds (s text, t timestamptz,
// i integer, h smallint): the array parameters the merge statements unnest. Typed
// slices, not []any: pgx encodes those in every query exec mode, the exec and simple
// protocols (PG_EXEC_MODE, for poolers) included. A nil value is NULL.
func columns(rows [][]any, kinds string) []any {
	cols := make([]any, len(kinds))
	for c, k := range kinds {
		switch k {
		case 's':
			cols[c] = column[string](rows, c)
		case 't':
			cols[c] = column[time.Time](rows, c)
		case 'i':
			cols[c] = column[int32](rows, c)
		case 'h':
			cols[c] = column[int16](rows, c)
		default:
			panic("projector: unknown column kind " + string(k))
		}
	}
	return cols
}

// column is rows' column c as a typed slice; a value of another type than its kind says
// (a *Kinds constant out of step with coalesce) panics rather than turning into NULL.
func column[T any](rows [][]any, c int) []*T {
	col := make([]*T, len(rows))
	for r, row := range rows {
		switch v := row[c].(type) {
		case nil:
		case T:
			col[r] = &v
		default:
			panic(fmt.Sprintf("projector: column %d holds a %T, its kind says %T", c, v, *new(T)))
		}
	}
	return col
}

// rows are the coalesced rows of a batch, one per key, in the order of the *Kinds.
type rowSet struct {
	pages, convs, msgs, events [][]any
}

// The kinds of each row's columns, in the order of the merge statements' unnest aliases
// (sql.go): pages (page_id, name, name_at, last_synced_at); conversations (page_id, psid,
// thread_id, participant_name, participant_name_at, snapshot_at, snapshot_message_count,
// snapshot_unread_count, snapshot_snippet, read_watermark, delivery_watermark,
// last_message_at, last_message_mid, last_message_direction, last_outbound_at,
// first_message_at); messages
// (page_id, mid, psid, direction, text, attachments, attachments_key, reactions,
// edit_count, content_source, sent_at, app_id, reply_to_mid); events (page_id, event_id,
// psid, type, occurred_at, data). JSON goes as text.
const (
	pageKinds  = "sstt"
	convKinds  = "ssssttiistttsstt"
	msgKinds   = "ssssssssihtss"
	eventKinds = "ssssts"
)

// coalesce merges the batch's deltas per key with the processor's rules, because one
// multi-row upsert may not touch a row twice.
func coalesce(ds []deltas.Delta) rowSet {
	type convKey struct{ page, psid string }
	type msgKey struct{ page, mid string }
	pages := map[string]*deltas.Delta{}
	convs := map[convKey]*deltas.ConversationDelta{}
	msgs := map[msgKey]*deltas.MessageDelta{}
	msgPSID := map[msgKey]string{}
	events := map[[2]string]deltas.Other{}
	for _, d := range ds {
		p := pages[d.PageID]
		if p == nil {
			p = &deltas.Delta{PageID: d.PageID}
			pages[d.PageID] = p
		}
		if d.LastSyncedAt.After(p.LastSyncedAt) {
			p.LastSyncedAt = d.LastSyncedAt
		}
		if d.PageName != "" && (d.PageNameAt.After(p.PageNameAt) || (d.PageNameAt.Equal(p.PageNameAt) && d.PageName > p.PageName)) {
			p.PageName, p.PageNameAt = d.PageName, d.PageNameAt
		}
		for _, c := range d.Conversations {
			k := convKey{d.PageID, c.PSID}
			cur := convs[k]
			if cur == nil {
				cur = &deltas.ConversationDelta{PSID: c.PSID}
				convs[k] = cur
			}
			deltas.MergeConversation(cur, c)
			for _, m := range c.Messages {
				mk := msgKey{d.PageID, m.MID}
				cm := msgs[mk]
				if cm == nil {
					cm = &deltas.MessageDelta{MID: m.MID}
					msgs[mk] = cm
					msgPSID[mk] = c.PSID
				}
				deltas.MergeMessage(cm, m)
			}
		}
		for _, o := range d.Others {
			events[[2]string{d.PageID, o.ID}] = o
		}
	}

	var rs rowSet
	for _, id := range sortedKeys(pages) {
		p := pages[id]
		rs.pages = append(rs.pages, []any{pgText(id), nullString(p.PageName), nullTime(p.PageNameAt), nullTime(p.LastSyncedAt)})
	}
	ck := make([]convKey, 0, len(convs))
	for k := range convs {
		ck = append(ck, k)
	}
	sort.Slice(ck, func(i, j int) bool {
		return ck[i].page < ck[j].page || ck[i].page == ck[j].page && ck[i].psid < ck[j].psid
	})
	// The earliest message of each conversation in the batch: a conversation new in this
	// batch has no other, so its unread count need not look further back.
	firstAt := map[convKey]time.Time{}
	for mk, m := range msgs {
		k := convKey{mk.page, msgPSID[mk]}
		if at, ok := firstAt[k]; !m.SentAt.IsZero() && (!ok || m.SentAt.Before(at)) {
			firstAt[k] = m.SentAt
		}
	}
	for _, k := range ck {
		c := convs[k]
		row := []any{pgText(k.page), pgText(k.psid), nullString(c.ThreadID), nullString(c.ParticipantName), nullTime(c.ParticipantNameAt),
			nil, nil, nil, nil,
			nullTime(c.ReadWatermark), nullTime(c.DeliveryWatermark), nullTime(c.LastAt), nullString(c.LastMID),
			nullString(c.LastDirection), nullTime(c.LastOutboundAt), nullTime(firstAt[k])}
		if s := c.Snapshot; s != nil {
			row[5], row[6], row[7], row[8] = s.UpdatedTime, int32(s.MessageCount), int32(s.UnreadCount), nullString(s.Snippet)
		}
		rs.convs = append(rs.convs, row)
	}
	mk := make([]msgKey, 0, len(msgs))
	for k := range msgs {
		mk = append(mk, k)
	}
	sort.Slice(mk, func(i, j int) bool {
		return mk[i].page < mk[j].page || mk[i].page == mk[j].page && mk[i].mid < mk[j].mid
	})
	for _, k := range mk {
		m := msgs[k]
		atts := m.Attachments
		if len(atts) == 0 {
			atts = json.RawMessage("[]")
		}
		reactions := []byte("{}")
		if len(m.Reactions) > 0 {
			reactions, _ = json.Marshal(m.Reactions) // plain structs: cannot fail
		}
		rs.msgs = append(rs.msgs, []any{pgText(k.page), pgText(k.mid), pgText(msgPSID[k]), nullString(m.Direction), nullString(m.Text),
			jsonText(atts), nullString(m.AttachmentsKey), jsonText(reactions), int32(m.EditCount), int16(m.ContentSource), nullTime(m.SentAt),
			nullString(m.AppID), nullString(m.ReplyToMID)})
	}
	ek := make([][2]string, 0, len(events))
	for k := range events {
		ek = append(ek, k)
	}
	sort.Slice(ek, func(i, j int) bool { return ek[i][0] < ek[j][0] || ek[i][0] == ek[j][0] && ek[i][1] < ek[j][1] })
	for _, k := range ek {
		o := events[k]
		rs.events = append(rs.events, []any{pgText(k[0]), pgText(o.ID), nullString(o.PSID), pgText(o.Type), o.OccurredAt, jsonText(o.Data)})
	}
	return rs
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}
