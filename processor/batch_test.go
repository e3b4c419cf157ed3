package processor

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/schemas/deltas"
	"github.com/convsync/convsync/schemas/dlq"
)

// mutate returns the JSON of a good record's envelope after change.
func mutate(t *testing.T, value []byte, change func(env map[string]any)) []byte {
	t.Helper()
	var env map[string]any
	if err := json.Unmarshal(value, &env); err != nil {
		t.Fatal(err)
	}
	change(env)
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTransformDeadLettersEachKindOfPoisonWithItsReason(t *testing.T) {
	kc := kafka.Defaults()
	p := newProcessor(t, Defaults(), kc, prometheus.NewRegistry())
	good := records(t, kc.EventsTopic, 0, conversationEvents()[:1])[0]
	data := func(env map[string]any) map[string]any { return env["data"].(map[string]any) }
	tests := []struct {
		name     string
		value    []byte
		category string
		field    string
	}{
		{"not JSON", []byte("\x00\x01binary"), dlq.CategoryDecode, ""},
		{"cut short", good.Value[:40], dlq.CategoryDecode, ""},
		{"a JSON array", []byte(`[1,2]`), dlq.CategoryDecode, ""},
		{"JSON without an envelope", []byte(`{"mid":"m_1","text":"hi"}`), dlq.CategoryDecode, "data"},
		{"no type", mutate(t, good.Value, func(e map[string]any) { delete(e, "type") }), dlq.CategoryDecode, "type"},
		{"message without mid", mutate(t, good.Value, func(e map[string]any) { delete(data(e), "mid") }), dlq.CategorySchema, "data.mid"},
		{"time not a date", mutate(t, good.Value, func(e map[string]any) { e["time"] = "yesterday" }), dlq.CategorySchema, "time"},
		{"pageid of another page", mutate(t, good.Value, func(e map[string]any) { e["pageid"] = page2 }), dlq.CategorySchema, "data.page_id"},
		{"unknown type", mutate(t, good.Value, func(e map[string]any) { e["type"] = "convsync.messenger.teleport.v1" }), dlq.CategoryUnknownType, "type"},
		{"newer version of a type", mutate(t, good.Value, func(e map[string]any) { e["type"] = "convsync.messenger.message.v9" }), dlq.CategoryUnknownType, "type"},
	}
	at := time.Date(2026, 3, 2, 8, 0, 0, 250_000_000, time.UTC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &kgo.Record{Topic: kc.EventsTopic, Partition: 2, Offset: 41, Key: []byte(page1), Value: tt.value,
				Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-ab-cd-01")}}}
			out, res, err := p.transform([]*kgo.Record{src}, at)
			if err != nil {
				t.Fatalf("transform = %v, want no error: poison is not an error", err)
			}
			if len(out) != 1 || out[0].Topic != kc.DLQTopic {
				t.Fatalf("transform of %s produced %d records, want 1 on %s", tt.name, len(out), kc.DLQTopic)
			}
			if res.events != 0 || res.dlq[tt.category] != 1 || len(res.dead) != 1 {
				t.Errorf("result = %d events, dead letters %v, want 0 events and one %s", res.events, res.dlq, tt.category)
			}
			info, ok := dlq.Read(out[0])
			want := dlq.Info{Reason: info.Reason, Field: tt.field, Category: tt.category, SourceTopic: kc.EventsTopic,
				SourcePartition: 2, SourceOffset: 41, Time: at}
			if !ok || info != want || info.Reason == "" {
				t.Errorf("dlq.Read = %+v, %v, want %+v with a reason", info, ok, want)
			}
			if string(out[0].Key) != page1 || string(out[0].Value) != string(tt.value) || out[0].Headers[0].Key != "traceparent" {
				t.Errorf("dead letter has key %q, value %q, headers %v; want the original's, original headers first", out[0].Key, out[0].Value, out[0].Headers)
			}
		})
	}
}

// A page whose delta would exceed the limit gets several deltas, each within it; merged
// they are the one delta deltas.Fold makes.
func TestOversizedDeltasAreSplitAndMergeBack(t *testing.T) {
	codec := newCodec(t)
	var data []schemas.Data
	for i := range 60 {
		data = append(data, schemas.Message{PageID: page1, PSID: "7300000000000011", MID: "m_big" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('a'+i/26)),
			Text: strings.Repeat("long message text ", 12), SentAt: t0.Add(time.Duration(i) * time.Second)})
	}
	data = append(data, conversationEvents()...)
	events := decodeAll(t, codec, records(t, "events", 0, data))
	const limit = 4096
	enc, err := encodeDeltas(events, indexes(len(events)), limit)
	if err != nil {
		t.Fatal(err)
	}
	var ds []deltas.Delta
	perPage := map[string]int{}
	for _, e := range enc {
		if len(e.value) > limit && e.events > 1 {
			t.Errorf("delta of page %s with %d events is %d bytes, want at most %d", e.page, e.events, len(e.value), limit)
		}
		var d deltas.Delta
		if err := json.Unmarshal(e.value, &d); err != nil {
			t.Fatal(err)
		}
		if d.Events != e.events || d.PageID != e.page {
			t.Errorf("encoded delta says page %s, %d events; its JSON says %s, %d", e.page, e.events, d.PageID, d.Events)
		}
		ds = append(ds, d)
		perPage[d.PageID]++
	}
	if perPage[page1] < 2 || perPage[page2] != 1 {
		t.Errorf("deltas per page = %v, want page %s split and page %s whole", perPage, page1, page2)
	}
	if diff := diffDeltas(ds, events); diff != "" {
		t.Errorf("split deltas merged differ from deltas.Fold (-fold +split):\n%s", diff)
	}
}
