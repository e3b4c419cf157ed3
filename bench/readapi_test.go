package bench

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/convsync/convsync/internal/loadgen"
	"github.com/convsync/convsync/internal/testenv"
)

// BenchmarkLoadBinaryReadAPI reads one page's conversation list, GET
// /v1/pages/{page}/conversations (the default view, 25 items), from `convsync all` with
// its defaults while `convsync loadgen` writes 500 events/s (one event per webhook, the
// same Zipf pages) for the whole run; its first 4,000 events seed the read model. The
// page is the Zipf draw's hottest, the one the writes touch most. In one run:
//
//   - paced: 5,000 req/s for 10 s from a paced Go client in a process of its own (this
//     test binary re-executed; loadgen's pacer, latency from each request's due time,
//     at most 64 in flight), since wrk cannot hold a rate: p50/p99;
//   - wrk: `wrk -t2 -c32 --latency` flat out for 10 s: req/s, p50/p99;
//   - redis-benchmark: `redis-benchmark -t get -c 32 -n 500000` on the same Redis: GET/s,
//     and the ratio of wrk's req/s to it;
//   - the cache hit rate of each read window from the binary's /metrics
//     (convsync_cache_requests_total, near-cache hits included as the binary counts them)
//     and the near cache's share of the reads.
func BenchmarkLoadBinaryReadAPI(b *testing.B) {
	bin := binary(b)
	wrkBin, err := exec.LookPath("wrk")
	if err != nil {
		b.Fatal("wrk is not installed (make services-up installs it)")
	}
	rbBin, err := exec.LookPath("redis-benchmark")
	if err != nil {
		b.Fatal("redis-benchmark is not installed (make services-up installs redis-tools)")
	}
	st := newStack(b, bin)
	all := st.start(b, "all")
	st.waitAssigned(b)
	url := all.base + "/v1/pages/" + loadgen.PageID(0) + "/conversations"
	b.StopTimer()
	b.ResetTimer()
	for range b.N {
		const fresh = "convsync_event_freshness_seconds"
		seeded := histCount(scrape(b, all.base), fresh, nil) + 4000
		w := startLoadgen(b, bin, all.base+"/api/webhook", load{rate: 500, duration: 55 * time.Second, maxItems: 1})
		writerEnds := time.Now().Add(55 * time.Second)
		if !testenv.Poll(time.Minute, func() bool { return histCount(scrape(b, all.base), fresh, nil) >= seeded }) {
			b.Fatal("the writer's first 4,000 events did not reach the read model within a minute")
		}
		if n := listLen(b, url); n == 0 {
			b.Fatalf("GET %s lists no conversation after seeding", url)
		}

		m := map[string]float64{}
		c0 := scrape(b, all.base)
		cpu0 := st.readCPU()
		b.StartTimer()
		p := runPaced(b, paced{URL: url, Token: benchToken, Rate: 5000, Duration: 10 * time.Second, Concurrency: 64})
		// CPU of the paced window: the reads and the writer's 500 events/s, per 1,000 reads
		// (the paced client's own process is not counted).
		st.readCPU().sub(cpu0).perThousand(m, float64(p.Requests))
		c1 := scrape(b, all.base)
		wr := runWrk(b, wrkBin, url, 10*time.Second)
		c2 := scrape(b, all.base)
		getPerS := runRedisBenchmark(b, rbBin, 500_000)
		b.StopTimer()
		writerLeft := time.Until(writerEnds)
		wres := w.wait(b)
		st.alive(b)

		if p.Errors != 0 {
			b.Errorf("paced GET client: %d errors of %d requests (status %v)", p.Errors, p.Requests, p.Status)
		}
		if wres.Errors != 0 {
			b.Errorf("writer: %d errors of %d requests (status %v)", wres.Errors, wres.Requests, wres.Status)
		}
		if writerLeft <= 0 {
			b.Logf("the writer ended %s before redis-benchmark did: part of its run had no writes", -writerLeft.Round(time.Millisecond))
		}
		m["paced_req_per_s"] = p.RequestsPerS
		m["paced_p50_ms"], m["paced_p99_ms"], m["paced_max_ms"] = p.Latency.P50, p.Latency.P99, p.Latency.Max
		m["wrk_req_per_s"], m["wrk_p50_ms"], m["wrk_p99_ms"] = wr.rps, wr.p50, wr.p99
		m["redis_get_per_s"] = getPerS
		m["wrk_to_redis_get"] = wr.rps / getPerS
		m["writer_events_per_s"] = wres.EventsPerS
		const route = "GET /v1/pages/{page_id}/conversations"
		ok := map[string]string{"route": route, "code": "200"}
		m["server_paced_p50_ms"] = 1000 * quantile(c0, c1, "convsync_api_request_duration_seconds", ok, 0.50)
		m["server_paced_p99_ms"] = 1000 * quantile(c0, c1, "convsync_api_request_duration_seconds", ok, 0.99)
		m["hit_rate_paced_pct"] = hitRate(c0, c1)
		m["hit_rate_wrk_pct"] = hitRate(c1, c2)
		m["hit_rate_pct"] = hitRate(c0, c2)
		m["near_share_pct"] = 100 * delta(c0, c2, "convsync_cache_near_requests_total", map[string]string{"result": "hit"}) /
			delta(c0, c2, "convsync_cache_requests_total", nil)
		st.verify(b, time.Minute, false)
		report(b, m)
		b.Logf("binary all, reads of %s while writing %.0f events/s: paced 5,000/s (Go client, own process) p50 %.2f p99 %.2f max %.1f ms "+
			"(server p50 %.2f p99 %.2f ms); wrk -t2 -c32 %.0f req/s p50 %.2f p99 %.2f ms; redis-benchmark GET %.0f/s: ratio %.2f; "+
			"hit rate %.2f%% (paced %.2f%%, wrk %.2f%%), near cache %.1f%% of reads; "+
			"paced window CPU s per 1,000 reads (writes included) convsync %.3f postgres %.3f kafka %.3f total %.3f; loadavg %s",
			loadgen.PageID(0), m["writer_events_per_s"], m["paced_p50_ms"], m["paced_p99_ms"], m["paced_max_ms"],
			m["server_paced_p50_ms"], m["server_paced_p99_ms"], m["wrk_req_per_s"], m["wrk_p50_ms"], m["wrk_p99_ms"],
			m["redis_get_per_s"], m["wrk_to_redis_get"], m["hit_rate_pct"], m["hit_rate_paced_pct"], m["hit_rate_wrk_pct"],
			m["near_share_pct"], m["cpu_s_per_1k_convsync"], m["cpu_s_per_1k_postgres"], m["cpu_s_per_1k_kafka"], m["cpu_s_per_1k_total"], loadavg())
	}
}

