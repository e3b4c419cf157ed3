package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/convsync/convsync/app"
	"github.com/convsync/convsync/internal/logging"
)

// runBackfill is `convsync backfill --all | --page ID ... [--full]`: Graph API history and
// what webhooks missed, appended to the event log.
func runBackfill(ctx context.Context, args []string) error {
	s := app.Defaults()
	fs := flag.NewFlagSet("convsync backfill", flag.ContinueOnError)
	b := app.Bind(fs, &s)
	var all bool
	var pages []string
	fs.BoolVar(&all, "all", false, "every page with a token in facebook_pages")
	fs.Func("page", "a page id to backfill (repeatable)", func(v string) error { pages = append(pages, v); return nil })
	b.Bool(&s.Backfill.Full, "full", "ignore last_synced_at: fetch every conversation", "BACKFILL_FULL")
	b.Int(&s.Backfill.Concurrency, "concurrency", "pages backfilled in parallel", "BACKFILL_CONCURRENCY")
	b.Int(&s.Backfill.Messages, "messages", "recent messages per conversation (at most 20: Graph gives no more)", "BACKFILL_MESSAGES")
	var profile string
	b.String(&profile, "cpu-profile", "write a CPU profile of the whole run to this file (go tool pprof reads it); empty: none", "BACKFILL_CPU_PROFILE")
	if err := b.Err(); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if all == (len(pages) > 0) {
		return errors.New("give --all or --page ID (repeatable), not both and not neither")
	}
	for _, v := range []func() error{s.PG.Validate, s.Kafka.Validate, s.Graph.Validate, s.Backfill.Validate} {
		if err := v(); err != nil {
			return fmt.Errorf("invalid configuration: %w", err)
		}
	}
	log, err := logging.New(s.Log, os.Stderr)
	if err != nil {
		return err
	}
	stop, err := startCPUProfile(profile)
	if err != nil {
		return err
	}
	defer func() {
		if perr := stop(); perr != nil {
			log.Error("cpu profile not written", "error", perr)
		}
	}()
	// The job reports on stderr: on a terminal a bar per page in progress above a bar of
	// pages done, otherwise a line per page; then the summary (duration, pages,
	// conversations, messages, Graph requests, throttling waits). A failed page makes the
	// exit status non-zero.
	return app.Backfill(ctx, &s, log, pages, os.Stderr)
}

// startCPUProfile starts writing a CPU profile of the process to path, for as long as
// the command runs (`convsync backfill --cpu-profile`, `convsync graphsim
// --cpu-profile`): how BENCH.md's backfill profiles were taken. stop ends it and closes
// the file. An empty path profiles nothing.
func startCPUProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile %s: %w", path, err)
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}
