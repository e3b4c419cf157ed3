package projector

// Replay rebuilds the read model from the event log (invariant 7, "Rebuildable").
//
// In: every record of the events topic from the start of each partition (read_committed,
// a plain consumer, no group), and the processor group's committed offsets on it. Out: a
// fresh schema convsync_rebuild_<n> built by the migrations and filled by Writer.Apply,
// swapped in for the live tables in one transaction; the old tables end in
// convsync_old_<n>, dropped unless kept.
//
// Why the swap loses nothing: the live tables hold exactly the deltas the projector
// applied, and each delta comes from events below the processor's committed offsets
// (the processor commits its offsets in the Kafka transaction that writes the deltas).
// The swap locks projector_offsets first, which stops the projector before its next
// batch, then reads those offsets (require_stable: no transaction half-visible) and waits
// until the rebuild has consumed at least them. From then on the live tables hold
// nothing the rebuilt ones lack. The projector's offsets are copied over, so it resumes
// on the new tables where it stood; deltas it applies again there were folded from
// events the rebuild has already (merges are idempotent).
//
// What the swap keeps from the live tables: projector_offsets, facebook_pages values that
// are not in the log (access_token, names from imports, pages known only from an import,
// created_at) and the table privileges. The version sequence is not swapped: the rebuild
// draws its versions from the live read_model_version_seq (its search_path falls through
// to the live schema for it), so versions keep growing across the swap and no lock on
// the sequence is needed (a projector batch holds one from nextval until it commits).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/logging"
	"github.com/convsync/convsync/internal/progress"
	"github.com/convsync/convsync/migrations"
	"github.com/convsync/convsync/processor"
	"github.com/convsync/convsync/schemas"
)

// ReplayConfig is the configuration of `convsync replay`.
type ReplayConfig struct {
	Batch          int    // REPLAY_BATCH (--batch): events folded and applied per transaction at most
	ProcessorGroup string // PROCESSOR_GROUP (--processor-group): whose committed offsets the rebuild must reach
	KeepOld        bool   // REPLAY_KEEP_OLD (--keep-old): keep the archived tables (after a dry run: the rebuilt ones)
	DryRun         bool   // REPLAY_DRY_RUN (--dry-run): rebuild and report the differences, do not swap
	// SwapAttempts (REPLAY_SWAP_ATTEMPTS, --swap-attempts) bounds the swap transactions
	// tried before giving up.
	SwapAttempts int
	// SwapWait (REPLAY_SWAP_WAIT, --swap-wait) is how long the swap may hold the
	// projector while the rebuild catches up with the processor's latest offsets; past it
	// the swap lets go and tries again.
	SwapWait time.Duration
	// LockTimeout (REPLAY_LOCK_TIMEOUT, --lock-timeout) bounds each wait for a table
	// lock in the swap: reads queue behind a waiting lock, so it stays short.
	LockTimeout time.Duration
}

// ReplayDefaults returns the configuration used when nothing is set.
func ReplayDefaults() ReplayConfig {
	return ReplayConfig{Batch: 5000, ProcessorGroup: "convsync-processor", SwapAttempts: 5,
		SwapWait: 5 * time.Second, LockTimeout: 5 * time.Second}
}

// Validate reports the first invalid value, naming its flag and variable.
func (c ReplayConfig) Validate() error {
	switch {
	case c.Batch < 1 || c.Batch > 1_000_000:
		return fmt.Errorf("--batch (REPLAY_BATCH) must be between 1 and 1000000, got %d", c.Batch)
	case strings.TrimSpace(c.ProcessorGroup) == "":
		return errors.New("--processor-group (PROCESSOR_GROUP) must not be empty: the replay must know how far the processor is")
	case c.SwapAttempts < 1:
		return fmt.Errorf("--swap-attempts (REPLAY_SWAP_ATTEMPTS) must be at least 1, got %d", c.SwapAttempts)
	case c.SwapWait <= 0 || c.SwapWait > time.Minute:
		return fmt.Errorf("--swap-wait (REPLAY_SWAP_WAIT) must be above 0 and at most 1m, got %s", c.SwapWait)
	case c.LockTimeout < 10*time.Millisecond || c.LockTimeout > time.Minute:
		return fmt.Errorf("--lock-timeout (REPLAY_LOCK_TIMEOUT) must be between 10ms and 1m, got %s", c.LockTimeout)
	}
	return nil
}

