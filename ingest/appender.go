package ingest

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Appender appends records to the event log and returns once every one is acknowledged,
// or with an error when any is not.
type Appender interface {
	Append(ctx context.Context, recs []*kgo.Record) error
}

// KafkaAppender appends with a franz-go client configured with ProducerOpts.
type KafkaAppender struct {
	cl *kgo.Client
}

// NewKafkaAppender wraps cl; the caller keeps owning (and closes) it.
func NewKafkaAppender(cl *kgo.Client) *KafkaAppender { return &KafkaAppender{cl: cl} }

// ProducerOpts are the producer settings the no-loss promise rests on: the idempotent
// producer (franz-go's default; never disabled here) with acks from all in-sync replicas,
// no linger (each webhook waits for its own records), and a bounded buffer.
func ProducerOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.ProducerBatchCompression(kgo.Lz4Compression(), kgo.NoCompression()),
		kgo.MaxBufferedRecords(100_000),
	}
}

// Append produces every record and waits for all acknowledgements or ctx. When ctx ends
// first the error is ctx's: records still in flight may yet land, which the deterministic
// event ids make harmless.
func (a *KafkaAppender) Append(ctx context.Context, recs []*kgo.Record) error {
	if len(recs) == 0 {
		return nil
	}
	results := make(chan error, len(recs))
	for _, r := range recs {
		a.cl.Produce(ctx, r, func(_ *kgo.Record, err error) { results <- err })
	}
	var errs []error
	for range recs {
		select {
		case err := <-results:
			if err != nil {
				errs = append(errs, err)
			}
		case <-ctx.Done():
			return fmt.Errorf("append %d records: %w", len(recs), ctx.Err())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("append %d records, %d failed: %w", len(recs), len(errs), errors.Join(errs...))
	}
	return nil
}

// Ping reports whether a broker answers.
func (a *KafkaAppender) Ping(ctx context.Context) error { return a.cl.Ping(ctx) }
