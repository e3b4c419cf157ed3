package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/convsync/convsync/internal/config"
	"github.com/convsync/convsync/internal/loadgen"
)

// runLoadgen sends signed webhooks for a bounded time and prints throughput and latency.
func runLoadgen(ctx context.Context, args []string) error {
	cfg := loadgen.RunConfig{
		URL: "http://127.0.0.1:8080/api/webhook", Duration: 10 * time.Second, Rate: 1000,
		Concurrency: 64, Gen: loadgen.DefaultGenConfig(),
	}
	var asJSON bool
	var seed int64 = 1
	fs := flag.NewFlagSet("convsync loadgen", flag.ContinueOnError)
	b := config.NewBinder(fs, os.LookupEnv)
	b.String(&cfg.URL, "url", "webhook endpoint to send to", "LOADGEN_URL")
	b.Secret(&cfg.Secret, "secret", "app secret to sign with", "META_APP_SECRET")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "requests per second; 0 sends as fast as --concurrency allows")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long to send (at most 1h)")
	fs.IntVar(&cfg.Requests, "requests", 0, "stop after this many requests (0: rate x duration)")
	fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "requests in flight at most")
	fs.IntVar(&cfg.Gen.Pages, "pages", cfg.Gen.Pages, "distinct pages (Zipf-distributed)")
	fs.IntVar(&cfg.Gen.UsersPerPage, "users", cfg.Gen.UsersPerPage, "distinct users per page (Zipf-distributed)")
	fs.Float64Var(&cfg.Gen.DuplicateRate, "duplicates", cfg.Gen.DuplicateRate, "share of redelivered requests")
	fs.IntVar(&cfg.Gen.MaxItems, "max-items", cfg.Gen.MaxItems, "events per webhook at most (each request carries 1 to this many; 1: one event each)")
	fs.Int64Var(&seed, "seed", seed, "seed of the generated traffic")
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	if err := b.Err(); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Gen.Seed = uint64(seed)
	res, err := loadgen.Run(ctx, cfg, loadgen.Client(cfg.Concurrency))
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Println(res)
	return nil
}
