// Package bench holds the load benchmarks of the built binary (issue 12, item 2): the
// convsync a user runs, started as a subprocess with its defaults, driven by `convsync
// loadgen` in a process of its own, and measured from its own /metrics and from /proc.
// Speed is never asserted; correctness that can fail is. Run one at a time:
//
//	set -a; . .local/env; set +a
//	go test -run '^$' -bench BenchmarkLoadBinaryAll -benchtime 1x -count 3 ./bench/
package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/loadgen"
	"github.com/convsync/convsync/internal/testenv"
)

const (
	benchSecret = "bench-secret"
	benchToken  = "bench-token-0123456789"
	loadRate    = 1000             // webhooks/s offered, open loop
	loadFor     = 15 * time.Second // how long
	clkTck      = 100              // getconf CLK_TCK on Linux: /proc/<pid>/stat times are in 1/100 s
)

// logBuf collects a process's output; safe while the process writes.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	if len(s) > 4000 {
		s = "…" + s[len(s)-4000:]
	}
	return s
}

// BenchmarkLoadBinaryAll runs `convsync migrate` and `convsync all` with their defaults
// on a fresh schema and fresh topics, offers 1,000 signed webhooks/s for 15 s from
// `convsync loadgen` (another process), and reports freshness, its stages and the
// webhook latency from the binary's /metrics histograms, the load generator's own view
// (counted from the scheduled send time), the achieved rate, and the CPU seconds per
// 1,000 events of convsync, PostgreSQL and the Kafka broker from /proc.
func BenchmarkLoadBinaryAll(b *testing.B) {
	bin := testenv.Binary(b)
	dbURL := testenv.Schema(b)
	kc := testenv.Kafka(b, kafka.Defaults().Partitions) // what `convsync migrate` would create
	redisURL := testenv.Env("REDIS_URL")
	if redisURL == "" {
		b.Skip("REDIS_URL not set: `make services-up`, then set -a; . .local/env; set +a")
	}
	addr := testenv.FreeAddr(b)
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir(),
		"DATABASE_URL=" + dbURL,
		"REDIS_URL=" + redisURL,
		"KAFKA_BROKERS=" + strings.Join(kc.Brokers, ","),
		"KAFKA_EVENTS_TOPIC=" + kc.EventsTopic,
		"KAFKA_DELTAS_TOPIC=" + kc.DeltasTopic,
		"KAFKA_DLQ_TOPIC=" + kc.DLQTopic,
		"PROCESSOR_GROUP=bench-proc-" + testenv.ID(),
		"PROJECTOR_GROUP=bench-proj-" + testenv.ID(),
		"META_APP_SECRET=" + benchSecret,
		"WEBHOOK_VERIFY_TOKEN=bench-verify",
		"API_TOKENS=" + benchToken,
		"HTTP_ADDR=" + addr,
	}

	mig := exec.Command(bin, "migrate")
	mig.Env = env
	if out, err := mig.CombinedOutput(); err != nil {
		b.Fatalf("convsync migrate: %v\n%s", err, out)
	}

	logs := &logBuf{}
	all := exec.Command(bin, "all")
	all.Env = env
	all.Stdout, all.Stderr = logs, logs
	all.WaitDelay = 5 * time.Second
	if err := all.Start(); err != nil {
		b.Fatalf("start convsync all: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = all.Wait(); close(done) }()
	b.Cleanup(func() {
		_ = all.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = all.Process.Kill()
			<-done
		}
		if b.Failed() {
			b.Logf("logs of convsync all:\n%s", logs.String())
		}
	})
	base := "http://" + addr
	if !poll(90*time.Second, func() bool {
		select {
		case <-done:
			return true
		default:
		}
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}) {
		b.Fatalf("convsync all not ready within 90s\n%s", logs.String())
	}
	select {
	case <-done:
		b.Fatalf("convsync all exited before the load: %v\n%s", all.ProcessState, logs.String())
	default:
	}

	pgMaster := postmaster(b)
	broker := kafkaBroker(b)

	b.StopTimer()
	b.ResetTimer()
	for range b.N {
		before := scrape(b, base)
		cpu0 := [3]float64{procCPU(all.Process.Pid), pgCPU(pgMaster), procCPU(broker)}
		b.StartTimer()

		var out, errOut bytes.Buffer
		lg := exec.Command(bin, "loadgen", "--url", base+"/api/webhook",
			"--rate", strconv.Itoa(loadRate), "--duration", loadFor.String(),
			"--pages", "200", "--users", "500", "--duplicates", "0.02", "--max-items", "1", "--json")
		lg.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "META_APP_SECRET=" + benchSecret}
		lg.Stdout, lg.Stderr = &out, &errOut
		if err := lg.Run(); err != nil {
			b.Fatalf("convsync loadgen: %v\n%s%s", err, out.String(), errOut.String())
		}
		var res loadgen.Result
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			b.Fatalf("loadgen output: %v\n%s", err, out.String())
		}

		// The window ends when the pipeline has caught up: every appended event's
		// freshness observed (redeliveries the processor drops may never be), or the
		// count has stood still for 2 s.
		var after map[string]*dto.MetricFamily
		appended := 0.0
		last, still := -1.0, time.Now()
		poll(60*time.Second, func() bool {
			after = scrape(b, base)
			appended = counterSum(after, "convsync_webhook_events_total") - counterSum(before, "convsync_webhook_events_total")
			n := histCount(after, "convsync_event_freshness_seconds", nil) - histCount(before, "convsync_event_freshness_seconds", nil)
			if n != last {
				last, still = n, time.Now()
			}
			return n >= appended || time.Since(still) > 2*time.Second
		})
		b.StopTimer()
		cpu1 := [3]float64{procCPU(all.Process.Pid), pgCPU(pgMaster), procCPU(broker)}

		if res.Errors != 0 {
			b.Errorf("loadgen: %d errors of %d requests (status %v)", res.Errors, res.Requests, res.Status)
		}
		if appended <= 0 {
			b.Fatalf("no event appended (loadgen sent %d requests, status %v)", res.Requests, res.Status)
		}
		if last <= 0 {
			b.Fatalf("no event reached the read model (%.0f appended)", appended)
		}

		q := func(name string, labels map[string]string, p float64) float64 {
			return 1000 * quantile(before, after, name, labels, p)
		}
		m := map[string]float64{
			"freshness_p50_ms":  q("convsync_event_freshness_seconds", nil, 0.50),
			"freshness_p99_ms":  q("convsync_event_freshness_seconds", nil, 0.99),
			"webhook_p50_ms":    q("convsync_webhook_request_duration_seconds", map[string]string{"outcome": "ok"}, 0.50),
			"webhook_p99_ms":    q("convsync_webhook_request_duration_seconds", map[string]string{"outcome": "ok"}, 0.99),
			"loadgen_p50_ms":    res.Latency.P50,
			"loadgen_p99_ms":    res.Latency.P99,
			"loadgen_errors":    float64(res.Errors),
			"offered_req_per_s": res.RequestsPerS,
			"events_per_s":      appended / res.Seconds,
		}
		for _, st := range []string{"ingest_to_delta", "delta_to_projector", "projector_commit"} {
			l := map[string]string{"stage": st}
			m[st+"_p50_ms"] = q("convsync_freshness_stage_seconds", l, 0.50)
			m[st+"_p99_ms"] = q("convsync_freshness_stage_seconds", l, 0.99)
		}
		k := appended / 1000
		m["cpu_s_per_1k_convsync"] = (cpu1[0] - cpu0[0]) / k
		m["cpu_s_per_1k_postgres"] = (cpu1[1] - cpu0[1]) / k
		m["cpu_s_per_1k_kafka"] = (cpu1[2] - cpu0[2]) / k
		m["cpu_s_per_1k_total"] = m["cpu_s_per_1k_convsync"] + m["cpu_s_per_1k_postgres"] + m["cpu_s_per_1k_kafka"]
		names := make([]string, 0, len(m))
		for n, v := range m {
			b.ReportMetric(v, n)
			names = append(names, n)
		}
		sort.Strings(names)
		load, _ := os.ReadFile("/proc/loadavg")
		b.Logf("binary all @%d/s %s: freshness p50 %.1f p99 %.1f ms; stages p50/p99 ingest→delta %.1f/%.1f, delta→projector %.1f/%.1f, commit %.1f/%.1f ms; "+
			"webhook p50 %.2f p99 %.2f ms (loadgen p50 %.2f p99 %.2f ms, %d errors); %.0f events/s appended; "+
			"CPU s/1k events convsync %.3f postgres %.3f kafka %.3f total %.3f; loadavg %s",
			loadRate, loadFor, m["freshness_p50_ms"], m["freshness_p99_ms"],
			m["ingest_to_delta_p50_ms"], m["ingest_to_delta_p99_ms"], m["delta_to_projector_p50_ms"], m["delta_to_projector_p99_ms"],
			m["projector_commit_p50_ms"], m["projector_commit_p99_ms"],
			m["webhook_p50_ms"], m["webhook_p99_ms"], res.Latency.P50, res.Latency.P99, res.Errors, m["events_per_s"],
			m["cpu_s_per_1k_convsync"], m["cpu_s_per_1k_postgres"], m["cpu_s_per_1k_kafka"], m["cpu_s_per_1k_total"],
			strings.TrimSpace(string(load)))
	}
}

