package processor

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/schemas/deltas"
	"github.com/convsync/convsync/schemas/dlq"
)

// Records the processor cannot produce as they are must not abort the transaction that
// covers every polled partition (it would repeat forever). Two from another producer:
// a broken record just under Kafka's limit, which the dlq-* headers push over it, and a
// valid message whose delta outgrows the limit (its '<' are escaped to \u003c in the
// delta). Both go to the DLQ cut to fit, counted as too_large; the rest commits.
func TestRecordsTooLargeToProduceGoToTheDLQAndTheRestCommits(t *testing.T) {
	t.Parallel()
	kc := testenv.Kafka(t, 3)
	nearLimit := &kgo.Record{Topic: kc.EventsTopic, Key: []byte(page1), Value: []byte(strings.Repeat("x", kafka.ProducerBatchMaxBytes-300))}
	at := time.Date(2026, 5, 2, 8, 0, 0, 0, time.UTC)
	big, _, err := schemas.Encode("/jobs/import", at, schemas.Message{PageID: page1, PSID: "7300000000000999", MID: "m_big", Text: strings.Repeat("<", 400_000), SentAt: at})
	if err != nil {
		t.Fatal(err)
	}
	// Another producer writes '<' as it is; the processor's encoder escapes it.
	big = []byte(strings.ReplaceAll(string(big), `\u003c`, "<"))
	good := records(t, kc.EventsTopic, 0, conversationEvents())
	in := append([]*kgo.Record{nearLimit, {Topic: kc.EventsTopic, Key: []byte(page1), Value: big}}, good...)
	produced := produce(t, kc.Brokers, in)

	cfg := testConfig()
	p := newProcessor(t, cfg, kc, prometheus.NewRegistry())
	r := start(t, p)
	adm := admin(t, kc.Brokers)
	eventually(t, time.Minute, "the processor committing every record's offset", func() bool {
		return caughtUp(adm, cfg.Group, kc.EventsTopic)
	})
	r.stop(t)

	dead := readAll(t, kc.Brokers, kc.DLQTopic)
	if len(dead) != 2 {
		t.Fatalf("DLQ holds %d records, want 2", len(dead))
	}
	for _, d := range dead {
		info, ok := dlq.Read(d)
		if !ok || info.Category != dlq.CategoryTooLarge || info.Reason == "" {
			t.Errorf("dead letter info = %+v (ok %v), want category too_large with a reason", info, ok)
		}
		if size := dlq.Size(d); size > kafka.ProducerBatchMaxBytes {
			t.Errorf("dead letter takes %d bytes, want at most %d", size, kafka.ProducerBatchMaxBytes)
		}
		src := produced[0]
		if info.SourceOffset != src.Offset || info.SourcePartition != src.Partition {
			src = produced[1]
		}
		if info.SourceOffset != src.Offset || info.SourcePartition != src.Partition {
			t.Errorf("dead letter source %d@%d, want one of the two large records", info.SourcePartition, info.SourceOffset)
		}
		if !strings.HasPrefix(string(src.Value), string(d.Value)) || (info.TruncatedFrom != 0 && info.TruncatedFrom != len(src.Value)) {
			t.Errorf("dead letter value (%d bytes, truncated from %d) is not the start of the source record (%d bytes)", len(d.Value), info.TruncatedFrom, len(src.Value))
		}
	}
	codec := newCodec(t)
	ds := deltasOf(t, readAll(t, kc.Brokers, kc.DeltasTopic))
	if diff := diffDeltas(ds, decodeAll(t, codec, good)); diff != "" {
		t.Errorf("deltas differ from the fold of the good events (-fold +deltas):\n%s", diff)
	}
	if got := testutil.ToFloat64(p.m.dlq.WithLabelValues(kc.EventsTopic, dlq.CategoryTooLarge)); got != 2 {
		t.Errorf("convsync_dlq_records_total{reason=too_large} = %v, want 2", got)
	}
}

// A delta that cannot be encoded must not hold the batch of every polled partition: the
// page's events are split until the event that breaks it is alone, and that one goes to
// the DLQ; the rest, of that page and the others, is written. (The codec refuses what
// it knows cannot be encoded again; this is the net below it.)
func TestAnEventWhoseDeltaCannotBeEncodedIsIsolated(t *testing.T) {
	codec := newCodec(t)
	kc := kafka.Defaults()
	kc.EventsTopic, kc.DeltasTopic, kc.DLQTopic = "events", "deltas", "dlq"
	p := &Processor{cfg: Defaults(), kc: kc, codec: codec}
	recs := records(t, "events", 0, conversationEvents())
	for i, r := range recs {
		r.Partition, r.Offset = 0, int64(i)
	}
	// A postback whose raw data is not JSON: only a producer that bypassed the codec
	// could make one, which is what this stands for.
	bad := records(t, "events", len(recs), []schemas.Data{schemas.Postback{PageID: page1, PSID: "7300000000000777", Title: "x", Payload: "P", OccurredAt: t0}})[0]
	bad.Offset = int64(len(recs))
	all := append(recs, bad)
	out, res, err := p.transformWith(all, t0, func(i int, e *deltas.Event) {
		if i == len(all)-1 {
			e.Env.Data = []byte(`{not json`)
		}
	})
	if err != nil {
		t.Fatalf("transform with one unencodable event = %v, want the batch written and the event dead-lettered", err)
	}
	var dead, ds int
	for _, r := range out {
		switch r.Topic {
		case kc.DLQTopic:
			dead++
			if info, ok := dlq.Read(r); !ok || info.SourceOffset != bad.Offset || info.Category != dlq.CategorySchema {
				t.Errorf("dead letter %+v (ok %v), want the postback's offset %d and category schema", info, ok, bad.Offset)
			}
		case kc.DeltasTopic:
			ds++
		}
	}
	if dead != 1 || ds == 0 || res.events != len(recs) {
		t.Errorf("transform wrote %d dead letters and %d deltas of %d events, want 1 dead letter and the deltas of the %d others", dead, ds, res.events, len(recs))
	}
}
