package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/convsync/convsync/internal/loadgen"
	"github.com/convsync/convsync/internal/testenv"
)

// load is one run of `convsync loadgen` in a process of its own: open loop (latency from
// the scheduled send time), 200 pages × 500 users drawn Zipf, 2% redeliveries.
type load struct {
	rate        float64 // webhooks/s offered
	duration    time.Duration
	maxItems    int // events per webhook at most; 1 is the load
	concurrency int // requests in flight at most; 0 is loadgen's default (64)
	seed        int
}

// loadgenRun is a started `convsync loadgen`.
type loadgenRun struct {
	cmd         *exec.Cmd
	out, errOut bytes.Buffer
}

func startLoadgen(b *testing.B, bin, url string, l load) *loadgenRun {
	b.Helper()
	args := []string{"loadgen", "--url", url, "--json",
		"--rate", strconv.FormatFloat(l.rate, 'f', -1, 64), "--duration", l.duration.String(),
		"--pages", "200", "--users", "500", "--duplicates", "0.02",
		"--max-items", strconv.Itoa(max(1, l.maxItems)), "--seed", strconv.Itoa(max(1, l.seed))}
	if l.concurrency > 0 {
		args = append(args, "--concurrency", strconv.Itoa(l.concurrency))
	}
	r := &loadgenRun{}
	// Bounded: the run's own duration, plus the requests in flight, plus generating the
	// deliveries before the clock starts.
	ctx, cancel := context.WithTimeout(context.Background(), l.duration+2*time.Minute)
	b.Cleanup(cancel)
	r.cmd = exec.CommandContext(ctx, bin, args...)
	r.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "META_APP_SECRET=" + benchSecret}
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.errOut
	if err := r.cmd.Start(); err != nil {
		b.Fatalf("start convsync loadgen: %v", err)
	}
	return r
}

func (r *loadgenRun) wait(b *testing.B) loadgen.Result {
	b.Helper()
	if err := r.cmd.Wait(); err != nil {
		b.Fatalf("convsync loadgen: %v\n%s%s", err, r.out.String(), r.errOut.String())
	}
	var res loadgen.Result
	if err := json.Unmarshal(r.out.Bytes(), &res); err != nil {
		b.Fatalf("loadgen output: %v\n%s", err, r.out.String())
	}
	return res
}

// status5xx counts the answers of 500 and above.
func status5xx(res loadgen.Result) int {
	n := 0
	for s, c := range res.Status {
		if s >= 500 {
			n += c
		}
	}
	return n
}

// measured is one load through a stack.
type measured struct {
	res      loadgen.Result
	appended float64 // events the webhook appended during the window
	observed float64 // freshness observations: events whose rows committed
	caughtUp bool    // every appended event's freshness was observed before the drain bound
	m        map[string]float64
}

