package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	"github.com/convsync/convsync/internal/progress"
	"github.com/convsync/convsync/migrations"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/schemas/deltas"
)

// The rebuild: a schema of its own, filled from the events topic partition by partition
// until it reaches the processor's committed offsets.

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

// migrateRebuild migrates the fresh schema through the live pool and drops its version
// sequence, so that the rebuild draws its versions from the live one. Nothing depends on
// a session's state (search_path is set per transaction): it works behind a
// transaction-mode pooler.
func migrateRebuild(ctx context.Context, live *pgxpool.Pool, schema string) error {
	if err := migrations.UpIn(ctx, live, schema); err != nil {
		return fmt.Errorf("migrate schema %s: %w", schema, err)
	}
	if _, err := live.Exec(ctx, `DROP SEQUENCE `+ident(schema, versionSeq)); err != nil {
		return fmt.Errorf("migrate schema %s: %w", schema, err)
	}
	return nil
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
	var events []deltas.Event
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
			events = append(events, deltas.Event{Env: env, Data: data})
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
func (r *rebuild) apply(ctx context.Context, part int32, events []deltas.Event) error {
	if len(events) == 0 {
		return nil
	}
	deltas := deltas.Fold(events)
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

// processorOffsets is what the rebuild must reach before it may swap: every event whose
// delta the live projector may have applied. That is, per partition, the greater of the
// processor group's committed offset on the events topic (with require_stable the
// broker answers only once no transaction of the group is half committed) and the
// topic's last stable offset now: at least once (PROCESSOR_DELIVERY's default), the
// processor produces a batch's deltas before it commits the batch's offsets, so the
// projector may have applied deltas of events past them, but never of events the log
// did not hold yet. The group's offsets still tell a wrong group (none, or past the log).
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
		// The log's last stable offsets bound the target alone; no offsets at all is a
		// processor that has not committed yet (at least once, its first second) or a
		// wrong --processor-group.
		r.log.Warn("replay: the processor group has no committed offsets on the events topic; the swap waits for the log's last stable offsets",
			"group", group, "topic", r.kc.EventsTopic)
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
	stable, err := r.adm.ListCommittedOffsets(ctx, r.kc.EventsTopic)
	if err == nil {
		err = stable.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list the last stable offsets of %s: %w", r.kc.EventsTopic, err)
	}
	stable.Each(func(o kadm.ListedOffset) {
		if o.Topic == r.kc.EventsTopic && o.Offset > out[o.Partition] {
			out[o.Partition] = o.Offset
		}
	})
	return out, nil
}
