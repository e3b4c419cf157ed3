// stack.go starts convsync's roles in process for tests and benchmarks, through app.Start:
// the components, clients, options, checks and metrics are those the binary builds, on
// settings made here from a test's topics, schema and projector configuration. Each role
// is a process of its own (its own registry and HTTP listener on a loopback port), as
// deploy/k8s runs them.

package pipelinetest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/convsync/convsync/app"
	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/logging"
	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/projector"
)

// Secret signs the webhooks of Webhook's endpoint.
const Secret = "stack-secret"

// settings are the binary's defaults (no environment read) on kc's topics, listening on
// a loopback port of their own.
func settings(kc kafka.Config) *app.Settings {
	s := app.Defaults()
	s.Kafka = kc
	s.HTTP.Addr = "127.0.0.1:0"
	return &s
}

// start starts roles with s and o until ctx ends; it fails tb when they do not start.
func start(tb testing.TB, ctx context.Context, s *app.Settings, o app.Options, roles ...app.Role) *app.Process {
	tb.Helper()
	p, err := app.Start(ctx, s, logging.Discard(), o, roles...)
	if err != nil {
		tb.Fatalf("start %v: %v", roles, err)
	}
	return p
}

// Webhook starts the ingest role appending to kc's events topic until the test ends and
// returns the URL of its webhook endpoint.
func Webhook(tb testing.TB, kc kafka.Config) string {
	tb.Helper()
	s := settings(kc)
	s.Ingest.AppSecret, s.Ingest.VerifyToken = Secret, "stack-verify"
	ctx, cancel := context.WithCancel(context.Background())
	p := start(tb, ctx, s, app.Options{}, app.Ingest)
	tb.Cleanup(func() {
		cancel()
		if err := p.Wait(); err != nil {
			tb.Errorf("ingest role: %v", err)
		}
	})
	addr := p.Addr()
	if addr == "" {
		tb.Fatal("the ingest role stopped before it listened") // its error: at cleanup
	}
	return "http://" + addr + "/api/webhook"
}

// Pipeline runs the processor and the projector roles until ctx ends, with fresh groups
// and their metrics on procReg and projReg (two registries of their own); the returned
// func waits for both. The projector uses pool (a test's schema, or a proxy or pooler in
// front of it) and hook after each commit; a nil hook is the one the binary builds, over
// an in-memory cache (REDIS_URL is not set here).
func Pipeline(tb testing.TB, ctx context.Context, kc kafka.Config, pool *pgxpool.Pool, procReg, projReg *prometheus.Registry, hook projector.Hook) func() {
	tb.Helper()
	return PipelineWith(tb, ctx, kc, pool, procReg, projReg, hook, nil)
}

// PipelineWith is Pipeline with the projector's configuration changed by setup.
func PipelineWith(tb testing.TB, ctx context.Context, kc kafka.Config, pool *pgxpool.Pool, procReg, projReg *prometheus.Registry,
	hook projector.Hook, setup func(*projector.Config)) func() {
	tb.Helper()
	s := settings(kc)
	s.Processor.Group = "stack-proc-" + testenv.ID()
	s.Processor.TransactionalID = s.Processor.Group
	s.Projector.Group = "stack-proj-" + testenv.ID()
	if setup != nil {
		setup(&s.Projector)
	}
	s.PG.URL = pool.Config().ConnString() // the pool is used, not opened again: Options.Pool
	ctx, cancel := context.WithCancel(ctx)
	proc := start(tb, ctx, s, app.Options{Registry: procReg}, app.Processor)
	proj, err := app.Start(ctx, s, logging.Discard(), app.Options{Registry: projReg, Pool: pool, Hook: hook}, app.Projector)
	if err != nil {
		cancel()
		_ = proc.Wait()
		tb.Fatalf("start projector: %v", err)
	}
	return func() {
		defer cancel()
		if err := proc.Wait(); err != nil {
			tb.Errorf("processor role: %v", err)
		}
		if err := proj.Wait(); err != nil {
			tb.Errorf("projector role: %v", err)
		}
	}
}
