package readapi_test

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/convsync/convsync/internal/cache"
	"github.com/convsync/convsync/internal/loadgen"
	"github.com/convsync/convsync/internal/logging"
	"github.com/convsync/convsync/internal/stack"
	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/processor"
	"github.com/convsync/convsync/projector"
	"github.com/convsync/convsync/projector/readapi"
	"github.com/convsync/convsync/schemas"
)

const (
	benchPages = 50
	benchUsers = 200 // 50 x 200 = 10,000 conversations
)

// seedConversations writes one message into each of the 10,000 conversations the load
// generator's ids name, straight through the projector's writer.
func seedConversations(b *testing.B, pool *pgxpool.Pool) {
	b.Helper()
	w := projector.NewWriter(pool)
	at := time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC)
	var evs []processor.Event
	flush := func() {
		var in []projector.Input
		for _, d := range processor.Fold(evs) {
			in = append(in, projector.Input{Delta: d})
		}
		if _, err := w.Apply(context.Background(), nil, in); err != nil {
			b.Fatal(err)
		}
		evs = evs[:0]
	}
	for p := range benchPages {
		for u := range benchUsers {
			m := schemas.Message{PageID: loadgen.PageID(p), PSID: loadgen.PSID(p, u), MID: "m_seed_" + loadgen.PSID(p, u),
				Text: "hello", SentAt: at.Add(time.Duration(u) * time.Second)}
			_, env, err := schemas.Encode(schemas.SourceWebhook, at, m)
			if err != nil {
				b.Fatal(err)
			}
			evs = append(evs, processor.Event{Env: env, Data: m})
		}
		flush()
	}
}

// zipfPaths are conversation reads, Zipf over pages and users as the traffic is.
func zipfPaths(n int) []string {
	rng := rand.New(rand.NewPCG(3, 4))
	zp := rand.NewZipf(rng, 1.1, 1, benchPages-1)
	zu := rand.NewZipf(rng, 1.1, 1, benchUsers-1)
	out := make([]string, n)
	for i := range out {
		p, u := int(zp.Uint64()), int(zu.Uint64())
		out[i] = "/v1/pages/" + loadgen.PageID(p) + "/conversations/" + loadgen.PSID(p, u)
	}
	return out
}

type apiServer struct {
	url string
	reg *prometheus.Registry
	c   *cache.Cache
}

func newAPIServer(b *testing.B, pool *pgxpool.Pool, store cache.Store, prefix string) apiServer {
	b.Helper()
	reg := prometheus.NewRegistry()
	ccfg := cache.Defaults()
	ccfg.Prefix = prefix
	c := cache.New(store, ccfg, reg, logging.Discard())
	cfg := readapi.Defaults()
	cfg.Tokens = []string{token}
	api, err := readapi.New(cfg, pool, c, reg, logging.Discard())
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	srv := httptest.NewServer(mux)
	b.Cleanup(srv.Close)
	return apiServer{url: srv.URL, reg: reg, c: c}
}

func reads(b *testing.B, s apiServer, paths []string, pace loadgen.Pace) loadgen.Result {
	b.Helper()
	client := loadgen.Client(pace.Concurrency)
	res := loadgen.Drive(context.Background(), pace, func(ctx context.Context, i int) (int, int) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url+paths[i%len(paths)], nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return 0, 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode, 0
	})
	if res.Errors > 0 {
		b.Fatalf("%d of %d reads failed: %v", res.Errors, res.Requests, res.Status)
	}
	return res
}

func report(b *testing.B, r loadgen.Result) {
	b.ReportMetric(r.RequestsPerS, "req/s")
	b.ReportMetric(r.Latency.P50, "p50-ms")
	b.ReportMetric(r.Latency.P99, "p99-ms")
	b.ReportMetric(r.Latency.Max, "max-ms")
	b.ReportMetric(0, "ns/op")
}

// missStore never holds anything: every read is a miss that goes to Postgres.
type missStore struct{}

func (missStore) Get(context.Context, string, string) (cache.Entry, bool, error) {
	return cache.Entry{}, false, nil
}
func (missStore) Set(context.Context, string, string, cache.Entry, time.Duration) (bool, error) {
	return false, nil
}
func (missStore) Mark(context.Context, []cache.Mark, time.Duration) error { return nil }
func (missStore) Flush(context.Context) error                             { return nil }
func (missStore) Kind() string                                            { return "none" }
func (missStore) Ping(context.Context) error                              { return nil }