// poll calls cond until it is true or d passes; it reports whether cond came true.
func poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond) // polling a condition with a deadline
	}
}

// scrape reads the binary's /metrics.
func scrape(b *testing.B, base string) map[string]*dto.MetricFamily {
	b.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		b.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		b.Fatalf("parse /metrics: %v", err)
	}
	return mf
}

func matches(m *dto.Metric, labels map[string]string) bool {
	for k, v := range labels {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k && lp.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func counterSum(mf map[string]*dto.MetricFamily, name string) float64 {
	s := 0.0
	if f := mf[name]; f != nil {
		for _, m := range f.GetMetric() {
			s += m.GetCounter().GetValue()
		}
	}
	return s
}

// buckets sums the cumulative bucket counts (upper bound → count) of name's series
// matching labels, and their sample count.
func buckets(mf map[string]*dto.MetricFamily, name string, labels map[string]string) (map[float64]float64, float64) {
	out, n := map[float64]float64{}, 0.0
	if f := mf[name]; f != nil {
		for _, m := range f.GetMetric() {
			if !matches(m, labels) {
				continue
			}
			h := m.GetHistogram()
			n += float64(h.GetSampleCount())
			for _, bk := range h.GetBucket() {
				out[bk.GetUpperBound()] += float64(bk.GetCumulativeCount())
			}
		}
	}
	return out, n
}

func histCount(mf map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	_, n := buckets(mf, name, labels)
	return n
}

// quantile is histogram_quantile over the bucket deltas between two scrapes: linear
// within the bucket holding the rank; past the last finite bound it is that bound.
func quantile(before, after map[string]*dto.MetricFamily, name string, labels map[string]string, q float64) float64 {
	b0, n0 := buckets(before, name, labels)
	b1, n1 := buckets(after, name, labels)
	total := n1 - n0
	if total <= 0 {
		return math.NaN()
	}
	bounds := make([]float64, 0, len(b1))
	for ub := range b1 {
		bounds = append(bounds, ub)
	}
	sort.Float64s(bounds)
	rank := q * total
	lower, prev := 0.0, 0.0
	for _, ub := range bounds {
		c := b1[ub] - b0[ub]
		if c >= rank {
			if c == prev {
				return ub
			}
			return lower + (ub-lower)*(rank-prev)/(c-prev)
		}
		lower, prev = ub, c
	}
	return lower // in the +Inf bucket
}

// stat returns a process's own CPU ticks (utime+stime), its reaped children's
// (cutime+cstime) and its parent's pid; ok is false when it is gone.
func stat(pid int) (self, children float64, ppid int, ok bool) {
	raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, 0, false
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, 0, false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return 0, 0, 0, false
	}
	num := func(j int) float64 { v, _ := strconv.ParseFloat(f[j], 64); return v }
	ppid, _ = strconv.Atoi(f[1])
	return num(11) + num(12), num(13) + num(14), ppid, true
}

// procCPU is a process's CPU seconds (all its threads).
func procCPU(pid int) float64 {
	self, _, _, _ := stat(pid)
	return self / clkTck
}

// pgCPU is the CPU seconds of the local cluster: the postmaster, every live child
// (backends, background workers) and the children it has reaped. A child ending in the
// window moves its time from the live sum to the postmaster's cutime, so the difference
// of two readings counts it once.
func pgCPU(master int) float64 {
	self, reaped, _, _ := stat(master)
	total := self + reaped
	for _, pid := range pids() {
		if pid == master || comm(pid) != "postgres" {
			continue
		}
		if s, _, pp, ok := stat(pid); ok && pp == master {
			total += s
		}
	}
	return total / clkTck
}

func pids() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

func comm(pid int) string {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(raw))
}

