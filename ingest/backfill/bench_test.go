package backfill

import (
	"context"
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

// BenchmarkLoadBackfill: 50 pages of 200 conversations of 20 messages, 5% of each
// page's threads in each of the folders other, page_done and spam (the simulator's
// default), the simulator answering each request after 50 ms and allowing Meta's 2 calls
// per second per page read strictly (at most 2 calls start in any one-second window),
// the client and the job with their defaults (the same window, and a margin; every page
// at once, BenchmarkLoadBackfillBinary runs the binaries). It reports the
// wall time, the Graph requests and the calls the simulator refused, against the bounds
// those limits allow.
//
// Requests: every folder of a page is listed, ceil(threads / page size) calls each and
// at least one, so that many per page. Wall time: with c calls per page and at most 2
// starting in any second, the last of them cannot start before floor((c-1)/2) seconds,
// and takes one request's latency; every page goes in parallel. This lets a window's two
// calls leave together, as folders listed side by side could; one chain of sequential
// calls (0, 0.05 s, 1.0 s, 1.05 s, …) needs one latency more when c is even.
//
//	make bench BENCH=none LOADBENCH=LoadBackfill
func BenchmarkLoadBackfill(b *testing.B) {
	const (
		pages, convs, msgs = 50, 200, 20
		latency            = 50 * time.Millisecond
		perWindow, window  = 2, time.Second // Meta: 2 calls per second per Page
	)
	sim, err := graphsim.New(graphsim.Config{Pages: pages, Conversations: convs, Messages: msgs, Seed: 3,
		Until: time.Now().Add(-24 * time.Hour), Latency: latency, PerPageCalls: perWindow, PerPageWindow: window})
	// usage headers as Meta sends them: a share of the default rolling hourly budget
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	b.Cleanup(srv.Close)
	gcfg := graph.Defaults() // 2 calls per second per token, kept as a window with a margin
	gcfg.BaseURL, gcfg.Version = srv.URL, sim.Version()
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
	var minRequests int
	var lower time.Duration
	for _, p := range sim.Pages() {
		if _, err := pool.Exec(context.Background(), `INSERT INTO facebook_pages (page_id, access_token) VALUES ($1, $2)`, p.ID, p.AccessToken); err != nil {
			b.Fatal(err)
		}
		c := listingCalls(sim, p.ID, gcfg.PageSize)
		minRequests += c
		lower = max(lower, time.Duration((c-1)/perWindow)*window+latency)
	}
	job, err := New(Defaults(), gc, pool, ingest.NewKafkaAppender(cl), kc.EventsTopic, reg, logging.Discard())
	if err != nil {
		b.Fatal(err)
	}
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
	got := sim.Requests()
	reqs := float64(got.Calls)
	b.ReportMetric(sum.Duration.Seconds(), "wall-s")
	b.ReportMetric(lower.Seconds(), "lower-bound-s")
	b.ReportMetric(sum.Duration.Seconds()/lower.Seconds(), "wall/bound")
	b.ReportMetric(reqs, "graph-requests")
	b.ReportMetric(float64(minRequests), "min-requests")
	b.ReportMetric(reqs/float64(minRequests), "requests/minimum")
	b.ReportMetric(float64(got.Throttled), "refused")
	b.ReportMetric(0, "ns/op")
}

// listingCalls is the fewest conversations calls that list every folder of a page:
// ceil(threads / pageSize) per folder, one for an empty folder.
func listingCalls(sim *graphsim.Sim, pageID string, pageSize int) int {
	n := map[string]int{}
	for _, c := range sim.Conversations(pageID) {
		n[c.Folder]++
	}
	calls := 0
	for _, f := range graphsim.Folders() {
		calls += max(1, (n[f]+pageSize-1)/pageSize)
	}
	return calls
}