// measureLoad offers l to the stack's webhook and ends the window when the pipeline has
// caught up: every appended event's freshness observed, or the count still for 5 s, or
// drain after the load. Quantiles come from the bucket deltas of the process exporting
// each histogram; CPU from /proc over the window.
func (st *stack) measureLoad(b *testing.B, l load, drain time.Duration) measured {
	b.Helper()
	const (
		fresh   = "convsync_event_freshness_seconds"
		stages  = "convsync_freshness_stage_seconds"
		webhook = "convsync_webhook_request_duration_seconds"
		events  = "convsync_webhook_events_total"
	)
	ing, prj := st.exporter(b, webhook), st.exporter(b, fresh)
	ing0, prj0 := scrape(b, ing.base), scrape(b, prj.base)
	cpu0 := st.readCPU()
	b.StartTimer()
	res := startLoadgen(b, st.bin, ing.base+"/api/webhook", l).wait(b)

	var ing1, prj1 families
	var mr measured
	last, still := -1.0, time.Now()
	mr.caughtUp = testenv.Poll(drain, func() bool {
		ing1, prj1 = scrape(b, ing.base), scrape(b, prj.base)
		mr.appended = counter(ing1, events, nil) - counter(ing0, events, nil)
		mr.observed = histCount(prj1, fresh, nil) - histCount(prj0, fresh, nil)
		if mr.observed != last {
			last, still = mr.observed, time.Now()
		}
		return mr.observed >= mr.appended || time.Since(still) > 5*time.Second
	}) && mr.observed >= mr.appended
	b.StopTimer()
	used := st.readCPU().sub(cpu0)
	st.alive(b)
	if mr.appended <= 0 {
		b.Fatalf("no event appended (loadgen sent %d requests, status %v)", res.Requests, res.Status)
	}
	if mr.observed <= 0 {
		b.Fatalf("no event reached the read model (%.0f appended)", mr.appended)
	}
	// The stages' series appear with their first observation.
	if p := st.exporter(b, stages); p != prj {
		b.Fatalf("%s comes from convsync %s, %s from convsync %s", stages, p.role, fresh, prj.role)
	}

	q := func(mf0, mf1 families, name string, labels map[string]string, p float64) float64 {
		return 1000 * quantile(mf0, mf1, name, labels, p)
	}
	ok := map[string]string{"outcome": "ok"}
	mr.res = res
	mr.m = map[string]float64{
		"freshness_p50_ms":   q(prj0, prj1, fresh, nil, 0.50),
		"freshness_p99_ms":   q(prj0, prj1, fresh, nil, 0.99),
		"webhook_p50_ms":     q(ing0, ing1, webhook, ok, 0.50),
		"webhook_p99_ms":     q(ing0, ing1, webhook, ok, 0.99),
		"loadgen_p50_ms":     res.Latency.P50,
		"loadgen_p99_ms":     res.Latency.P99,
		"loadgen_errors":     float64(res.Errors),
		"loadgen_5xx":        float64(status5xx(res)),
		"offered_req_per_s":  l.rate,
		"achieved_req_per_s": res.RequestsPerS,
		"events_per_s":       mr.appended / res.Seconds,
	}
	for _, s := range []string{"ingest_to_delta", "delta_to_projector", "projector_commit"} {
		l := map[string]string{"stage": s}
		mr.m[s+"_p50_ms"] = q(prj0, prj1, stages, l, 0.50)
		mr.m[s+"_p99_ms"] = q(prj0, prj1, stages, l, 0.99)
	}
	used.perThousand(mr.m, mr.appended)
	return mr
}

// report hands every figure to the benchmark's output, in name order.
func report(b *testing.B, m map[string]float64) {
	b.Helper()
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b.ReportMetric(m[n], n)
	}
	b.ReportMetric(0, "ns/op")
}

// summary is the one log line of a load's figures.
func (mr measured) summary() string {
	m := mr.m
	return fmt.Sprintf("offered %.0f/s, achieved %.0f req/s (%d errors, %d 5xx), %.0f events/s appended; "+
		"freshness p50 %.1f p99 %.1f ms; stages p50/p99 ingest→delta %.1f/%.1f, delta→projector %.1f/%.1f, commit %.1f/%.1f ms; "+
		"webhook p50 %.2f p99 %.2f ms (loadgen p50 %.2f p99 %.2f ms); "+
		"CPU s/1k events convsync %.3f postgres %.3f kafka %.3f total %.3f; loadavg %s",
		m["offered_req_per_s"], m["achieved_req_per_s"], mr.res.Errors, status5xx(mr.res), m["events_per_s"],
		m["freshness_p50_ms"], m["freshness_p99_ms"],
		m["ingest_to_delta_p50_ms"], m["ingest_to_delta_p99_ms"], m["delta_to_projector_p50_ms"], m["delta_to_projector_p99_ms"],
		m["projector_commit_p50_ms"], m["projector_commit_p99_ms"],
		m["webhook_p50_ms"], m["webhook_p99_ms"], m["loadgen_p50_ms"], m["loadgen_p99_ms"],
		m["cpu_s_per_1k_convsync"], m["cpu_s_per_1k_postgres"], m["cpu_s_per_1k_kafka"], m["cpu_s_per_1k_total"],
		loadavg())
}

func loadavg() string {
	raw, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
