package backfill

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

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
// / 25) calls each and at least one; with at most 2 calls starting in any second, a
// page's c-th call cannot start before floor((c-1)/2) s, and takes one request's
// latency; pages go in parallel (their limits are their own), and no page comes near
// its hourly budget. The ratio is wall time over the bound.
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
	var lower time.Duration
	calls := 0
	for _, p := range sim.Pages() {
		c := listingCalls(sim, p.ID, 25) // GRAPH_API_PAGE_SIZE's default
		if c > graphsim.DefaultHourlyBudget {
			b.Fatalf("page %s needs %d calls, over its hourly budget: the bound below does not hold", p.ID, c)
		}
		calls += c
		lower = max(lower, time.Duration((c-1)/perWindow)*window+latency)
	}

	addr := testenv.FreeAddr(b)
	var simLog bytes.Buffer
	gs := exec.Command(bin, "graphsim", "--addr", addr, "--pages", strconv.Itoa(pages),
		"--conversations", strconv.Itoa(convs), "--messages", strconv.Itoa(msgs),
		"--latency", latency.String(), "--page-rate", strconv.Itoa(perWindow))
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
	run := func(args ...string) (string, time.Duration) {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		t0 := time.Now()
		out, err := cmd.CombinedOutput()
		d := time.Since(t0)
		if err != nil {
			b.Fatalf("convsync %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out), d
	}
	run("pages", "import", "--user-token", "bench-user")

	summary := regexp.MustCompile(`backfill: (\d+) pages synced, (\d+) failed, (\d+) conversations, (\d+) messages, (\d+) graph requests, (\d+) throttle waits in (\S+)`)
	var wall time.Duration
	var m []string
	for range b.N {
		var out string
		out, wall = run("backfill", "--all") // last_synced_at stays empty: no projector runs, so each run reads everything
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
	b.ReportMetric(n(1)/wall.Seconds(), "pages/s")
	b.ReportMetric(events/wall.Seconds(), "events/s")
	b.ReportMetric(n(5), "graph-requests")
	b.ReportMetric(float64(calls), "min-requests")
	b.ReportMetric(n(6), "throttle-waits")
	b.ReportMetric(0, "ns/op")
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