// ReplayResult is what a replay did.
type ReplayResult struct {
	LiveSchema    string // the schema that serves (current_schema() of the pool)
	RebuildSchema string // the schema the rebuild was built in
	ArchiveSchema string // where the old tables went; empty when nothing was swapped
	ArchiveKept   bool   // the archive schema still exists (--keep-old, or its drop failed)
	Swapped       bool
	Events        int64            // records decoded and folded
	Skipped       int64            // records that did not decode (the processor dead-lettered them)
	Deltas        int64            // deltas applied
	Batches       int64            // transactions
	Rows          map[string]int64 // rows of each table rebuilt from the log (before imports are carried over)
	Diff          map[string]TableDiff
	SwapAttempts  int
	Duration      time.Duration
}

// TableDiff compares a live table with its rebuild on the public columns (those Dump
// reads). A dry run reports it; the live side may still move while it is measured.
type TableDiff struct {
	Live, Rebuilt int64 // rows
	OnlyLive      int64 // live rows without an identical rebuilt row (missing or different)
	OnlyRebuilt   int64 // rebuilt rows without an identical live row
}

// Equal says whether the two sides hold the same rows.
func (d TableDiff) Equal() bool { return d.OnlyLive == 0 && d.OnlyRebuilt == 0 }

// readModelTables are the tables events fill, in the order Apply locks them.
var readModelTables = []string{"facebook_pages", "messages", "conversations", "conversation_events"}

// publicColumns are the columns a dry run compares: Dump's.
var publicColumns = map[string]string{
	"facebook_pages": "page_id, name, last_synced_at",
	"conversations": "page_id, psid, thread_id, participant_name, snippet, last_message_at, last_message_mid, " +
		"last_message_direction, message_count, unread_count, read_watermark, delivery_watermark",
	"messages":            "page_id, mid, psid, direction, text, attachments, reactions, edit_count, sent_at",
	"conversation_events": "page_id, event_id, psid, type, occurred_at, data",
}

const versionSeq = "read_model_version_seq"

