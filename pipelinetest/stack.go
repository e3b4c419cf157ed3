// stack.go starts convsync's stages in process for tests and benchmarks: a webhook
// endpoint on a loopback test server, and a processor with a projector on given topics
// and schema.

package pipelinetest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/ingest"
	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/logging"
	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/processor"
	"github.com/convsync/convsync/projector"
	"github.com/convsync/convsync/schemas"
)

// Secret signs the webhooks of Webhook's endpoint.
const Secret = "stack-secret"

// Webhook serves the ingest endpoint appending to kc's events topic and returns its URL.
func Webhook(tb testing.TB, kc kafka.Config) string {
	tb.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(kc.Brokers...)}, ingest.ProducerOpts()...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cl.Close)
	cfg := ingest.Defaults()
	cfg.AppSecret, cfg.VerifyToken = Secret, "stack-verify"
	w, err := ingest.New(cfg, kc.EventsTopic, ingest.NewKafkaAppender(cl), prometheus.NewRegistry(), logging.Discard())
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	w.Register(mux)
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	return srv.URL + "/api/webhook"
}

// Pipeline runs a processor and a projector (with hook) until ctx ends, with fresh
// groups and their metrics on procReg and projReg; the returned func waits for both.
func Pipeline(tb testing.TB, ctx context.Context, kc kafka.Config, pool *pgxpool.Pool, procReg, projReg prometheus.Registerer, hook projector.Hook) func() {
	tb.Helper()
	return PipelineWith(tb, ctx, kc, pool, procReg, projReg, hook, nil)
}

// PipelineWith is Pipeline with the projector's configuration changed by setup.
func PipelineWith(tb testing.TB, ctx context.Context, kc kafka.Config, pool *pgxpool.Pool, procReg, projReg prometheus.Registerer,
	hook projector.Hook, setup func(*projector.Config)) func() {
	tb.Helper()
	codec, err := schemas.NewCodec()
	if err != nil {
		tb.Fatal(err)
	}
	pcfg := processor.Defaults()
	pcfg.Group = "stack-proc-" + testenv.ID()
	pcfg.TransactionalID = pcfg.Group
	proc, err := processor.New(pcfg, kc, codec, nil, procReg, logging.Discard())
	if err != nil {
		tb.Fatal(err)
	}
	jcfg := projector.Defaults()
	jcfg.Group = "stack-proj-" + testenv.ID()
	if setup != nil {
		setup(&jcfg)
	}
	proj, err := projector.New(jcfg, kc, pool, nil, hook, projReg, logging.Discard())
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = proc.Run(ctx) })
	wg.Go(func() { _ = proj.Run(ctx) })
	return wg.Wait
}
