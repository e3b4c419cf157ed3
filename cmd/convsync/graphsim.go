package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	"github.com/convsync/convsync/internal/graphsim"
)

// runGraphsim serves the Graph API simulator until interrupted.
func runGraphsim(ctx context.Context, args []string) error {
	cfg, addr, profile, err := graphsimFlags(args)
	if err != nil {
		return err
	}
	stop, err := startCPUProfile(profile)
	if err != nil {
		return err
	}
	defer func() { _ = stop() }() // a profile is a diagnosis: the exit status is about serving
	if os.Getenv("GOGC") == "" {
		// The data set stays live for the simulator's whole life (80 MB for 50 Pages of
		// 200 threads of 20 messages), so Go's default, a collection each time the
		// answers' garbage equals it, spent a quarter of the simulator's CPU marking it
		// during a backfill (BENCH.md): CPU a client on the same machine waits for, which
		// Meta's servers do not take from it. A collection at 5 times the live heap.
		debug.SetGCPercent(400)
	}
	sim, err := graphsim.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	log.Info("graph api simulator", "url", "http://"+ln.Addr().String()+"/"+sim.Version()+"/",
		"pages", cfg.Pages, "conversations", cfg.Conversations, "messages", cfg.Messages,
		"page_rate", cfg.PerPageCalls, "hourly_budget", cfg.HourlyBudget, "latency", cfg.Latency)
	srv := &http.Server{Handler: sim.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// graphsimConfig reads the flags of `convsync graphsim` into the simulator's
// configuration and the listen address.
func graphsimConfig(args []string) (graphsim.Config, string, error) {
	cfg, addr, _, err := graphsimFlags(args)
	return cfg, addr, err
}

// graphsimFlags is graphsimConfig with the CPU profile's file (empty: none).
func graphsimFlags(args []string) (graphsim.Config, string, string, error) {
	cfg := graphsim.DefaultConfig()
	addr := "127.0.0.1:8090"
	var seed int64 = int64(cfg.Seed)
	fs := flag.NewFlagSet("convsync graphsim", flag.ContinueOnError)
	fs.StringVar(&addr, "addr", addr, "listen address (loopback by default)")
	fs.IntVar(&cfg.Pages, "pages", cfg.Pages, "Facebook Pages")
	fs.IntVar(&cfg.Conversations, "conversations", cfg.Conversations, "conversations per page")
	fs.IntVar(&cfg.Messages, "messages", cfg.Messages, "messages per conversation")
	fs.Int64Var(&seed, "seed", seed, "seed of the data set (same seed, same data)")
	fs.StringVar(&cfg.Version, "version", cfg.Version, "Graph API version in paths")
	fs.Float64Var(&cfg.FolderShare, "folder-share", 0,
		"share of each page's threads in each of the folders other, page_done and spam (0: 5%, negative: all in the inbox)")
	fs.DurationVar(&cfg.Latency, "latency", 0, "latency added to every request")
	fs.IntVar(&cfg.PerPageCalls, "page-rate", 0,
		"calls per page token in any one-second window, enforced strictly (Meta: 2 for conversations); 0 unlimited")
	fs.IntVar(&cfg.HourlyBudget, "hourly-budget", graphsim.DefaultHourlyBudget,
		"calls per page token in any rolling hour, with --page-rate: X-Business-Use-Case-Usage reports the share used, as Meta's does, "+
			"and a token that spent it is refused (code 80001) until its calls age out (Meta: 4800 × engaged users a day for Pages calls)")
	fs.IntVar(&cfg.FailEvery, "fail-every", 0, "fail every nth call with code 2 (0: never)")
	var profile string
	fs.StringVar(&profile, "cpu-profile", "", "write a CPU profile to this file until the simulator stops (go tool pprof reads it)")
	if err := fs.Parse(args); err != nil {
		return cfg, "", "", err
	}
	if fs.NArg() > 0 {
		return cfg, "", "", fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if cfg.HourlyBudget < 1 {
		return cfg, "", "", fmt.Errorf("--hourly-budget must be at least 1, got %d", cfg.HourlyBudget)
	}
	cfg.Seed = uint64(seed)
	return cfg, addr, profile, nil
}