// Replay rebuilds the read model of pool's schema (its current_schema()) from the event
// log and swaps it in, or with DryRun only reports how it differs. opts are extra Kafka
// client options; progressTo receives a bar on a terminal, else a line every few seconds
// (nil: nothing). The pool must reach Postgres directly: the rebuild's search_path is a
// connection parameter, which transaction poolers drop. On an error nothing is swapped
// and the rebuild schema is dropped.
func Replay(ctx context.Context, cfg ReplayConfig, kc kafka.Config, pool *pgxpool.Pool, opts []kgo.Opt, log *slog.Logger, progressTo io.Writer) (ReplayResult, error) {
	start := time.Now()
	var res ReplayResult
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	if err := kc.Validate(); err != nil {
		return res, err
	}
	if log == nil {
		log = logging.Discard()
	}
	codec, err := schemas.NewCodec()
	if err != nil {
		return res, err
	}
	var live *string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&live); err != nil {
		return res, fmt.Errorf("find the live schema: %w", err)
	}
	if live == nil {
		return res, errors.New("the search_path of DATABASE_URL names no existing schema: there is no live read model to rebuild")
	}
	res.LiveSchema = *live
	if err := checkMigrated(ctx, pool); err != nil {
		return res, err
	}

	cl, err := kgo.NewClient(append(kc.Opts(), opts...)...)
	if err != nil {
		return res, fmt.Errorf("replay kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, kc.EventsTopic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return res, fmt.Errorf("list start offsets of %s: %w", kc.EventsTopic, err)
	}
	// The last stable offsets: as far as a read_committed consumer gets now.
	ends, err := adm.ListCommittedOffsets(ctx, kc.EventsTopic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return res, fmt.Errorf("list end offsets of %s: %w", kc.EventsTopic, err)
	}

	suffix, err := reserveSchema(ctx, pool)
	if err != nil {
		return res, err
	}
	res.RebuildSchema = "convsync_rebuild_" + suffix
	log.Info("replay: rebuilding the read model in a fresh schema", "schema", res.RebuildSchema, "live_schema", res.LiveSchema, "topic", kc.EventsTopic)
	defer func() {
		if res.Swapped || (cfg.DryRun && cfg.KeepOld) {
			return
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if _, err := pool.Exec(dctx, `DROP SCHEMA IF EXISTS `+ident(res.RebuildSchema)+` CASCADE`); err != nil {
			log.Error("replay: drop the rebuild schema", "schema", res.RebuildSchema, "error", err)
		}
	}()
	rpool, err := rebuildPool(ctx, pool, res.RebuildSchema, res.LiveSchema)
	if err != nil {
		return res, err
	}
	defer rpool.Close()

	r := &rebuild{
		cfg: cfg, kc: kc, opts: opts, adm: adm, codec: codec, w: NewWriter(rpool), rpool: rpool, live: pool, log: log,
		liveSchema: res.LiveSchema, schema: res.RebuildSchema, archive: "convsync_old_" + suffix,
		consumed: map[int32]int64{}, ends: map[int32]int64{},
		changed: make(chan struct{}, 1), consumerDone: make(chan struct{}),
	}
	var total int64
	starts.Each(func(o kadm.ListedOffset) { r.consumed[o.Partition] = o.Offset })
	ends.Each(func(o kadm.ListedOffset) {
		r.ends[o.Partition] = o.Offset
		total += max(0, o.Offset-r.consumed[o.Partition])
	})
	r.total = total
	r.prog = progress.New(progressTo, total, isTerminal(progressTo))
	defer r.prog.Done()

	cctx, stop := context.WithCancel(ctx)
	go func() {
		r.consumeErr = r.consume(cctx)
		close(r.consumerDone)
	}()
	err = r.run(ctx, &res)
	stop()
	<-r.consumerDone

	r.mu.Lock()
	res.Events, res.Skipped, res.Deltas, res.Batches = r.events, r.skipped, r.deltas, r.batches
	r.mu.Unlock()
	res.Duration = time.Since(start)
	if err == nil {
		log.Info("replay: done", "swapped", res.Swapped, "events", res.Events, "skipped", res.Skipped,
			"duration", res.Duration, "archive_schema", res.ArchiveSchema, "archive_kept", res.ArchiveKept)
	}
	return res, err
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && logging.IsTerminal(f)
}

func ident(parts ...string) string { return pgx.Identifier(parts).Sanitize() }

// checkMigrated refuses a live schema that lacks migrations: the rebuild gets all of
// them, and the swap must not change the tables' shape under running code.
func checkMigrated(ctx context.Context, pool *pgxpool.Pool) error {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	list, err := migrations.List(ctx, db)
	if err != nil {
		return fmt.Errorf("migrations of the live schema: %w", err)
	}
	var pending []string
	for _, m := range list {
		if !m.Applied {
			pending = append(pending, m.Name)
		}
	}
	if len(pending) > 0 {
		return fmt.Errorf("the live schema lacks migrations %s: run `convsync migrate` first", strings.Join(pending, ", "))
	}
	return nil
}

// reserveSchema creates convsync_rebuild_<n> for n the current Unix time, or the next
// number whose rebuild and archive names are both free, and returns n.
func reserveSchema(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	n := time.Now().Unix()
	for range 100 {
		suffix := fmt.Sprint(n)
		n++
		var taken bool
		if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, "convsync_old_"+suffix).Scan(&taken); err != nil {
			return "", fmt.Errorf("check schema names: %w", err)
		}
		if taken {
			continue
		}
		_, err := pool.Exec(ctx, `CREATE SCHEMA `+ident("convsync_rebuild_"+suffix))
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P06" { // duplicate_schema: another replay has it
			continue
		}
		if err != nil {
			return "", fmt.Errorf("create schema convsync_rebuild_%s: %w", suffix, err)
		}
		return suffix, nil
	}
	return "", errors.New("create the rebuild schema: no free convsync_rebuild_<n> name in 100 tries")
}

// rebuildPool migrates the fresh schema and returns a pool writing into it. Its
// search_path ends with the live schema for one object: the version sequence, dropped
// from the rebuild so that both draw versions from the live one.
func rebuildPool(ctx context.Context, live *pgxpool.Pool, schema, liveSchema string) (*pgxpool.Pool, error) {
	newPool := func(path string) (*pgxpool.Pool, error) {
		pc := live.Config()
		pc.ConnConfig.RuntimeParams["search_path"] = path
		pc.MinConns = 0
		p, err := pgxpool.NewWithConfig(ctx, pc)
		if err != nil {
			return nil, fmt.Errorf("connect to schema %s: %w", schema, err)
		}
		return p, nil
	}
	mpool, err := newPool(ident(schema))
	if err != nil {
		return nil, err
	}
	db := stdlib.OpenDBFromPool(mpool)
	_, err = migrations.Up(ctx, db)
	if err == nil {
		_, err = mpool.Exec(ctx, `DROP SEQUENCE `+ident(schema, versionSeq))
	}
	_ = db.Close()
	mpool.Close()
	if err != nil {
		return nil, fmt.Errorf("migrate schema %s: %w", schema, err)
	}
	return newPool(ident(schema) + ", " + ident(liveSchema))
}