// BenchmarkLoadReadAPI measures, in one run: the read API on cache hits (Redis and
// memory) at 5,000 requests/s and flat out, beside go-redis's own GET at the same
// concurrency; on misses (Postgres every time); and the hit rate of Zipf reads over
// 10,000 conversations while the pipeline writes 500 events/s.
//
//	make bench BENCH=none LOADBENCH=LoadReadAPI
func BenchmarkLoadReadAPI(b *testing.B) {
	const conc = 32
	pool, _ := testenv.Postgres(b)
	seedConversations(b, pool)
	paths := zipfPaths(200_000)
	rc, prefix := testenv.Redis(b)
	stores := []struct {
		name  string
		store cache.Store
	}{{"redis", cache.NewRedis(rc, prefix)}, {"memory", cache.NewMemory(100_000)}}

	for _, st := range stores {
		s := newAPIServer(b, pool, st.store, prefix)
		reads(b, s, paths[:20_000], loadgen.Pace{Duration: time.Minute, Requests: 20_000, Concurrency: conc}) // warm
		b.Run("hits/"+st.name+"/rate=5000", func(b *testing.B) {
			var r loadgen.Result
			for range b.N {
				r = reads(b, s, paths, loadgen.Pace{Rate: 5000, Duration: 5 * time.Second, Requests: 25_001, Concurrency: 64})
			}
			report(b, r)
		})
		b.Run("hits/"+st.name+"/max", func(b *testing.B) {
			var r loadgen.Result
			for range b.N {
				r = reads(b, s, paths, loadgen.Pace{Duration: 5 * time.Second, Requests: len(paths), Concurrency: conc})
			}
			report(b, r)
			if st.name == "redis" {
				g := redisGets(b, rc, prefix, conc, 5*time.Second)
				b.ReportMetric(g, "redis-get/s")
				b.ReportMetric(r.RequestsPerS/g, "ratio-to-redis-get")
			}
		})
	}
	b.Run("misses/max", func(b *testing.B) {
		s := newAPIServer(b, pool, missStore{}, prefix)
		var r loadgen.Result
		for range b.N {
			r = reads(b, s, paths, loadgen.Pace{Duration: 5 * time.Second, Requests: len(paths), Concurrency: conc})
		}
		report(b, r)
	})
	b.Run("hit-rate/zipf-while-writing-500ev/s", func(b *testing.B) {
		for range b.N {
			b.ReportMetric(hitRateWhileWriting(b, pool, paths, rc, prefix), "hit-%")
			b.ReportMetric(0, "ns/op")
		}
	})
}

// redisGets is go-redis's own GET throughput at concurrency, on one small key.
func redisGets(b *testing.B, rc *redis.Client, prefix string, concurrency int, d time.Duration) float64 {
	b.Helper()
	ctx := context.Background()
	key := prefix + "bench-get"
	if err := rc.Set(ctx, key, make([]byte, 600), time.Minute).Err(); err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if err := rc.Get(ctx, key).Err(); err != nil {
					b.Error(err)
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return float64(n.Load()) / d.Seconds()
}

func hitRateWhileWriting(b *testing.B, pool *pgxpool.Pool, paths []string, rc *redis.Client, prefix string) float64 {
	b.Helper()
	kc := testenv.Kafka(b, 12)
	s := newAPIServer(b, pool, cache.NewRedis(rc, prefix+"hr:"), prefix+"hr:")
	ctx, cancel := context.WithCancel(context.Background())
	refresher := readapi.NewRefresher(pool, s.c, readapi.Defaults().DefaultLimit, readapi.Defaults().RefreshMax, logging.Discard())
	go func() { _ = refresher.Run(ctx) }()
	stop := stack.Pipeline(b, ctx, kc, pool, prometheus.NewRegistry(), prometheus.NewRegistry(), refresher.Hook())
	defer func() { cancel(); stop() }()
	hook := stack.Webhook(b, kc)
	// Warm the cache, then read while the loadgen writes to the same 10,000 conversations.
	reads(b, s, paths[:20_000], loadgen.Pace{Duration: time.Minute, Requests: 20_000, Concurrency: 32})
	before := requestsBy(s.reg)
	var wg sync.WaitGroup
	wg.Go(func() {
		gen := loadgen.DefaultGenConfig()
		gen.Pages, gen.UsersPerPage = benchPages, benchUsers
		_, err := loadgen.Run(context.Background(), loadgen.RunConfig{URL: hook, Secret: stack.Secret, Rate: 250,
			Duration: 10 * time.Second, Concurrency: 16, Gen: gen}, loadgen.Client(16))
		if err != nil {
			b.Error(err)
		}
	})
	reads(b, s, paths, loadgen.Pace{Rate: 2000, Duration: 10 * time.Second, Requests: 20_001, Concurrency: 32})
	wg.Wait()
	after := requestsBy(s.reg)
	hits, misses := after["hit"]-before["hit"], after["miss"]-before["miss"]+after["error"]-before["error"]
	return 100 * hits / (hits + misses)
}

func requestsBy(reg *prometheus.Registry) map[string]float64 {
	out := map[string]float64{}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "convsync_cache_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	return out
}

// BenchmarkHitInProcess is one cache hit through the handler, in process (no network):
// what a hit costs the server.
func BenchmarkHitInProcess(b *testing.B) {
	pool, _ := testenv.Postgres(b)
	seedConversations(b, pool)
	c := cache.New(cache.NewMemory(100_000), cache.Defaults(), prometheus.NewRegistry(), logging.Discard())
	cfg := readapi.Defaults()
	cfg.Tokens = []string{token}
	api, err := readapi.New(cfg, pool, c, prometheus.NewRegistry(), logging.Discard())
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	path := "/v1/pages/" + loadgen.PageID(0) + "/conversations/" + loadgen.PSID(0, 0)
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	mux.ServeHTTP(httptest.NewRecorder(), req) // warm
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if rec.Code != 200 || rec.Header().Get("X-Cache") != "hit" {
			b.Fatalf("GET = %d %s", rec.Code, rec.Header().Get("X-Cache"))
		}
	}
}
