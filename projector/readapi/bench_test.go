package readapi_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
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
	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/pipelinetest"
	"github.com/convsync/convsync/projector"
	"github.com/convsync/convsync/projector/readapi"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/schemas/deltas"
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
	var evs []deltas.Event
	flush := func() {
		var in []projector.Input
		for _, d := range deltas.Fold(evs) {
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
			evs = append(evs, deltas.Event{Env: env, Data: m})
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

// newAPIServer serves the read API over store; nearTTL is CACHE_NEAR_TTL (a Redis
// store's near cache; 0 off). The cache's housekeeping runs, as in `convsync api`.
func newAPIServer(b *testing.B, pool *pgxpool.Pool, store cache.Store, prefix string, nearTTL time.Duration) apiServer {
	b.Helper()
	reg := prometheus.NewRegistry()
	ccfg := cache.Defaults()
	// As the binary's read API has it: the entries it serves kept warm.
	ccfg.Prefix, ccfg.NearTTL, ccfg.WarmKeys = prefix, nearTTL, readapi.Defaults().RefreshMax
	c := cache.New(store, ccfg, reg, logging.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
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

// BenchmarkLoadReadAPI measures, in one run: the read API on cache hits (Redis with its
// near cache, the default; Redis alone; memory) at 5,000 requests/s and flat out, beside
// go-redis's own GET at the same concurrency, flat out both from the Go client in this
// process and from wrk in a process of its own; on misses (Postgres every time); and the
// hit rate of Zipf reads over 10,000 conversations while the pipeline writes 500 events/s.
// The server runs in this process: as a process of its own (`convsync api`) it measured
// worse on two cores, two Go runtimes' threads preempting each other.
//
//	make bench BENCH=none LOADBENCH=LoadReadAPI
func BenchmarkLoadReadAPI(b *testing.B) {
	const conc = 32
	pool, _ := testenv.Postgres(b)
	seedConversations(b, pool)
	paths := zipfPaths(200_000)
	rc, prefix := testenv.Redis(b)
	stores := []struct {
		name    string
		store   cache.Store
		nearTTL time.Duration
	}{
		{"redis", cache.NewRedis(rc, prefix), cache.Defaults().NearTTL}, // the default: a near cache in front of Redis
		{"redis-direct", cache.NewRedis(rc, prefix), 0},                 // CACHE_NEAR_TTL=0: every hit reads Redis
		{"memory", cache.NewMemory(100_000), 0},
	}

	// go-redis's own GET at the same concurrency, the yardstick of hit throughput.
	var redisGet float64
	b.Run("go-redis-get/max", func(b *testing.B) {
		for range b.N {
			redisGet = redisGets(b, rc, prefix, conc, 5*time.Second)
		}
		b.ReportMetric(redisGet, "req/s")
		b.ReportMetric(0, "ns/op")
	})
	for _, st := range stores {
		s := newAPIServer(b, pool, st.store, prefix, st.nearTTL)
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
			if redisGet > 0 {
				b.ReportMetric(r.RequestsPerS/redisGet, "ratio-to-redis-get")
			}
		})
		b.Run("hits/"+st.name+"/max-wrk", func(b *testing.B) {
			var r wrkResult
			for range b.N {
				var ok bool
				if r, ok = wrkReads(b, s, paths[:20_000], conc, 5*time.Second); !ok {
					b.Skip("wrk is not installed")
				}
			}
			b.ReportMetric(r.rps, "req/s")
			b.ReportMetric(r.p50, "p50-ms")
			b.ReportMetric(r.p99, "p99-ms")
			b.ReportMetric(0, "ns/op")
			if redisGet > 0 {
				b.ReportMetric(r.rps/redisGet, "ratio-to-redis-get")
			}
		})
	}
	b.Run("misses/max", func(b *testing.B) {
		s := newAPIServer(b, pool, missStore{}, prefix, 0)
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
	s := newAPIServer(b, pool, cache.NewRedis(rc, prefix+"hr:"), prefix+"hr:", cache.Defaults().NearTTL)
	ctx, cancel := context.WithCancel(context.Background())
	stop := pipelinetest.Pipeline(b, ctx, kc, pool, prometheus.NewRegistry(), prometheus.NewRegistry(), readapi.Hook(s.c))
	defer func() { cancel(); stop() }()
	hook := pipelinetest.Webhook(b, kc)
	// Warm the cache, then read while the loadgen writes to the same 10,000 conversations.
	reads(b, s, paths[:20_000], loadgen.Pace{Duration: time.Minute, Requests: 20_000, Concurrency: 32})
	before := requestsBy(s.reg)
	var wg sync.WaitGroup
	wg.Go(func() {
		gen := loadgen.DefaultGenConfig()
		gen.Pages, gen.UsersPerPage = benchPages, benchUsers
		_, err := loadgen.Run(context.Background(), loadgen.RunConfig{URL: hook, Secret: pipelinetest.Secret, Rate: 250,
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

// wrkResult is what wrk measured.
type wrkResult struct{ rps, p50, p99 float64 }

// wrkReads drives s with wrk, a C load generator in a separate process (one thread,
// conns connections kept alive), cycling through paths for d. The Go client in reads
// spends as much CPU per request as the server does; on two shared cores wrk leaves the
// server more of the machine, as separate load machines would. ok is false when wrk is
// not installed (deploy/local/services.sh installs it).
func wrkReads(b *testing.B, s apiServer, paths []string, conns int, d time.Duration) (res wrkResult, ok bool) {
	b.Helper()
	bin, err := exec.LookPath("wrk")
	if err != nil {
		b.Logf("wrk not installed: skipping the separate-process load (make services-up installs it)")
		return res, false
	}
	var lua strings.Builder
	lua.WriteString("local paths = {\n")
	for _, p := range paths {
		fmt.Fprintf(&lua, "%q,\n", p)
	}
	fmt.Fprintf(&lua, `}
local i = 0
wrk.headers["Authorization"] = %q
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
`, "Bearer "+token)
	script := filepath.Join(b.TempDir(), "reads.lua")
	if err := os.WriteFile(script, []byte(lua.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	out, err := exec.Command(bin, "-t1", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", int(d.Seconds())),
		"--latency", "-s", script, s.url).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk: %v\n%s", err, out)
	}
	text := string(out)
	if strings.Contains(text, "Non-2xx") || strings.Contains(text, "Socket errors") {
		b.Fatalf("wrk saw failed requests:\n%s", text)
	}
	m := regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`).FindStringSubmatch(text)
	if m == nil {
		b.Fatalf("no Requests/sec in wrk's output:\n%s", text)
	}
	res.rps, _ = strconv.ParseFloat(m[1], 64)
	res.p50, res.p99 = wrkQuantile(b, text, "50%"), wrkQuantile(b, text, "99%")
	return res, true
}

// wrkQuantile reads one line of wrk's latency distribution ("  99%    1.23ms"), in ms.
func wrkQuantile(b *testing.B, text, q string) float64 {
	m := regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(q) + `\s+([0-9.]+)(us|ms|s)\s*$`).FindStringSubmatch(text)
	if m == nil {
		b.Fatalf("no %s line in wrk's output:\n%s", q, text)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v * map[string]float64{"us": 0.001, "ms": 1, "s": 1000}[m[2]]
}
