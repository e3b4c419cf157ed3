package projector

// Replay rebuilds the read model from the event log (invariant 7, "Rebuildable").
//
// In: every record of the events topic from the start of each partition (read_committed,
// a plain consumer, no group), its last stable offsets, and the processor group's
// committed offsets on it. Out: a
// fresh schema convsync_rebuild_<n> built by the migrations and filled by Writer.Apply,
// swapped in for the live tables in one transaction; the old tables end in
// convsync_old_<n>, dropped unless kept.
//
// Why the swap loses nothing: the live tables hold exactly the deltas the projector
// applied, and each delta comes from events the log held when it was produced: below
// the events topic's last stable offsets of any later moment (the processor reads
// read_committed). At least once, they may be past the processor's committed offsets.
// The swap locks projector_offsets first, which stops the projector before its next
// batch, then reads the last stable offsets and the processor's committed ones
// (require_stable: no transaction half-visible) and waits until the rebuild has consumed
// at least the greater of the two. From then on the live tables hold
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
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/logging"
	"github.com/convsync/convsync/internal/progress"
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

// readModelTables are the tables events fill, in the order Apply locks them.
var readModelTables = []string{"facebook_pages", "messages", "conversations", "conversation_events"}

const versionSeq = "read_model_version_seq"

// Replay rebuilds the read model of pool's schema (its current_schema()) from the event
// log and swaps it in, or with DryRun only reports how it differs. opts are extra Kafka
// client options; progressTo receives a bar on a terminal, else a line every few seconds
// (nil: nothing). Nothing depends on a session's state (the rebuild's search_path is set
// in each of its transactions), so pool may go through a transaction-mode pooler. On an
// error nothing is swapped and the rebuild schema is dropped.
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
	if err := migrateRebuild(ctx, pool, res.RebuildSchema); err != nil {
		return res, err
	}
	pc := pool.Config()
	pc.MinConns = 0
	rpool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return res, fmt.Errorf("connect for the rebuild: %w", err)
	}
	defer rpool.Close()
	// The rebuild's tables, then the live schema for one object: the version sequence,
	// dropped from the rebuild so that both draw versions from the live one.
	w := NewWriter(rpool)
	w.searchPath = ident(res.RebuildSchema) + ", " + ident(res.LiveSchema)

	r := &rebuild{
		cfg: cfg, kc: kc, opts: opts, adm: adm, codec: codec, w: w, rpool: rpool, live: pool, log: log,
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
