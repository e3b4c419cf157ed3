package backfill

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/convsync/convsync/ingest/graph"
	"github.com/convsync/convsync/internal/graphsim"
	"github.com/convsync/convsync/internal/testenv"
)

// BenchmarkLoadBackfillBinary runs the binaries as a user does: `convsync graphsim` with
// Meta's documented limits (2 calls per second per Page token, strictly; usage headers a
// share of the default rolling hourly budget) serving 50 pages × 200 conversations × 20
// messages, each request answered after 50 ms; `convsync pages import`; then `convsync
// backfill --all` with every default (no BACKFILL_* or GRAPH_API_* but the URL), against
// the local Kafka (a 12-partition topic of its own) and Postgres (a schema of its own).
//
// It reports the backfill process's wall time (start to exit), pages/s and events/s
// over it, and the rate-limit lower bound: every folder of a page is listed, ceil(threads
// / page size) calls each and at least one; with at most 2 calls starting in any
// second, a page's c-th call cannot start before floor((c-1)/2) s, and takes one
// request's latency; pages go in parallel (their limits are their own), and no page
// comes near its hourly budget. The ratio is wall time over the bound at the client's
// default page size (GRAPH_API_PAGE_SIZE, 200: 4 calls a page, 1.05 s); the bound at
// 25 threads a call (10 calls a page, 4.05 s: issue 12's "about 4 s") is reported too.
//
// It also reports the CPU seconds per 1,000 events appended of the backfill process
// (its rusage at exit), the simulator and the local Kafka broker (/proc/<pid>/stat
// before and after the backfill), and their total. With CONVSYNC_BENCH_PROFILE set to a
// folder, both processes write CPU profiles there (backfill-<n>.pprof, graphsim.pprof;
// go tool pprof reads them).
//
//	make bench BENCH=none LOADBENCH=LoadBackfillBinary
func BenchmarkLoadBackfillBinary(b *testing.B) {
	const (
		pages, convs, msgs = 50, 200, 20
		latency            = 50 * time.Millisecond
		perWindow, window  = 2, time.Second // Meta: 2 calls per second per Page
	)
	bin := testenv.Binary(b)
	kc := testenv.Kafka(b, 12)
	_, dbURL := testenv.Postgres(b)

	// The data the simulator process serves: its flags on graphsim.DefaultConfig.
	scfg := graphsim.DefaultConfig()
	scfg.Pages, scfg.Conversations, scfg.Messages = pages, convs, msgs
	sim, err := graphsim.New(scfg)
	if err != nil {
		b.Fatal(err)
	}
	// bound is the rate limit's lower bound with pageSize threads a call, and the calls.
	bound := func(pageSize int) (lower time.Duration, calls int) {
		for _, p := range sim.Pages() {
			c := listingCalls(sim, p.ID, pageSize)
			if c > graphsim.DefaultHourlyBudget {
				b.Fatalf("page %s needs %d calls, over its hourly budget: the bound below does not hold", p.ID, c)
			}
			calls += c
			lower = max(lower, time.Duration((c-1)/perWindow)*window+latency)
		}
		return lower, calls
	}
	lower, calls := bound(graph.Defaults().PageSize)
	lower25, _ := bound(25)

	profiles := os.Getenv("CONVSYNC_BENCH_PROFILE")
	addr := testenv.FreeAddr(b)
	var simLog bytes.Buffer
	gsArgs := []string{"graphsim", "--addr", addr, "--pages", strconv.Itoa(pages),
		"--conversations", strconv.Itoa(convs), "--messages", strconv.Itoa(msgs),
		"--latency", latency.String(), "--page-rate", strconv.Itoa(perWindow)}
	if profiles != "" {
		gsArgs = append(gsArgs, "--cpu-profile", filepath.Join(profiles, "graphsim.pprof"))
	}
	gs := exec.Command(bin, gsArgs...)
	gs.Stdout, gs.Stderr = &simLog, &simLog
	if err := gs.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = gs.Process.Signal(os.Interrupt)
		_ = gs.Wait()
	})
	waitHTTP(b, "http://"+addr+"/"+scfg.Version+"/me?access_token=bench-user", &simLog)

	// Every default of the binary: only where the services and the simulator are.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BACKFILL_") && !strings.HasPrefix(kv, "GRAPH_API_") && !strings.HasPrefix(kv, "KAFKA_") &&
			!strings.HasPrefix(kv, "DATABASE_") {
			env = append(env, kv)
		}
	}
	env = append(env, "DATABASE_URL="+dbURL, "KAFKA_BROKERS="+strings.Join(kc.Brokers, ","),
		"KAFKA_EVENTS_TOPIC="+kc.EventsTopic, "KAFKA_DELTAS_TOPIC="+kc.DeltasTopic, "KAFKA_DLQ_TOPIC="+kc.DLQTopic,
		"GRAPH_API_URL=http://"+addr)
	var rss float64 // the last command's peak resident memory, bytes
	// run returns the command's output, wall time and CPU seconds (user + system).
	run := func(args ...string) (string, time.Duration, float64) {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		t0 := time.Now()
		out, err := cmd.CombinedOutput()
		d := time.Since(t0)
		if err != nil {
			b.Fatalf("convsync %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		ps := cmd.ProcessState
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			rss = float64(ru.Maxrss) * 1024 // kilobytes on Linux, bytes on macOS
			if runtime.GOOS == "darwin" {
				rss = float64(ru.Maxrss)
			}
		}
		return string(out), d, (ps.UserTime() + ps.SystemTime()).Seconds()
	}
	run("pages", "import", "--user-token", "bench-user")
	broker := testenv.KafkaBroker(b)

	summary := regexp.MustCompile(`backfill: (\d+) pages synced, (\d+) failed, (\d+) conversations, (\d+) messages, (\d+) graph requests, (\d+) throttle waits in (\S+)`)
	var wall time.Duration
	var m []string
	var cpuJob, cpuSim, cpuKafka float64 // of the last run
	for i := range b.N {
		args := []string{"backfill", "--all"} // last_synced_at stays empty: no projector runs, so each run reads everything
		if profiles != "" {
			args = append(args, "--cpu-profile", filepath.Join(profiles, fmt.Sprintf("backfill-%d.pprof", i)))
		}
		sim0, kafka0 := testenv.ProcCPU(gs.Process.Pid), testenv.ProcCPU(broker)
		var out string
		out, wall, cpuJob = run(args...)
		cpuSim, cpuKafka = testenv.ProcCPU(gs.Process.Pid)-sim0, testenv.ProcCPU(broker)-kafka0
		if m = summary.FindStringSubmatch(out); m == nil {
			b.Fatalf("convsync backfill printed no summary:\n%s", out)
		}
	}
	n := func(i int) float64 { v, _ := strconv.ParseFloat(m[i], 64); return v }
	if n(1) != pages || n(2) != 0 || n(3) != pages*convs || n(4) != pages*convs*msgs {
		b.Fatalf("backfill = %s; want %d pages, none failed, %d conversations, %d messages", m[0], pages, pages*convs, pages*convs*msgs)
	}
	events := n(1) + n(3) + n(4) // page_synced, conversation_observed, message_observed
	if got := testenv.EndOffsets(b, kc.Brokers, kc.EventsTopic); got != int64(b.N)*int64(events) {
		b.Errorf("the events topic holds %d records after %d runs, want %d each", got, b.N, int64(events))
	}
	job, _ := time.ParseDuration(m[7])
	b.ReportMetric(wall.Seconds(), "wall-s")
	b.ReportMetric(job.Seconds(), "job-s")
	b.ReportMetric(lower.Seconds(), "lower-bound-s")
	b.ReportMetric(wall.Seconds()/lower.Seconds(), "wall/bound")
	b.ReportMetric(wall.Seconds()/lower25.Seconds(), "wall/bound-25")
	b.ReportMetric(n(1)/wall.Seconds(), "pages/s")
	b.ReportMetric(events/wall.Seconds(), "events/s")
	b.ReportMetric(n(5), "graph-requests")
	b.ReportMetric(float64(calls), "min-requests")
	b.ReportMetric(n(6), "throttle-waits")
	b.ReportMetric(rss/(1<<20), "backfill-max-rss-MB")
	k := events / 1000
	b.ReportMetric(cpuJob/k, "cpu-s/1k-backfill")
	b.ReportMetric(cpuSim/k, "cpu-s/1k-graphsim")
	b.ReportMetric(cpuKafka/k, "cpu-s/1k-kafka")
	b.ReportMetric((cpuJob+cpuSim+cpuKafka)/k, "cpu-s/1k-total")
	b.ReportMetric(0, "ns/op")
	load, _ := os.ReadFile("/proc/loadavg")
	b.Logf("backfill %s wall (%.2f× the %s bound, %.2f× the %s bound at 25 threads a call); CPU s backfill %.2f, graphsim %.2f, kafka %.2f; "+
		"backfill max RSS %.0f MB; loadavg %s", wall.Round(time.Millisecond), wall.Seconds()/lower.Seconds(), lower,
		wall.Seconds()/lower25.Seconds(), lower25, cpuJob, cpuSim, cpuKafka, rss/(1<<20), strings.TrimSpace(string(load)))
}

// waitHTTP polls u until it answers, or fails after 30 s with the process's output.
func waitHTTP(b *testing.B, u string, log *bytes.Buffer) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			return
		}
		select {
		case <-ctx.Done():
			b.Fatalf("convsync graphsim did not answer at %s:\n%s", u, log)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