// rebuild is one replay's state, shared by the consumer, its partition workers and the
// swap.
type rebuild struct {
	cfg   ReplayConfig
	kc    kafka.Config
	opts  []kgo.Opt
	adm   *kadm.Client
	codec *schemas.Codec
	w     *Writer
	rpool *pgxpool.Pool
	live  *pgxpool.Pool
	log   *slog.Logger
	prog  *progress.Reporter
	total int64 // records between the start and end offsets at the start

	liveSchema, schema, archive string

	mu                               sync.Mutex
	consumed                         map[int32]int64 // per partition, the offset after the last record applied
	ends                             map[int32]int64 // the end offsets at the start
	events, skipped, deltas, batches int64
	changed                          chan struct{} // a token after each step of consumed

	// Workers apply under gate.RLock. The swap holds gate.Lock while it moves the tables
	// and sets stopped before letting go: nothing is applied after the swap (the rebuild
	// pool's search_path would then lead to the new live tables).
	gate    sync.RWMutex
	stopped bool

	consumeErr   error
	consumerDone chan struct{}
}

// run catches up, then swaps (or, in a dry run, measures the difference).
func (r *rebuild) run(ctx context.Context, res *ReplayResult) error {
	if _, err := r.waitFor(ctx, r.ends, 0); err != nil {
		return err
	}
	r.log.Info("replay: caught up with the log's end at the start", "topic", r.kc.EventsTopic, "records", r.total)
	// Fresh tables full of updated rows: clean them and give the planner statistics
	// before they serve. Consumption goes on meanwhile.
	for _, t := range readModelTables {
		if _, err := r.rpool.Exec(ctx, `VACUUM (ANALYZE) `+ident(r.schema, t)); err != nil {
			return fmt.Errorf("vacuum %s.%s: %w", r.schema, t, err)
		}
	}
	for attempt := 1; attempt <= r.cfg.SwapAttempts; attempt++ {
		res.SwapAttempts = attempt
		target, err := r.processorOffsets(ctx)
		if err != nil {
			return err
		}
		if _, err := r.waitFor(ctx, target, 0); err != nil {
			return err
		}
		if r.cfg.DryRun {
			r.pause()
			// What the swap would carry over, so the difference is what it would change.
			err = pgx.BeginFunc(ctx, r.live, func(tx pgx.Tx) error { return r.carryOver(ctx, tx) })
			if err != nil {
				return fmt.Errorf("dry run: %w", err)
			}
			res.Diff, err = r.diff(ctx)
			if err != nil {
				return err
			}
			res.Rows = map[string]int64{}
			for t, d := range res.Diff {
				res.Rows[t] = d.Rebuilt
			}
			return nil
		}
		if res.Rows == nil {
			if res.Rows, err = r.count(ctx); err != nil {
				return err
			}
		}
		swapped, err := r.swap(ctx)
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr) && (pgErr.Code == "55P03" || pgErr.Code == "40P01"):
			// lock_not_available (--lock-timeout) or deadlock_detected: nothing changed.
			r.log.Warn("replay: swap could not lock the live tables, trying again", "attempt", attempt, "error", err)
			continue
		case err != nil:
			return err
		case !swapped:
			r.log.Info("replay: the rebuild did not reach the processor's offsets within --swap-wait, catching up again", "attempt", attempt)
			continue
		}
		res.Swapped, res.ArchiveSchema = true, r.archive
		r.log.Info("replay: swapped the rebuilt tables in", "live_schema", r.liveSchema, "archive_schema", r.archive, "attempt", attempt)
		break
	}
	if !res.Swapped {
		return fmt.Errorf("replay: no swap in %d attempts (--swap-attempts): the live tables stay as they were", r.cfg.SwapAttempts)
	}
	res.ArchiveKept = true
	if r.cfg.KeepOld {
		return nil
	}
	if err := r.dropArchive(ctx); err != nil {
		r.log.Warn("replay: the old tables stay in the archive schema", "archive_schema", r.archive, "error", err)
		return nil
	}
	res.ArchiveKept = false
	return nil
}