func delta(before, after families, name string, labels map[string]string) float64 {
	return counter(after, name, labels) - counter(before, name, labels)
}

// hitRate is the share of the cache's reads that hit between two scrapes, in percent.
func hitRate(before, after families) float64 {
	const name = "convsync_cache_requests_total"
	hits := delta(before, after, name, map[string]string{"result": "hit"})
	return 100 * hits / delta(before, after, name, nil)
}

// listLen reads the list once and counts its items.
func listLen(b *testing.B, url string) int {
	b.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+benchToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %s", url, resp.Status)
	}
	var body map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		b.Fatalf("GET %s: %v", url, err)
	}
	for _, v := range body {
		var items []json.RawMessage
		if json.Unmarshal(v, &items) == nil && len(items) > 0 {
			return len(items)
		}
	}
	return 0
}

// wrkResult is what wrk measured.
type wrkResult struct{ rps, p50, p99 float64 }

// runWrk drives url flat out with `wrk -t2 -c32` for d, in a process of its own.
func runWrk(b *testing.B, bin, url string, d time.Duration) wrkResult {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-t2", "-c32", "-d"+d.String(), "--latency",
		"-H", "Authorization: Bearer "+benchToken, url).CombinedOutput()
	text := string(out)
	if err != nil {
		b.Fatalf("wrk: %v\n%s", err, text)
	}
	if strings.Contains(text, "Non-2xx") || strings.Contains(text, "Socket errors") {
		b.Errorf("wrk saw failed requests:\n%s", text)
	}
	m := regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`).FindStringSubmatch(text)
	if m == nil {
		b.Fatalf("no Requests/sec in wrk's output:\n%s", text)
	}
	var r wrkResult
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	r.p50, r.p99 = wrkQuantile(b, text, "50%"), wrkQuantile(b, text, "99%")
	return r
}

// wrkQuantile reads one line of wrk's latency distribution ("  99%    1.23ms"), in ms.
func wrkQuantile(b *testing.B, text, q string) float64 {
	b.Helper()
	m := regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(q) + `\s+([0-9.]+)(us|ms|s)\s*$`).FindStringSubmatch(text)
	if m == nil {
		b.Fatalf("no %s line in wrk's output:\n%s", q, text)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v * map[string]float64{"us": 0.001, "ms": 1, "s": 1000}[m[2]]
}

// runRedisBenchmark runs `redis-benchmark -t get -c 32 -n n` against REDIS_URL's server
// and returns its GETs per second.
func runRedisBenchmark(b *testing.B, bin string, n int) float64 {
	b.Helper()
	opts, err := redis.ParseURL(testenv.Env("REDIS_URL"))
	if err != nil {
		b.Fatalf("parse REDIS_URL: %v", err)
	}
	host, port, ok := strings.Cut(opts.Addr, ":")
	if !ok {
		b.Fatalf("REDIS_URL address %q has no port", opts.Addr)
	}
	args := []string{"-h", host, "-p", port, "--dbnum", strconv.Itoa(opts.DB), "-t", "get", "-c", "32", "-n", strconv.Itoa(n), "--csv"}
	if opts.Password != "" {
		args = append(args, "-a", opts.Password)
		if opts.Username != "" {
			args = append(args, "--user", opts.Username)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).Output()
	if err != nil {
		b.Fatalf("redis-benchmark: %v\n%s", err, out)
	}
	recs, err := csv.NewReader(strings.NewReader(string(out))).ReadAll()
	if err != nil {
		b.Fatalf("redis-benchmark output: %v\n%s", err, out)
	}
	for _, r := range recs {
		if len(r) > 1 && r[0] == "GET" {
			v, err := strconv.ParseFloat(r[1], 64)
			if err != nil {
				b.Fatalf("redis-benchmark GET rate %q: %v", r[1], err)
			}
			return v
		}
	}
	b.Fatalf("no GET line in redis-benchmark's output:\n%s", out)
	return 0
}
