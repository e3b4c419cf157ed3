package processor

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/logging"
	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/schemas/dlq"
)

func TestConfigValidateNamesTheVariable(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string // "" for valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"transactional id set", func(c *Config) { c.TransactionalID = "convsync-processor-0" }, ""},
		{"exactly once", func(c *Config) { c.Delivery = ExactlyOnce }, ""},
		{"unknown delivery", func(c *Config) { c.Delivery = "at-most-once" }, "PROCESSOR_DELIVERY"},
		{"no delivery", func(c *Config) { c.Delivery = "" }, "PROCESSOR_DELIVERY"},
		{"no group", func(c *Config) { c.Group = " " }, "PROCESSOR_GROUP"},
		{"spaces around the transactional id", func(c *Config) { c.TransactionalID = " p-1" }, "PROCESSOR_TRANSACTIONAL_ID"},
		{"no records per poll", func(c *Config) { c.MaxPollRecords = 0 }, "PROCESSOR_MAX_POLL_RECORDS"},
		{"too many records per poll", func(c *Config) { c.MaxPollRecords = 1_000_000 }, "PROCESSOR_MAX_POLL_RECORDS"},
		{"transaction timeout too short", func(c *Config) { c.TransactionTimeout = 10 * time.Millisecond }, "PROCESSOR_TRANSACTION_TIMEOUT"},
		{"transaction timeout over the broker's limit", func(c *Config) { c.TransactionTimeout = time.Hour }, "PROCESSOR_TRANSACTION_TIMEOUT"},
		{"deltas too small", func(c *Config) { c.MaxDeltaBytes = 10 }, "PROCESSOR_MAX_DELTA_BYTES"},
		{"deltas over Kafka's limit", func(c *Config) { c.MaxDeltaBytes = 2 << 20 }, "PROCESSOR_MAX_DELTA_BYTES"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Defaults()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v, want an error naming %s", err, tt.want)
			}
			if tt.want == "" {
				return
			}
			// New refuses it too, with the same message, before touching anything.
			if _, nerr := New(c, kafka.Defaults(), newCodec(t), nil, prometheus.NewRegistry(), logging.Discard()); nerr == nil || nerr.Error() != err.Error() {
				t.Errorf("New with an invalid config = %v, want %v", nerr, err)
			}
		})
	}
}

// The rejoin backoff grows while sessions fail one after another, and a session that
// committed a batch starts it again: a rare failure late in a process's life waits
// 100 ms, not the 10 s that earlier ones added up to.
func TestRejoinBackoffStartsAgainAfterProgress(t *testing.T) {
	var b time.Duration
	for range 10 {
		b = rejoinBackoff(b, false)
	}
	if b != maxBackoff {
		t.Fatalf("backoff after 10 failed sessions = %s, want %s", b, maxBackoff)
	}
	if got := rejoinBackoff(b, true); got != minBackoff {
		t.Errorf("backoff after a session that committed a batch = %s, want %s", got, minBackoff)
	}
	if got := rejoinBackoff(minBackoff, false); got != 2*minBackoff {
		t.Errorf("backoff after a second failed session = %s, want %s", got, 2*minBackoff)
	}
}

func TestNewDerivesAUniqueTransactionalID(t *testing.T) {
	cfg := Defaults()
	p := newProcessor(t, cfg, kafka.Defaults(), prometheus.NewRegistry())
	if id := p.TransactionalID(); !strings.HasPrefix(id, cfg.Group+"-") || id == cfg.Group+"-" {
		t.Errorf("default transactional id = %q, want %s-<host>-<pid>", id, cfg.Group)
	}
	cfg.TransactionalID = "proc-7"
	if id := newProcessor(t, cfg, kafka.Defaults(), prometheus.NewRegistry()).TransactionalID(); id != "proc-7" {
		t.Errorf("transactional id with PROCESSOR_TRANSACTIONAL_ID=proc-7 is %q, want proc-7", id)
	}
	if err := p.Ping(context.Background()); err == nil {
		t.Error("Ping before Run = nil, want an error: the processor is not running")
	}
}

// Events of two pages, with a redelivered message, in batches of at most 4 records:
// the committed deltas, merged, are deltas.Fold over all the events; each delta is keyed by its
// page, and a page's deltas share one partition.
func TestProcessorWritesDeltasOfEveryEventOnce(t *testing.T) {
	t.Parallel()
	eachDelivery(t, testProcessorWritesDeltasOfEveryEventOnce)
}

