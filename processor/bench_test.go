package processor

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/loadgen"
	"github.com/convsync/convsync/schemas/deltas"
)

// benchBatches are the batch sizes measured: a small poll, the default
// PROCESSOR_MAX_POLL_RECORDS, a large one.
var benchBatches = []int{100, 2000, 10000}

// benchRecords is the load generator's default mix (50 pages, Zipf-skewed, 2%
// redeliveries) as event records.
func benchRecords(b *testing.B, n int) []*kgo.Record {
	return records(b, kafka.Defaults().EventsTopic, 0, genEvents(b, loadgen.DefaultGenConfig(), n))
}

// BenchmarkFold is the pure fold of one batch into per-page deltas, for the batch sizes
// above; it reports events folded per second and events per delta (the compaction
// ratio).
//
//	go test -run '^$' -bench Fold -benchmem ./processor/
func BenchmarkFold(b *testing.B) {
	events := decodeAll(b, newCodec(b), benchRecords(b, 4*benchBatches[len(benchBatches)-1]))
	for _, size := range benchBatches {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			b.ReportAllocs()
			var folded, nd int
			i := 0
			for b.Loop() {
				start := (i * size) % (len(events) - size)
				nd += len(deltas.Fold(events[start : start+size]))
				folded += size
				i++
			}
			b.ReportMetric(float64(folded)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(folded)/float64(nd), "events/delta")
		})
	}
}

// BenchmarkTransform is a partition worker's CPU work on one batch: decode and validate
// every record (schemas.Codec), fold, marshal the deltas and build their records.
func BenchmarkTransform(b *testing.B) {
	p, err := New(Defaults(), kafka.Defaults(), newCodec(b), nil, prometheus.NewRegistry(), nil)
	if err != nil {
		b.Fatal(err)
	}
	recs := benchRecords(b, 4*benchBatches[len(benchBatches)-1])
	now := time.Now()
	for _, size := range benchBatches {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			b.ReportAllocs()
			var done, nd int
			i := 0
			for b.Loop() {
				start := (i * size) % (len(recs) - size)
				out, res, err := p.transform(recs[start:start+size], now)
				if err != nil || len(res.dead) > 0 {
					b.Fatalf("transform = %v, %d dead letters; want the generator's events all valid", err, len(res.dead))
				}
				nd += len(out)
				done += size
				i++
			}
			b.ReportMetric(float64(done)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(done)/float64(nd), "events/delta")
		})
	}
}
