package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"text/tabwriter"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/app"
	"github.com/convsync/convsync/internal/cache"
	"github.com/convsync/convsync/internal/logging"
	"github.com/convsync/convsync/internal/pg"
	"github.com/convsync/convsync/projector"
)

// runReplay rebuilds the read model from the event log into fresh tables and swaps them
// in once caught up; the cache is flushed after the swap.
func runReplay(ctx context.Context, args []string) error {
	s := app.Defaults()
	rc := projector.ReplayDefaults()
	fs := flag.NewFlagSet("convsync replay", flag.ContinueOnError)
	b := app.Bind(fs, &s)
	b.Int(&rc.Batch, "batch", "events folded and applied per transaction at most", "REPLAY_BATCH")
	b.Bool(&rc.KeepOld, "keep-old", "keep the archived tables after the swap", "REPLAY_KEEP_OLD")
	b.Bool(&rc.DryRun, "dry-run", "rebuild and report the differences, do not swap", "REPLAY_DRY_RUN")
	b.Int(&rc.SwapAttempts, "swap-attempts", "swap transactions tried before giving up", "REPLAY_SWAP_ATTEMPTS")
	b.Duration(&rc.SwapWait, "swap-wait", "how long the swap may hold the projector while the rebuild catches up", "REPLAY_SWAP_WAIT")
	b.Duration(&rc.LockTimeout, "lock-timeout", "bound of each table lock wait in the swap", "REPLAY_LOCK_TIMEOUT")
	if err := b.Err(); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	rc.ProcessorGroup = s.Processor.Group
	for _, v := range []func() error{s.PG.Validate, s.Kafka.Validate, rc.Validate, s.Cache.Validate} {
		if err := v(); err != nil {
			return fmt.Errorf("invalid configuration: %w", err)
		}
	}
	if s.Log.Level == "info" && logging.IsTerminal(os.Stderr) {
		s.Log.Level = "warn" // log lines would break the progress bar
	}
	log, err := logging.New(s.Log, os.Stderr)
	if err != nil {
		return err
	}
	pool, err := pg.NewPool(ctx, s.PG, s.PG.URL) // a direct connection: the rebuild sets search_path
	if err != nil {
		return err
	}
	defer pool.Close()
	res, err := projector.Replay(ctx, rc, s.Kafka, pool, []kgo.Opt{kgo.ClientID(s.Kafka.ClientID + "-replay")}, log, os.Stderr)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "events\t%d (skipped %d) in %s, %d deltas, %d batches\n", res.Events, res.Skipped, res.Duration.Round(1e6), res.Deltas, res.Batches)
	fmt.Fprintln(w, "TABLE\tLIVE\tREBUILT\tONLY LIVE\tONLY REBUILT")
	tables := make([]string, 0, len(res.Diff))
	for t := range res.Diff {
		tables = append(tables, t)
	}
	sort.Strings(tables)
	for _, t := range tables {
		d := res.Diff[t]
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\n", t, d.Live, d.Rebuilt, d.OnlyLive, d.OnlyRebuilt)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if !res.Swapped {
		fmt.Println("dry run: live tables unchanged")
		return nil
	}
	fmt.Printf("swapped: %s now serves the rebuilt tables", res.LiveSchema)
	if res.ArchiveKept {
		fmt.Printf("; the old ones are in %s", res.ArchiveSchema)
	}
	fmt.Println()
	// Rebuilt rows may carry versions below entries cached from the old ones: start the
	// cache afresh (a memory cache lives in the serving processes, which a restart clears).
	c, closeFn, err := cache.Open(ctx, s.Cache, prometheus.NewRegistry(), log)
	if err != nil {
		return err
	}
	defer closeFn()
	switch {
	case c.Kind() == "redis":
		if err := c.Flush(ctx); err != nil {
			return fmt.Errorf("flush the cache after the swap: %w", err)
		}
		fmt.Println("cache flushed")
	case s.Cache.URL != "":
		return fmt.Errorf("swapped, but Redis (REDIS_URL) did not answer: flush %s* yourself, entries may be older than the rebuilt rows", s.Cache.Prefix)
	}
	return nil
}