func testProcessorWritesDeltasOfEveryEventOnce(t *testing.T, delivery string) {
	kc := testenv.Kafka(t, 3)
	codec := newCodec(t)
	events := produce(t, kc.Brokers, records(t, kc.EventsTopic, 0, conversationEvents()))
	cfg := testConfig()
	cfg.Delivery = delivery
	cfg.MaxPollRecords = 4
	reg := prometheus.NewRegistry()
	p := newProcessor(t, cfg, kc, reg)
	r := start(t, p)
	adm := admin(t, kc.Brokers)

	eventually(t, time.Minute, "the processor becoming ready", func() bool { return p.Ping(context.Background()) == nil })
	eventually(t, time.Minute, "the processor committing every event's offset", func() bool {
		return caughtUp(adm, cfg.Group, kc.EventsTopic)
	})
	r.stop(t)
	if err := p.Ping(context.Background()); err == nil {
		t.Error("Ping after Run returned = nil, want an error")
	}

	recs := readAll(t, kc.Brokers, kc.DeltasTopic)
	deltas := deltasOf(t, recs)
	checkEachEventOnce(t, deltas, events)
	checkDeltaRecords(t, recs, deltas)
	if diff := diffDeltas(deltas, decodeAll(t, codec, events)); diff != "" {
		t.Errorf("committed deltas merged differ from deltas.Fold over the events (-fold +deltas):\n%s", diff)
	}
	if len(deltas) < 3 {
		t.Errorf("%d deltas for %d events in batches of 4, want several batches' worth: %s", len(deltas), len(events), describe(deltas))
	}
	if got := testutil.ToFloat64(p.m.events.WithLabelValues(outcomeOK)); got != float64(len(events)) {
		t.Errorf("convsync_processor_events_total{outcome=ok} = %v, want %d", got, len(events))
	}
	if got := testutil.ToFloat64(p.m.deltas); got != float64(len(deltas)) {
		t.Errorf("convsync_processor_deltas_total = %v, want the %d deltas written", got, len(deltas))
	}
	if n := testutil.CollectAndCount(reg, "convsync_processor_compaction_ratio", "convsync_processor_batch_duration_seconds"); n != 2 {
		t.Errorf("registry has %d of the compaction and batch histograms, want 2", n)
	}
	if got := testutil.ToFloat64(p.m.txns.WithLabelValues(outcomeCommitted)); got < 2 {
		t.Errorf("convsync_processor_transactions_total{outcome=committed} = %v, want one per batch (several)", got)
	}
}

