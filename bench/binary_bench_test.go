// Package bench holds the load benchmarks of the built binary (issue 12, item 2): the
// convsync a user runs, started as subprocesses with their defaults on a fresh schema,
// fresh topics and a Redis prefix of their own, driven by `convsync loadgen` (and wrk,
// redis-benchmark, a paced Go client) in processes of their own, and measured from the
// binary's own /metrics and from /proc:
//
//   - BenchmarkLoadBinary/all and /roles: 1,000 webhooks/s for 15 s into `convsync all`,
//     or into `convsync ingest`, `process` and `project` as three processes;
//   - BenchmarkLoadBinaryReadAPI: read API hits on `convsync all` while 500 events/s flow;
//   - BenchmarkLoadBinaryCatchUp: a preloaded events topic through `convsync process` and
//     `convsync project`;
//   - BenchmarkLoadBinaryMaxRate: the highest webhook rate `convsync all` sustains.
//
// Speed is never asserted; what can fail is: no failed request where none is allowed,
// and the read model equal to the reference fold of every event in the log. Run one at a
// time, under the shared lock (BENCH.md has the commands):
//
//	set -a; . .local/env; set +a
//	go test -run '^$' -bench '^BenchmarkLoadBinary' -benchtime 1x ./bench/
//
// CONVSYNC_BIN names a convsync to measure instead of building this checkout's.
package bench

import (
	"testing"
	"time"
)

// BenchmarkLoadBinary offers 1,000 signed webhooks/s, one event each, for 15 s from
// `convsync loadgen` (another process) and reports freshness, its stages and the webhook
// latency from the binary's /metrics histograms, the load generator's own view (counted
// from the scheduled send time), the achieved rate, and the CPU seconds per 1,000 events
// of the convsync process(es), PostgreSQL and the Kafka broker from /proc:
//
//   - all: `convsync all`, every role in one process, with its defaults;
//   - roles: `convsync ingest`, `convsync process` and `convsync project`, each a process
//     with its own HTTP_ADDR; webhook latency comes from ingest's /metrics, freshness
//     and its stages from project's, CPU is the three processes' sum.
func BenchmarkLoadBinary(b *testing.B) {
	bin := binary(b)
	for _, v := range []struct {
		name  string
		roles []string
	}{
		{"all", []string{"all"}},
		{"roles", []string{"ingest", "process", "project"}},
	} {
		b.Run(v.name, func(b *testing.B) {
			st := newStack(b, bin)
			for _, r := range v.roles {
				st.start(b, r)
			}
			st.waitAssigned(b)
			b.StopTimer()
			b.ResetTimer()
			for range b.N {
				mr := st.measureLoad(b, load{rate: 1000, duration: 15 * time.Second, maxItems: 1}, time.Minute)
				if mr.res.Errors != 0 {
					b.Errorf("loadgen: %d errors of %d requests (status %v)", mr.res.Errors, mr.res.Requests, mr.res.Status)
				}
				if !mr.caughtUp {
					b.Errorf("%.0f of %.0f appended events reached the read model within a minute of the load", mr.observed, mr.appended)
				}
				st.verify(b, time.Minute, false)
				report(b, mr.m)
				b.Logf("binary %s: %s (freshness from %s, webhook from %s)", v.name, mr.summary(),
					st.exporter(b, "convsync_event_freshness_seconds").role, st.exporter(b, "convsync_webhook_request_duration_seconds").role)
			}
		})
	}
}
