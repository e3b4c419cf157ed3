package processor

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/schemas/dlq"
)

// The DLQ tool lists what the processor dead-lettered, with reasons and sources, and
// sends chosen records back to their source topic without the dlq-* headers.
func TestListAndRequeueDeadLetters(t *testing.T) {
	t.Parallel()
	kc := testenv.Kafka(t, 2)
	good := records(t, kc.EventsTopic, 0, conversationEvents()[:2])
	bad := []*kgo.Record{
		{Topic: kc.EventsTopic, Key: []byte("104400000000001"), Value: []byte("not json"), Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t-1")}}},
		{Topic: kc.EventsTopic, Key: []byte("104400000000001"), Value: []byte(`{"specversion":"1.0","id":"x","source":"/s","type":"` + schemas.TypeMessage + `","time":"2024-05-29T16:00:00Z","datacontenttype":"application/json","pageid":"104400000000001","receivedat":"2024-05-29T16:00:00Z","data":{"page_id":"104400000000001","psid":"1","direction":"inbound","sent_at":"2024-05-29T16:00:00Z"}}`)},
	}
	produce(t, kc.Brokers, append(append([]*kgo.Record{}, good...), bad...))
	p := newProcessor(t, testConfig(), kc, prometheus.NewRegistry())
	run := start(t, p)
	opts := []kgo.Opt{kgo.SeedBrokers(kc.Brokers...)}
	ctx := testenv.Context(t, time.Minute)
	var entries []DLQEntry
	eventually(t, 30*time.Second, "two dead letters", func() bool {
		var err error
		entries, err = ListDLQ(ctx, opts, kc.DLQTopic)
		return err == nil && len(entries) == 2
	})
	cats := map[string]DLQEntry{}
	for _, e := range entries {
		cats[e.Info.Category] = e
		if e.Info.SourceTopic != kc.EventsTopic || e.Key != "104400000000001" || e.Info.Reason == "" {
			t.Errorf("dead letter %+v: want the events topic as source, the page key and a reason", e)
		}
	}
	if _, ok := cats[dlq.CategoryDecode]; !ok {
		t.Errorf("dead letters %v lack the undecodable record", entries)
	}
	schemaEntry, ok := cats[dlq.CategorySchema]
	if !ok || !strings.Contains(schemaEntry.Info.Field, "mid") {
		t.Fatalf("dead letters %v lack the message without mid (field naming mid)", entries)
	}

	if err := Requeue(ctx, mustClient(t, opts), []DLQEntry{cats[dlq.CategoryDecode]}); err != nil {
		t.Fatal(err)
	}
	back := readAll(t, kc.Brokers, kc.EventsTopic)
	last := back[len(back)-1]
	if !bytes.Equal(last.Value, []byte("not json")) {
		t.Fatalf("last record of the source topic = %q, want the requeued one", last.Value)
	}
	for _, h := range last.Headers {
		if strings.HasPrefix(h.Key, "dlq-") {
			t.Errorf("requeued record kept header %s", h.Key)
		}
	}
	if len(last.Headers) != 1 || last.Headers[0].Key != "trace" {
		t.Errorf("requeued record headers = %v, want the original trace header only", last.Headers)
	}
	// Still undecodable: the processor dead-letters it again, and goes on.
	eventually(t, 30*time.Second, "the requeued record dead-lettered again", func() bool {
		e, err := ListDLQ(ctx, opts, kc.DLQTopic)
		return err == nil && len(e) == 3
	})
	run.stop(t)
}

func mustClient(t *testing.T, opts []kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// A dead letter is only a dead letter once its transaction commits: the processor writes
// them in the transaction of its deltas, and an aborted one (a rebalance, a crash) comes
// again. dlq list, and so dlq requeue, read committed records only, and a transaction
// still open neither shows nor holds the listing up.
func TestListSkipsDeadLettersOfAbortedAndOpenTransactions(t *testing.T) {
	t.Parallel()
	kc := testenv.Kafka(t, 1)
	ctx := testenv.Context(t, time.Minute)
	letter := func(value string) *kgo.Record {
		src := &kgo.Record{Topic: kc.EventsTopic, Partition: 0, Offset: 7, Key: []byte(page1), Value: []byte(value)}
		return dlq.New(src, kc.DLQTopic, dlq.CategoryDecode, errors.New("not json"), time.Now())
	}
	// begin produces value in a new transaction and leaves it open.
	begin := func(value string) *kgo.Client {
		cl := mustClient(t, []kgo.Opt{kgo.SeedBrokers(kc.Brokers...), kgo.TransactionalID("test-dlq-" + testenv.ID())})
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, letter(value)).FirstErr(); err != nil {
			t.Fatalf("produce %s in a transaction: %v", value, err)
		}
		return cl
	}
	for _, tx := range []struct {
		value string
		end   kgo.TransactionEndTry
	}{{"aborted", kgo.TryAbort}, {"committed", kgo.TryCommit}} {
		if err := begin(tx.value).EndTransaction(ctx, tx.end); err != nil {
			t.Fatalf("end the transaction of %s: %v", tx.value, err)
		}
	}
	open := begin("open") // ended at cleanup
	t.Cleanup(func() { _ = open.EndTransaction(context.Background(), kgo.TryAbort) })

	entries, err := ListDLQ(ctx, []kgo.Opt{kgo.SeedBrokers(kc.Brokers...)}, kc.DLQTopic)
	var got []string
	for _, e := range entries {
		got = append(got, string(e.record.Value))
	}
	if err != nil || len(got) != 1 || got[0] != "committed" {
		t.Errorf("ListDLQ after an aborted, a committed and an open transaction = %q (%v), want only the committed dead letter", got, err)
	}
}

// A dead letter cut to fit is not the record any more: requeueing it would append a
// broken event. Requeue refuses and sends nothing, not even the whole ones beside it.
func TestRequeueRefusesTruncatedDeadLetters(t *testing.T) {
	t.Parallel()
	kc := testenv.Kafka(t, 1)
	src := &kgo.Record{Topic: kc.EventsTopic, Key: []byte(page1), Value: bytes.Repeat([]byte("x"), 5000)}
	cut := dlq.New(src, kc.DLQTopic, dlq.CategoryTooLarge, errors.New("too large"), time.Now())
	dlq.Truncate(cut, 1000)
	whole := dlq.New(&kgo.Record{Topic: kc.EventsTopic, Key: []byte(page1), Value: []byte("{}")}, kc.DLQTopic, dlq.CategoryDecode, errors.New("no envelope"), time.Now())
	produce(t, kc.Brokers, []*kgo.Record{cut, whole})
	ctx := testenv.Context(t, time.Minute)
	entries, err := ListDLQ(ctx, kc.Opts(), kc.DLQTopic)
	if err != nil || len(entries) != 2 {
		t.Fatalf("ListDLQ = %d entries, %v; want 2", len(entries), err)
	}
	cl, err := kgo.NewClient(kc.Opts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	err = Requeue(ctx, cl, entries)
	if err == nil || !strings.Contains(err.Error(), "cannot be requeued") {
		t.Fatalf("Requeue of a truncated dead letter = %v, want a refusal", err)
	}
	if got := readAll(t, kc.Brokers, kc.EventsTopic); len(got) != 0 {
		t.Errorf("the events topic holds %d records after a refused requeue, want 0", len(got))
	}
}