// consume reads the events topic from the start with one worker per partition, until ctx
// ends (nil) or a batch cannot be applied.
func (r *rebuild) consume(ctx context.Context) error {
	opts := append(r.kc.Opts(), kgo.FetchMaxPartitionBytes(16<<20)) // thousands of events per partition and fetch
	opts = append(opts, r.opts...)
	opts = append(opts,
		kgo.ConsumeTopics(r.kc.EventsTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers take offsets too: seeing them lets a partition reach its
		// end offset exactly.
		kgo.KeepControlRecords(),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("replay kafka consumer: %w", err)
	}
	defer cl.Close()

	g, gctx := errgroup.WithContext(ctx)
	workers := map[int32]chan []*kgo.Record{}
	for {
		fetches := cl.PollRecords(gctx, 10_000)
		if gctx.Err() != nil || fetches.IsClientClosed() {
			break
		}
		fetches.EachError(func(t string, p int32, err error) {
			r.log.Warn("replay: fetch", "topic", t, "partition", p, "error", err)
		})
		fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
			if len(ftp.Records) == 0 {
				return
			}
			in := workers[ftp.Partition]
			if in == nil {
				in = make(chan []*kgo.Record, 4)
				workers[ftp.Partition] = in
				part := ftp.Partition
				g.Go(func() error { return r.work(gctx, part, in) })
			}
			select {
			case in <- ftp.Records:
			case <-gctx.Done():
			}
		})
	}
	for _, in := range workers {
		close(in)
	}
	if err := g.Wait(); err != nil && !errors.Is(err, errReplayStopped) {
		return err
	}
	return nil
}