func cmdline(pid int) string {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(string(raw), "\x00", " ")
}

// postmaster finds the local cluster's postmaster (deploy/local's data folder under
// .local/pg); without it the CPU of PostgreSQL cannot be read here.
func postmaster(b *testing.B) int {
	b.Helper()
	dir := filepath.Join(testenv.RepoRoot(b), ".local", "pg")
	for _, pid := range pids() {
		if comm(pid) != "postgres" {
			continue
		}
		if _, _, pp, ok := stat(pid); ok && comm(pp) != "postgres" && strings.Contains(cmdline(pid), dir) {
			return pid
		}
	}
	b.Fatalf("no postmaster of %s in /proc: the benchmark reads the local services' CPU (make services-up)", dir)
	return 0
}

// kafkaBroker finds the local broker: the java process running kafka.Kafka with
// deploy/local's server.properties.
func kafkaBroker(b *testing.B) int {
	b.Helper()
	props := filepath.Join(testenv.RepoRoot(b), ".local", "kafka", "server.properties")
	for _, pid := range pids() {
		if c := cmdline(pid); comm(pid) == "java" && strings.Contains(c, "kafka.Kafka") && strings.Contains(c, props) {
			return pid
		}
	}
	b.Fatalf("no Kafka broker with %s in /proc (make services-up)", props)
	return 0
}
