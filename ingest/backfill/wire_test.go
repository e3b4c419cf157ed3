package backfill

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/convsync/convsync/ingest/graph"
	"github.com/convsync/convsync/schemas"
)

func TestObservedFromGraphMessages(t *testing.T) {
	raws := []json.RawMessage{
		json.RawMessage(`{"id":"m_a","created_time":"2026-01-02T03:04:05+0000","from":{"id":"100","name":"Shop"},"message":"Hello"}`),
		json.RawMessage(`{"id":"m_b","created_time":1767323045,"from":{"id":555,"name":"Ada"},
		 "attachments":{"data":[{"id":"9","mime_type":"image/jpeg","name":"a.jpg","image_data":{"url":"https://x/a.jpg"}}]}}`),
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	want := []schemas.MessageObserved{
		{PageID: "100", PSID: "555", MID: "m_a", Direction: schemas.Outbound, Text: "Hello", SentAt: at},
		{PageID: "100", PSID: "555", MID: "m_b", Direction: schemas.Inbound, SentAt: at,
			Attachments: []schemas.Attachment{{Type: "image", URL: "https://x/a.jpg", Title: "a.jpg", Payload: json.RawMessage(`{"url":"https://x/a.jpg"}`)}}},
	}
	for i, raw := range raws {
		m, err := graph.DecodeMessage(raw)
		if err != nil {
			t.Fatalf("DecodeMessage(%s) error = %v", raw, err)
		}
		if diff := cmp.Diff(want[i], observed("100", "555", m)); diff != "" {
			t.Errorf("observed(message %d) differs (-want +got):\n%s", i, diff)
		}
	}
}
