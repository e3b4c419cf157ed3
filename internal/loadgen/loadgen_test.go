package loadgen_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/convsync/convsync/ingest"
	"github.com/convsync/convsync/internal/loadgen"
)

func TestGeneratorIsDeterministicAndParses(t *testing.T) {
	cfg := loadgen.DefaultGenConfig()
	a, b := loadgen.NewGenerator(cfg), loadgen.NewGenerator(cfg)
	kinds := map[string]int{}
	pages := map[string]int{}
	bodies := map[string]int{}
	const n = 3000
	for i := range n {
		da, err := a.Next()
		if err != nil {
			t.Fatal(err)
		}
		db, _ := b.Next()
		if !bytes.Equal(da.Body, db.Body) {
			t.Fatalf("delivery %d differs between two generators of one seed", i)
		}
		bodies[string(da.Body)]++
		evs, err := ingest.Parse(da.Body, time.Now())
		if err != nil {
			t.Fatalf("delivery %d does not parse: %v\n%s", i, err, da.Body)
		}
		if len(evs) != da.Events {
			t.Fatalf("delivery %d has %d events, generator says %d", i, len(evs), da.Events)
		}
		for _, e := range evs {
			kinds[e.EventType()]++
			pages[e.EventPageID()]++
		}
	}
	if len(kinds) < 9 {
		t.Errorf("the mix has %d event types, want at least 9 of the spec's kinds: %v", len(kinds), kinds)
	}
	for k, c := range kinds {
		if k == "convsync.messenger.unknown.v1" {
			t.Errorf("generator made %d unknown events; all of its kinds should be known", c)
		}
	}
	top := pages[loadgen.PageID(0)]
	if uniform := 3 * n / cfg.Pages; top < 3*uniform {
		t.Errorf("hottest page has %d events, want Zipf skew (> 3x the uniform share %d)", top, uniform)
	}
	dups := n - len(bodies)
	if dups < n/200 || dups > n/10 {
		t.Errorf("redeliveries = %d of %d, want about %.0f%%", dups, n, cfg.DuplicateRate*100)
	}
}

func TestRunSendsSignedRequestsWithinBounds(t *testing.T) {
	var got, bad atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("X-Hub-Signature-256") != loadgen.Sign("s3cret", b) {
			bad.Add(1)
		}
		got.Add(1)
	}))
	defer srv.Close()
	res, err := loadgen.Run(context.Background(), loadgen.RunConfig{
		URL: srv.URL, Secret: "s3cret", Rate: 2000, Duration: 10 * time.Second, Requests: 200, Concurrency: 8,
	}, loadgen.Client(8))
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 200 || got.Load() != 200 || res.Errors != 0 || res.Status[200] != 200 {
		t.Errorf("Run(200 requests) = %d sent, %d received, %d errors, status %v; want 200, 200, 0", res.Requests, got.Load(), res.Errors, res.Status)
	}
	if bad.Load() != 0 {
		t.Errorf("%d requests had a wrong signature, want 0", bad.Load())
	}
	if res.Latency.P50 <= 0 || res.Latency.P99 < res.Latency.P50 || res.Latency.Max < res.Latency.P99 {
		t.Errorf("latency = %+v, want 0 < p50 <= p99 <= max", res.Latency)
	}
}

func TestRunStopsAtDuration(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	res, err := loadgen.Run(context.Background(), loadgen.RunConfig{
		URL: srv.URL, Rate: 100, Duration: 300 * time.Millisecond, Requests: 100000, Concurrency: 4,
	}, loadgen.Client(4))
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests >= 100 {
		t.Errorf("Run(rate 100/s for 0.3s) sent %d requests, want the duration to bound it (about 30)", res.Requests)
	}
}