// A record that is not JSON, one whose message has no mid, and one of an event type
// nobody knows, between good ones of the same page: each reaches the DLQ with its key,
// value and headers, the dlq-* headers and the right reason; the good ones are in the
// deltas; the partition moves on.
func TestPoisonRecordsGoToTheDLQAndThePartitionMovesOn(t *testing.T) {
	t.Parallel()
	kc := testenv.Kafka(t, 3)
	codec := newCodec(t)
	good := records(t, kc.EventsTopic, 0, conversationEvents()[:3]) // all of page1

	corrupt := &kgo.Record{Topic: kc.EventsTopic, Key: []byte(page1), Value: []byte(`{"specversion":"1.0","id":`),
		Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-4bf92f-00f067aa-01")}}}
	var env map[string]any
	if err := json.Unmarshal(good[0].Value, &env); err != nil {
		t.Fatal(err)
	}
	delete(env["data"].(map[string]any), "mid")
	noMID, _ := json.Marshal(env)
	env["type"] = "convsync.messenger.teleport.v1"
	unknownType, _ := json.Marshal(env)
	in := []*kgo.Record{
		good[0], corrupt, good[1],
		{Topic: kc.EventsTopic, Key: []byte(page1), Value: noMID},
		{Topic: kc.EventsTopic, Key: []byte(page1), Value: unknownType},
		good[2],
	}
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
	want := []struct {
		src      *kgo.Record
		category string
		field    string
	}{
		{produced[1], dlq.CategoryDecode, ""},
		{produced[3], dlq.CategorySchema, "data.mid"},
		{produced[4], dlq.CategoryUnknownType, "type"},
	}
	if len(dead) != len(want) {
		t.Fatalf("DLQ holds %d records, want %d", len(dead), len(want))
	}
	byOffset := map[int64]*kgo.Record{}
	for _, r := range dead {
		info, ok := dlq.Read(r)
		if !ok {
			t.Fatalf("DLQ record %s has no readable dlq headers: %v", r.Value, r.Headers)
		}
		byOffset[info.SourceOffset] = r
	}
	for _, w := range want {
		r := byOffset[w.src.Offset]
		if r == nil {
			t.Errorf("the record at offset %d (%s) is not in the DLQ", w.src.Offset, w.category)
			continue
		}
		info, _ := dlq.Read(r)
		if info.SourceTopic != kc.EventsTopic || info.SourcePartition != w.src.Partition || info.Category != w.category ||
			info.Field != w.field || info.Reason == "" || info.Time.IsZero() {
			t.Errorf("DLQ info of the %s record = %+v, want topic %s partition %d, category %s, field %q, a reason and a time",
				w.category, info, kc.EventsTopic, w.src.Partition, w.category, w.field)
		}
		if string(r.Key) != string(w.src.Key) || string(r.Value) != string(w.src.Value) {
			t.Errorf("DLQ record of the %s record has key %q value %q, want them as they were", w.category, r.Key, r.Value)
		}
		if len(w.src.Headers) > 0 && (len(r.Headers) == 0 || r.Headers[0].Key != w.src.Headers[0].Key) {
			t.Errorf("DLQ record of the %s record has headers %v, want the original %v kept", w.category, r.Headers, w.src.Headers)
		}
	}

	deltas := deltasOf(t, readAll(t, kc.Brokers, kc.DeltasTopic))
	if diff := diffDeltas(deltas, decodeAll(t, codec, good)); diff != "" {
		t.Errorf("deltas differ from deltas.Fold over the good events (-fold +deltas):\n%s", diff)
	}
	for _, c := range []string{dlq.CategoryDecode, dlq.CategorySchema, dlq.CategoryUnknownType} {
		if got := testutil.ToFloat64(p.m.dlq.WithLabelValues(kc.EventsTopic, c)); got != 1 {
			t.Errorf("convsync_dlq_records_total{topic=events, reason=%s} = %v, want 1", c, got)
		}
	}
	if got := testutil.ToFloat64(p.m.events.WithLabelValues(outcomeDLQ)); got != 3 {
		t.Errorf("convsync_processor_events_total{outcome=dlq} = %v, want 3", got)
	}
}

// A processor stopped after its first commit, in the middle of the log; more events;
// a new instance of the same group: every event is in exactly one committed delta.
func TestStopMidwayAndRestartLosesAndDuplicatesNothing(t *testing.T) {
	t.Parallel()
	eachDelivery(t, testStopMidwayAndRestartLosesAndDuplicatesNothing)
}

func testStopMidwayAndRestartLosesAndDuplicatesNothing(t *testing.T, delivery string) {
	kc := testenv.Kafka(t, 3)
	codec := newCodec(t)
	data := loadgenEvents(t, 7, 6, 400)
	first := produce(t, kc.Brokers, records(t, kc.EventsTopic, 0, data[:300]))
	cfg := testConfig()
	cfg.Delivery = delivery
	cfg.MaxPollRecords = 5
	adm := admin(t, kc.Brokers)

	p1 := newProcessor(t, cfg, kc, prometheus.NewRegistry())
	r1 := start(t, p1)
	eventually(t, time.Minute, "the first instance committing a transaction", func() bool {
		return testutil.ToFloat64(p1.m.txns.WithLabelValues(outcomeCommitted)) >= 1
	})
	r1.stop(t)
	done := committedOffsets(t, adm, cfg.Group, kc.EventsTopic)
	if done == 0 || done >= int64(len(first)) {
		t.Fatalf("the first instance committed %d of %d offsets, want it stopped in the middle", done, len(first))
	}

	second := produce(t, kc.Brokers, records(t, kc.EventsTopic, len(first), data[300:]))
	p2 := newProcessor(t, cfg, kc, prometheus.NewRegistry())
	r2 := start(t, p2)
	eventually(t, 2*time.Minute, "the second instance committing every event's offset", func() bool {
		return caughtUp(adm, cfg.Group, kc.EventsTopic)
	})
	r2.stop(t)

	all := append(first, second...)
	deltas := deltasOf(t, readAll(t, kc.Brokers, kc.DeltasTopic))
	checkEachEventOnce(t, deltas, all)
	if diff := diffDeltas(deltas, decodeAll(t, codec, all)); diff != "" {
		t.Errorf("committed deltas merged differ from deltas.Fold over the events (-fold +deltas):\n%s", diff)
	}
	t.Logf("first instance: %d of %d offsets; %d deltas in all", done, len(first), len(deltas))
}

func TestRunTwiceIsRefused(t *testing.T) {
	kc := kafka.Defaults()
	kc.Brokers = []string{"127.0.0.1:1"}
	p := newProcessor(t, testConfig(), kc, prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	eventually(t, 10*time.Second, "Run starting", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.started
	})
	if err := p.Run(ctx); err == nil {
		t.Error("a second Run = nil, want an error")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run with no broker reachable, cancelled = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run with no broker reachable did not return within 30s of cancellation")
	}
}
