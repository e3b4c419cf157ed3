package projector_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/projector"
	"github.com/convsync/convsync/schemas/deltas"
)

// When the deltas log no longer starts at or before the offset Postgres stored
// (retention deleted deltas the projector never applied, a recreated topic), resuming
// from the new start would silently lose them. The projector refuses: the partition
// stops, a metric and a log line say so, and nothing after the gap is applied.
func TestProjectorRefusesToSkipAGapInTheDeltasLog(t *testing.T) {
	t.Parallel()
	kc := testenv.Kafka(t, 1)
	pool, _ := testenv.Postgres(t)
	ctx := testenv.Context(t, time.Minute)
	const page = "104400000000921"
	at := time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC)
	rec := func(mid string) *kgo.Record {
		b, err := deltas.Encode(deltas.Delta{PageID: page, Events: 1, Conversations: []deltas.ConversationDelta{{PSID: "7300000000000921",
			LastAt: at, LastMID: mid, LastDirection: "inbound",
			Messages: []deltas.MessageDelta{{MID: mid, ContentSource: deltas.SourceWebhook, Direction: "inbound", Text: mid, SentAt: at}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Topic: kc.DeltasTopic, Key: []byte(page), Value: b, Headers: deltas.Headers()}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, rec("m_0"), rec("m_1"), rec("m_2")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// The projector applied offset 0 only; then retention takes offsets 0 to 2.
	cfg := projector.Defaults()
	cfg.Group = "gap-" + testenv.ID()
	if _, err := pool.Exec(ctx, `INSERT INTO projector_offsets (consumer_group, topic, partition, next_offset, updated_at) VALUES ($1, $2, 0, 1, now())`,
		cfg.Group, kc.DeltasTopic); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: kc.DeltasTopic, Partition: 0, At: 3})
	if res, err := adm.DeleteRecords(ctx, offs); err != nil || res.Error() != nil {
		t.Fatalf("delete records up to 3: %v %v", err, res.Error())
	}
	if err := cl.ProduceSync(ctx, rec("m_3")).FirstErr(); err != nil {
		t.Fatal(err)
	}

	var logs testenv.LogBuffer
	reg := prometheus.NewRegistry()
	p, err := projector.New(cfg, kc, pool, nil, nil, reg, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	runInBackground(t, p)

	waitFor(t, 30*time.Second, "the projector reports the gap", func() (bool, string) {
		n, _ := gaugeValue(reg, "convsync_projector_offset_gaps")
		return n == 1 && strings.Contains(logs.String(), "gap"), logs.String()
	})
	var applied int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM messages WHERE page_id = $1`, page).Scan(&applied); err != nil || applied != 0 {
		t.Errorf("messages applied past the gap = %d (error %v), want 0: the projector must not skip it", applied, err)
	}
	var next int64
	if err := pool.QueryRow(ctx, `SELECT next_offset FROM projector_offsets WHERE consumer_group = $1`, cfg.Group).Scan(&next); err != nil || next != 1 {
		t.Errorf("stored next offset = %d (error %v), want 1 still", next, err)
	}
	for _, want := range []string{`"partition":0`, `"stored_offset":1`, `"log_start_offset":3`, "convsync replay"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the gap's log line lacks %s: %s", want, logs.String())
		}
	}
}

// runInBackground runs p until the test ends, then waits for Run to return.
func runInBackground(t *testing.T, p *projector.Projector) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// gaugeValue is the value of the gauge name on reg (summed over its label values).
func gaugeValue(reg *prometheus.Registry, name string) (float64, bool) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, false
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		sum := 0.0
		for _, m := range mf.GetMetric() {
			sum += m.GetGauge().GetValue()
		}
		return sum, true
	}
	return 0, false
}

// Labelled series exist at 0 from the start: every table's rows, and the dead letters of
// each reason the projector writes.
func TestProjectorCountersStartAtZero(t *testing.T) {
	pool, _ := testenv.Postgres(t)
	kc := testenv.Kafka(t, 1)
	reg := prometheus.NewRegistry()
	if _, err := projector.New(projector.Defaults(), kc, pool, nil, nil, reg, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				got[mf.GetName()+"/"+l.GetValue()] = true
			}
		}
	}
	for _, want := range []string{"convsync_projector_rows_total/facebook_pages", "convsync_projector_rows_total/messages",
		"convsync_projector_rows_total/conversations", "convsync_projector_rows_total/conversation_events",
		"convsync_dlq_records_total/refused", "convsync_dlq_records_total/decode"} {
		if !got[want] {
			t.Errorf("a fresh registry lacks %s: it would appear only at its first increment", want)
		}
	}
}
