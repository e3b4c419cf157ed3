package processor

import (
	"context"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/schemas/dlq"
)

// DLQEntry is one record of the dead-letter topic, as `convsync dlq` lists it.
type DLQEntry struct {
	Partition int32    `json:"partition"`
	Offset    int64    `json:"offset"`
	Key       string   `json:"key"`
	Bytes     int      `json:"bytes"`
	Info      dlq.Info `json:"info"`
	record    *kgo.Record
}

// ListDLQ reads the dead-letter topic from its start to its last stable offset now and
// returns its records, oldest first per partition. opts name the brokers (and client
// id); records that are not dead letters (no dlq-* headers) are left out. Only committed
// records count (read_committed): a dead letter of an aborted transaction was never
// one, its source record comes again, and one of a transaction still open is not one yet.
func ListDLQ(ctx context.Context, opts []kgo.Opt, topic string) ([]DLQEntry, error) {
	admCl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	// The last stable offset, not the high watermark: a read_committed fetch stops before
	// a transaction still open, so the walk ends there instead of waiting for it.
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list committed end offsets of %s: %w", topic, err)
	}
	want := map[int32]int64{}
	from := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if s, ok := starts.Lookup(topic, o.Partition); ok && o.Offset > s.Offset {
			want[o.Partition] = o.Offset
			from[o.Partition] = kgo.NewOffset().At(s.Offset)
		}
	})
	if len(want) == 0 {
		return nil, nil
	}
	// Control records (transaction markers) are kept so that a partition ending in one is
	// seen to end; the records of aborted transactions are dropped by the fetch.
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, opts...), kgo.KeepControlRecords(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}))...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	var out []DLQEntry
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return out, err
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) { ferr = fmt.Errorf("fetch %s/%d: %w", t, p, err) })
		if ferr != nil {
			return out, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			if info, ok := dlq.Read(r); ok && !r.Attrs.IsControl() {
				out = append(out, DLQEntry{Partition: r.Partition, Offset: r.Offset, Key: string(r.Key), Bytes: len(r.Value), Info: info, record: r})
			}
			if r.Offset+1 >= want[r.Partition] {
				delete(want, r.Partition)
			}
		})
	}
	return out, nil
}

// Requeue sends each entry's original record back to the topic it came from, with its
// key and its headers but without the dlq-* ones, and waits for Kafka's acknowledgement.
// Use it once the cause is fixed (a new schema version deployed, a producer corrected);
// a record that still fails goes to the DLQ again. A dead letter whose value was cut to
// fit (too_large) is not the record any more: Requeue refuses the whole call, naming it,
// and sends nothing.
func Requeue(ctx context.Context, cl *kgo.Client, entries []DLQEntry) error {
	for _, e := range entries {
		if e.Info.TruncatedFrom > 0 {
			return fmt.Errorf("dead letter %d:%d holds only %d of the record's %d bytes (%s): it cannot be requeued; nothing was sent",
				e.Partition, e.Offset, len(e.record.Value), e.Info.TruncatedFrom, e.Info.Category)
		}
	}
	recs := make([]*kgo.Record, 0, len(entries))
	for _, e := range entries {
		r := &kgo.Record{Topic: e.Info.SourceTopic, Key: e.record.Key, Value: e.record.Value}
		for _, h := range e.record.Headers {
			if !strings.HasPrefix(h.Key, "dlq-") {
				r.Headers = append(r.Headers, h)
			}
		}
		recs = append(recs, r)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("requeue %d records: %w", len(recs), err)
	}
	return nil
}