// work folds and applies one partition's records. A batch is what has arrived, up to
// cfg.Batch events: catching up gives full batches, tailing prompt ones.
func (r *rebuild) work(ctx context.Context, part int32, in <-chan []*kgo.Record) error {
	var events []processor.Event
	var taken, skipped int64
	next := int64(-1)
	flush := func() error {
		if next < 0 {
			return nil
		}
		if err := r.apply(ctx, part, events); err != nil {
			return err
		}
		r.advance(part, next, taken, skipped, int64(len(events)))
		events, taken, skipped, next = events[:0], 0, 0, -1
		return nil
	}
	for {
		var recs []*kgo.Record
		var ok bool
		select {
		case recs, ok = <-in:
		case <-ctx.Done():
			return nil
		}
		if !ok {
			return nil
		}
		for _, rec := range recs {
			next, taken = rec.Offset+1, taken+1
			if rec.Attrs.IsControl() {
				continue
			}
			env, data, err := r.codec.Decode(rec.Value)
			if err != nil {
				skipped++ // the processor dead-lettered it: the live tables lack it too
				continue
			}
			events = append(events, processor.Event{Env: env, Data: data})
			if len(events) >= r.cfg.Batch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if len(in) == 0 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

var errReplayStopped = errors.New("replay stopped")

// apply folds and writes one batch without offsets, retrying transient failures:
// applying it twice changes nothing.
func (r *rebuild) apply(ctx context.Context, part int32, events []processor.Event) error {
	if len(events) == 0 {
		return nil
	}
	deltas := processor.Fold(events)
	in := make([]Input, len(deltas))
	for i, d := range deltas {
		in[i] = Input{Delta: d}
	}
	r.gate.RLock()
	defer r.gate.RUnlock()
	if r.stopped {
		return errReplayStopped
	}
	for attempt := 0; ; attempt++ {
		_, err := r.w.Apply(ctx, nil, in)
		if err == nil {
			r.mu.Lock()
			r.deltas += int64(len(deltas))
			r.batches++
			r.mu.Unlock()
			return nil
		}
		if ctx.Err() != nil {
			return errReplayStopped
		}
		if attempt == 4 {
			return fmt.Errorf("apply replay batch of %s partition %d: %w", r.kc.EventsTopic, part, err)
		}
		r.log.Warn("replay: apply batch, retrying", "topic", r.kc.EventsTopic, "partition", part, "attempt", attempt+1, "error", err)
		select {
		case <-time.After(time.Duration(200<<attempt) * time.Millisecond):
		case <-ctx.Done():
			return errReplayStopped
		}
	}
}

func (r *rebuild) advance(part int32, next, taken, skipped, events int64) {
	r.mu.Lock()
	r.consumed[part] = max(r.consumed[part], next)
	r.events += events
	r.skipped += skipped
	r.mu.Unlock()
	r.prog.Add(taken)
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// pause stops the workers for good after their current batch.
func (r *rebuild) pause() {
	r.gate.Lock()
	r.stopped = true
	r.gate.Unlock()
}

// reached says whether every partition is consumed up to target.
func (r *rebuild) reached(target map[int32]int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p, off := range target {
		if r.consumed[p] < off {
			return false
		}
	}
	return true
}

// waitFor waits until the rebuild has consumed target, or timeout (0: no limit) has
// passed, and reports which.
func (r *rebuild) waitFor(ctx context.Context, target map[int32]int64, timeout time.Duration) (bool, error) {
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	for !r.reached(target) {
		select {
		case <-r.changed:
		case <-deadline:
			return false, nil
		case <-ctx.Done():
			return false, ctx.Err()
		case <-r.consumerDone:
			if r.consumeErr != nil {
				return false, r.consumeErr
			}
			return false, errors.New("the replay consumer stopped")
		}
	}
	return true, nil
}

// processorOffsets are the processor group's committed offsets on the events topic. With
// require_stable the broker answers only once no transaction of the group is half
// committed, so no delta the projector can read comes from events past these offsets.
func (r *rebuild) processorOffsets(ctx context.Context) (map[int32]int64, error) {
	group := r.cfg.ProcessorGroup
	out := map[int32]int64{}
	for attempt := 0; ; attempt++ {
		clear(out)
		resps, err := r.adm.FetchOffsets(kadm.RequireStable(ctx), group)
		var retry error
		switch {
		case err == nil:
			for p, o := range resps[r.kc.EventsTopic] {
				switch {
				case o.Err != nil && kerr.IsRetriable(o.Err):
					retry = o.Err
				case o.Err != nil:
					err = o.Err
				case o.At >= 0:
					out[p] = o.At
				}
			}
		case kerr.IsRetriable(err):
			retry, err = err, nil
		}
		if err == nil && retry != nil && attempt == 50 {
			err = retry
		}
		if err != nil {
			return nil, fmt.Errorf("fetch the offsets of group %s (--processor-group): %w", group, err)
		}
		if retry == nil {
			break
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if len(out) == 0 && r.total > 0 {
		return nil, fmt.Errorf("group %s (--processor-group) has no committed offsets on %s: without them the replay cannot tell what the live tables hold", group, r.kc.EventsTopic)
	}
	// An offset past the log's end cannot be reached: a wrong group or a recreated topic.
	ends, err := r.adm.ListEndOffsets(ctx, r.kc.EventsTopic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", r.kc.EventsTopic, err)
	}
	for p, off := range out {
		if end, ok := ends.Lookup(r.kc.EventsTopic, p); !ok || off > end.Offset {
			return nil, fmt.Errorf("group %s (--processor-group) committed offset %d on %s partition %d, past the end of the log", group, off, r.kc.EventsTopic, p)
		}
	}
	return out, nil
}

// count returns the rows of each rebuilt table.
func (r *rebuild) count(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	for _, t := range readModelTables {
		var n int64
		if err := r.rpool.QueryRow(ctx, `SELECT count(*) FROM `+ident(r.schema, t)).Scan(&n); err != nil {
			return nil, fmt.Errorf("count %s.%s: %w", r.schema, t, err)
		}
		out[t] = n
	}
	return out, nil
}

// diff compares each rebuilt table with the live one on the public columns.
func (r *rebuild) diff(ctx context.Context) (map[string]TableDiff, error) {
	out := map[string]TableDiff{}
	for _, t := range readModelTables {
		cols := publicColumns[t]
		lt, rt := ident(r.liveSchema, t), ident(r.schema, t)
		var d TableDiff
		err := r.live.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM `+lt+`), (SELECT count(*) FROM `+rt+`),
			(SELECT count(*) FROM (SELECT `+cols+` FROM `+lt+` EXCEPT ALL SELECT `+cols+` FROM `+rt+`) x),
			(SELECT count(*) FROM (SELECT `+cols+` FROM `+rt+` EXCEPT ALL SELECT `+cols+` FROM `+lt+`) y)`,
		).Scan(&d.Live, &d.Rebuilt, &d.OnlyLive, &d.OnlyRebuilt)
		if err != nil {
			return nil, fmt.Errorf("compare %s: %w", t, err)
		}
		out[t] = d
	}
	return out, nil
}

// swap replaces the live tables with the rebuilt ones in one transaction. It reports
// false, having changed nothing, when the rebuild did not reach the processor's offsets
// within SwapWait.
func (r *rebuild) swap(ctx context.Context) (bool, error) {
	tx, err := r.live.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("swap: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true)`, fmt.Sprintf("%dms", r.cfg.LockTimeout.Milliseconds())); err != nil {
		return false, fmt.Errorf("swap: set lock_timeout: %w", err)
	}
	// The projector's next transaction waits here: from now on the live tables take
	// nothing new, and the processor's offsets say all they hold.
	if _, err := tx.Exec(ctx, `LOCK TABLE `+ident(r.liveSchema, "projector_offsets")+` IN ACCESS EXCLUSIVE MODE`); err != nil {
		return false, fmt.Errorf("swap: lock projector_offsets: %w", err)
	}
	// Kafka answering slowly must not hold the projector for long either.
	kctx, cancel := context.WithTimeout(ctx, max(r.cfg.SwapWait, 10*time.Second))
	target, err := r.processorOffsets(kctx)
	cancel()
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if ok, err := r.waitFor(ctx, target, r.cfg.SwapWait); err != nil || !ok {
		return false, err
	}

	r.gate.Lock() // the workers finish their batch and wait
	committed := false
	defer func() {
		r.stopped = committed
		r.gate.Unlock()
	}()

	locked := make([]string, len(readModelTables))
	for i, t := range readModelTables {
		locked[i] = ident(r.liveSchema, t)
	}
	// In the order Apply writes them, so that a writer holding one never waits for us.
	if _, err := tx.Exec(ctx, `LOCK TABLE `+strings.Join(locked, ", ")+` IN ACCESS EXCLUSIVE MODE`); err != nil {
		return false, fmt.Errorf("swap: lock the live tables: %w", err)
	}
	if err := r.carryOver(ctx, tx); err != nil {
		return false, fmt.Errorf("swap: %w", err)
	}
	if err := r.copyGrants(ctx, tx); err != nil {
		return false, err
	}
	if err := r.moveObjects(ctx, tx); err != nil {
		return false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("swap: commit: %w", err)
	}
	committed = true
	return true, nil
}

// carryOver copies into the rebuilt tables what the log does not hold: the projector's
// offsets, page tokens, names from imports (page-synced names, with name_at, are in the
// log and win over imported ones as in mergePages), pages only an import knows, and
// when each page first appeared.
func (r *rebuild) carryOver(ctx context.Context, tx pgx.Tx) error {
	lr := func(t string) string { return ident(r.liveSchema, t) }
	rr := func(t string) string { return ident(r.schema, t) }
	for _, s := range []struct{ what, sql string }{
		{"copy projector_offsets", `INSERT INTO ` + rr("projector_offsets") + ` (consumer_group, topic, partition, next_offset, updated_at)
			SELECT consumer_group, topic, partition, next_offset, updated_at FROM ` + lr("projector_offsets") + `
			ON CONFLICT DO NOTHING`},
		{"carry over page tokens and imported names", `UPDATE ` + rr("facebook_pages") + ` AS r SET
			access_token = coalesce(l.access_token, r.access_token),
			name = CASE WHEN r.name IS NULL AND l.name_at IS NULL THEN l.name ELSE r.name END,
			created_at = least(r.created_at, l.created_at)
			FROM ` + lr("facebook_pages") + ` AS l WHERE l.page_id = r.page_id`},
		{"carry over imported pages", `INSERT INTO ` + rr("facebook_pages") + `
			(page_id, name, name_at, access_token, last_synced_at, version, created_at, updated_at)
			SELECT page_id, name, name_at, access_token, last_synced_at, version, created_at, updated_at
			FROM ` + lr("facebook_pages") + ` AS l
			WHERE NOT EXISTS (SELECT 1 FROM ` + rr("facebook_pages") + ` AS r WHERE r.page_id = l.page_id)`},
	} {
		if _, err := tx.Exec(ctx, s.sql); err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
	}
	return nil
}

// schemaObject is an object of the read model's schema that the swap moves: a relation
// (indexes, constraints, owned sequences and triggers go with their table), a routine or
// a type.
type schemaObject struct {
	kind string // the ALTER keyword: TABLE, VIEW, SEQUENCE, ROUTINE, TYPE, DOMAIN, …
	name string // quoted
	args string // a routine's argument list, with parentheses
	key  string // what matches it across schemas
}

const objectsSQL = `
SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
        WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, quote_ident(c.relname), '', 'rel ' || c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND (d.deptype = 'e' OR (c.relkind = 'S' AND d.deptype IN ('a', 'i'))))
UNION ALL
SELECT 'ROUTINE', quote_ident(p.proname), '(' || pg_get_function_identity_arguments(p.oid) || ')',
       'routine ' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = $1
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
UNION ALL
SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, quote_ident(t.typname), '', 'type ' || t.typname
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = $1 AND t.typtype IN ('e', 'd', 'r', 'c')
  AND (t.typtype <> 'c' OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')`

func schemaObjects(ctx context.Context, tx pgx.Tx, schema string) ([]schemaObject, error) {
	rows, err := tx.Query(ctx, objectsSQL, schema)
	if err != nil {
		return nil, fmt.Errorf("list the objects of schema %s: %w", schema, err)
	}
	objs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (schemaObject, error) {
		var o schemaObject
		err := row.Scan(&o.kind, &o.name, &o.args, &o.key)
		return o, err
	})
	if err != nil {
		return nil, fmt.Errorf("list the objects of schema %s: %w", schema, err)
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].key < objs[j].key })
	return objs, nil
}

// moveObjects moves the live schema's read model (the objects the rebuild has too) into
// the archive schema and the rebuild's into the live schema, then drops the rebuild
// schema, which must be empty by then: anything left would have been lost silently.
// The version sequence has no counterpart in the rebuild and stays.
func (r *rebuild) moveObjects(ctx context.Context, tx pgx.Tx) error {
	rebuilt, err := schemaObjects(ctx, tx, r.schema)
	if err != nil {
		return err
	}
	current, err := schemaObjects(ctx, tx, r.liveSchema)
	if err != nil {
		return err
	}
	liveByKey := map[string]schemaObject{}
	for _, o := range current {
		liveByKey[o.key] = o
	}
	move := func(o schemaObject, from, to string) error {
		sql := `ALTER ` + o.kind + ` ` + ident(from) + `.` + o.name + o.args + ` SET SCHEMA ` + ident(to)
		if _, err := tx.Exec(ctx, sql); err != nil {
			return fmt.Errorf("swap: move %s %s%s from %s to %s: %w", strings.ToLower(o.kind), o.name, o.args, from, to, err)
		}
		return nil
	}
	if _, err := tx.Exec(ctx, `CREATE SCHEMA `+ident(r.archive)); err != nil {
		return fmt.Errorf("swap: create schema %s: %w", r.archive, err)
	}
	for _, o := range rebuilt {
		if old, ok := liveByKey[o.key]; ok {
			if err := move(old, r.liveSchema, r.archive); err != nil {
				return err
			}
		}
	}
	for _, o := range rebuilt {
		if err := move(o, r.schema, r.liveSchema); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `DROP SCHEMA `+ident(r.schema)+` RESTRICT`); err != nil {
		return fmt.Errorf("swap: drop the emptied schema %s (an object the swap does not move is left in it): %w", r.schema, err)
	}
	return nil
}

// copyGrants gives each rebuilt relation the privileges its live counterpart grants to
// roles other than its owner: roles that read the tables keep reading them.
func (r *rebuild) copyGrants(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `
		SELECT quote_ident(c.relname), a.privilege_type, a.is_grantable,
		       CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		CROSS JOIN LATERAL aclexplode(c.relacl) a
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.grantee <> c.relowner
		  AND EXISTS (SELECT 1 FROM pg_class c2 JOIN pg_namespace n2 ON n2.oid = c2.relnamespace
		              WHERE n2.nspname = $2 AND c2.relname = c.relname AND c2.relkind IN ('r', 'p', 'v', 'm', 'f'))
		ORDER BY 1, 2, 4`, r.liveSchema, r.schema)
	if err != nil {
		return fmt.Errorf("swap: read the live tables' privileges: %w", err)
	}
	var grants []string
	for rows.Next() {
		var rel, priv, grantee string
		var grantable bool
		if err := rows.Scan(&rel, &priv, &grantable, &grantee); err != nil {
			rows.Close()
			return fmt.Errorf("swap: read the live tables' privileges: %w", err)
		}
		g := `GRANT ` + priv + ` ON ` + ident(r.schema) + `.` + rel + ` TO ` + grantee
		if grantable {
			g += ` WITH GRANT OPTION`
		}
		grants = append(grants, g)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("swap: read the live tables' privileges: %w", err)
	}
	for _, g := range grants {
		if _, err := tx.Exec(ctx, g); err != nil {
			return fmt.Errorf("swap: %s: %w", g, err)
		}
	}
	return nil
}

// dropArchive drops the old tables, waiting at most LockTimeout for each lock.
func (r *rebuild) dropArchive(ctx context.Context) error {
	tx, err := r.live.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true)`, fmt.Sprintf("%dms", r.cfg.LockTimeout.Milliseconds())); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `DROP SCHEMA `+ident(r.archive)+` CASCADE`); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
