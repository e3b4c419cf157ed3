package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// maxRateSteps are the offered rates BenchmarkLoadBinaryMaxRate steps through:
// CONVSYNC_BENCH_RATES (comma-separated webhooks/s), 2,000 to 12,000 by 2,000 by default.
func maxRateSteps(b *testing.B) []float64 {
	b.Helper()
	v := os.Getenv("CONVSYNC_BENCH_RATES")
	if v == "" {
		return []float64{2000, 4000, 6000, 8000, 10000, 12000}
	}
	var out []float64
	for _, f := range strings.Split(v, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || r <= 0 {
			b.Fatalf("CONVSYNC_BENCH_RATES=%q: want webhooks/s, comma-separated", v)
		}
		out = append(out, r)
	}
	return out
}

// maxRateInFlight bounds the load generator's requests in flight: high enough that the
// generator never throttles itself at these rates (10,000/s at 50 ms each is 500).
const maxRateInFlight = 512

// BenchmarkLoadBinaryMaxRate finds the highest webhook rate `convsync all` sustains with
// its defaults: for each offered rate (CONVSYNC_BENCH_RATES), a fresh schema, topics and
// `convsync all` process, then `convsync loadgen` for 10 s at that rate, one event per
// webhook, at most 512 requests in flight, measured as BenchmarkLoadBinary measures. A
// step passes with no failed request (no 5xx, no transport error), the achieved rate
// within 5% of the offered one, every appended event in the read model within 2 minutes
// of the load's end, and freshness p99 ≤ 1 s over all of them. Each step's read model
// must equal the reference fold of its log whether it passes or not. The last
// sub-benchmark, highest, lists every run of every step and reports the highest rate that
// passed in any run and in every run.
func BenchmarkLoadBinaryMaxRate(b *testing.B) {
	bin := binary(b)
	type step struct {
		rate float64
		mr   measured
		pass bool
	}
	var steps []step
	for _, rate := range maxRateSteps(b) {
		b.Run(fmt.Sprintf("offered=%.0f", rate), func(b *testing.B) {
			st := newStack(b, bin)
			st.start(b, "all")
			st.waitAssigned(b)
			b.StopTimer()
			b.ResetTimer()
			for range b.N {
				mr := st.measureLoad(b, load{rate: rate, duration: 10 * time.Second, maxItems: 1, concurrency: maxRateInFlight}, 2*time.Minute)
				st.verify(b, 2*time.Minute, mr.res.Errors > 0)
				pass := mr.res.Errors == 0 && mr.caughtUp && mr.m["achieved_req_per_s"] >= 0.95*rate && mr.m["freshness_p99_ms"] <= 1000
				mr.m["pass"] = 0
				if pass {
					mr.m["pass"] = 1
				}
				report(b, mr.m)
				b.Logf("binary all, step %.0f/s (pass %v, caught up %v): %s", rate, pass, mr.caughtUp, mr.summary())
				steps = append(steps, step{rate, mr, pass})
			}
		})
	}
	// With -count, each step runs that many times before the next; this last
	// sub-benchmark reads every run so far.
	b.Run("highest", func(b *testing.B) {
		var lines []string
		highest, highestAll := 0.0, 0.0
		for _, rate := range maxRateSteps(b) {
			var runs []string
			passes, n := 0, 0
			for _, s := range steps {
				if s.rate != rate {
					continue
				}
				n++
				if s.pass {
					passes++
				}
				runs = append(runs, fmt.Sprintf("achieved %.0f, %d errors (%d 5xx), freshness p99 %.0f ms, pass %v",
					s.mr.m["achieved_req_per_s"], s.mr.res.Errors, status5xx(s.mr.res), s.mr.m["freshness_p99_ms"], s.pass))
			}
			if passes > 0 {
				highest = max(highest, rate)
			}
			if n > 0 && passes == n {
				highestAll = max(highestAll, rate)
			}
			lines = append(lines, fmt.Sprintf("%.0f/s: %d of %d runs passed: %s", rate, passes, n, strings.Join(runs, "; ")))
		}
		b.ReportMetric(highest, "highest_passing_req_per_s")
		b.ReportMetric(highestAll, "highest_passing_every_run_req_per_s")
		b.ReportMetric(0, "ns/op")
		b.Logf("highest passing step %.0f webhooks/s (in every run: %.0f)\n%s", highest, highestAll, strings.Join(lines, "\n"))
	})
}
