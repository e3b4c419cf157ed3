package backfill

import (
	"context"
	"math"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/ingest"
	"github.com/convsync/convsync/ingest/graph"
	"github.com/convsync/convsync/internal/graphsim"
	"github.com/convsync/convsync/internal/logging"
	"github.com/convsync/convsync/internal/testenv"
)

// BenchmarkLoadBackfill: 50 pages of 200 conversations of 20 messages, the simulator
// answering each request after 50 ms and allowing Meta's 2 calls per second per page
// (burst 2), the client configured with the same limit. It reports the wall time, the
// Graph requests, and the bounds those limits allow: a page's listing is a chain of
// ceil(200 / page size) calls, so at least (calls - burst) / rate seconds plus one
// request's latency, with every page in parallel; and that many requests per page.
//
//	make bench BENCH=none LOADBENCH=LoadBackfill
func BenchmarkLoadBackfill(b *testing.B) {
	const (
		pages, convs, msgs = 50, 200, 20
		latency            = 50 * time.Millisecond
		rate, burst        = 2.0, 2
	)
	sim, err := graphsim.New(graphsim.Config{Pages: pages, Conversations: convs, Messages: msgs, Seed: 3,
		Until: time.Now().Add(-24 * time.Hour), Latency: latency, PerPageRate: rate, PerPageBurst: burst,
		HourlyBudget: 4800}) // usage headers as Meta sends them: a share of a rolling budget
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	b.Cleanup(srv.Close)
	gcfg := graph.Defaults()
	gcfg.BaseURL, gcfg.Version = srv.URL, sim.Version()
	// The client spaces its calls (burst 1) so that network jitter never makes two of them
	// arrive closer than Meta allows: a block costs far more than the half second.
	gcfg.PageRate, gcfg.PageBurst, gcfg.MaxConcurrency = rate, 1, pages
	reg := prometheus.NewRegistry()
	gc, err := graph.New(gcfg, srv.Client(), reg, logging.Discard())
	if err != nil {
		b.Fatal(err)
	}
	kc := testenv.Kafka(b, 12)
	pool, _ := testenv.Postgres(b)
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(kc.Brokers...)}, ingest.ProducerOpts()...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cl.Close)
	for _, p := range sim.Pages() {
		if _, err := pool.Exec(context.Background(), `INSERT INTO facebook_pages (page_id, access_token) VALUES ($1, $2)`, p.ID, p.AccessToken); err != nil {
			b.Fatal(err)
		}
	}
	cfg := Defaults()
	cfg.Concurrency = pages
	job, err := New(cfg, gc, pool, ingest.NewKafkaAppender(cl), kc.EventsTopic, reg, logging.Discard())
	if err != nil {
		b.Fatal(err)
	}
	calls := math.Ceil(float64(convs) / float64(gcfg.PageSize))
	// Two readings of "2 calls per second per Page": with a burst of 2 at the start (what
	// the simulator allows), and as a steady rate (one call every half second).
	lower := time.Duration((calls-burst)/rate*float64(time.Second)) + latency
	steady := time.Duration((calls-1)/rate*float64(time.Second)) + latency
	minRequests := calls * pages
	var sum Summary
	for range b.N {
		sim.ResetRequests()
		sum, err = job.Run(context.Background(), nil, nil)
		if err != nil {
			b.Fatal(err)
		}
	}
	if sum.Pages != pages || sum.Conversations != pages*convs || sum.Messages != pages*convs*msgs {
		b.Fatalf("backfill = %d pages, %d conversations, %d messages; want all of them", sum.Pages, sum.Conversations, sum.Messages)
	}
	reqs := float64(sim.Requests().Calls)
	b.ReportMetric(sum.Duration.Seconds(), "wall-s")
	b.ReportMetric(lower.Seconds(), "lower-bound-s")
	b.ReportMetric(sum.Duration.Seconds()/lower.Seconds(), "wall/bound")
	b.ReportMetric(sum.Duration.Seconds()/steady.Seconds(), "wall/steady-bound")
	b.ReportMetric(reqs, "graph-requests")
	b.ReportMetric(reqs/minRequests, "requests/minimum")
	b.ReportMetric(0, "ns/op")
}
