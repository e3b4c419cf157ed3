package ingest

import (
	"encoding/json"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/convsync/convsync/schemas"
)

var arrival = time.Date(2024, 5, 29, 16, 0, 0, 0, time.UTC)

func ms(n int64) time.Time { return time.UnixMilli(n).UTC() }

func TestParseSpecPayloads(t *testing.T) {
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	tests := []struct {
		payload string
		want    []schemas.Data
	}{
		{"message text", []schemas.Data{schemas.Message{PageID: "104400000000001", PSID: "7310000000000021",
			MID: "m_Zk3x9Q", Text: "Is the blue one in stock?", SentAt: ms(1717000000123)}}},
		{"echo numeric app id", []schemas.Data{schemas.Echo{PageID: "104400000000001", PSID: "7310000000000021",
			MID: "m_Yh2kP0", Text: "Yes, size M left.", AppID: "880000000000007", Metadata: "ticket-4411", SentAt: ms(1717000009001)}}},
		{"delivery without mids or timestamp", []schemas.Data{schemas.Delivery{PageID: "104400000000001",
			PSID: "7310000000000021", Watermark: ms(1717000009500)}}},
		{"read", []schemas.Data{schemas.Read{PageID: "104400000000001", PSID: "7310000000000021", Watermark: ms(1717000010500)}}},
		{"unreact without emoji", []schemas.Data{schemas.Reaction{PageID: "104400000000001", PSID: "7310000000000021",
			MID: "m_Yh2kP0", Action: schemas.Unreact, ReactedAt: ms(1717000013000)}}},
		{"postback string timestamp in seconds", []schemas.Data{schemas.Postback{PageID: "104400000000001",
			PSID: "7310000000000021", MID: "m_pb2", Title: "Talk to us", OccurredAt: time.Unix(1717000015, 0).UTC()}}},
		{"message edit quoted num_edit", []schemas.Data{schemas.Edit{PageID: "104400000000001", PSID: "7310000000000021",
			MID: "m_Zk3x9Q", Text: "Is the green one in stock?", NumEdit: 1, EditedAt: ms(1717000016000)}}},
		{"optin plugin user_ref", []schemas.Data{schemas.Optin{PageID: "104400000000001", UserRef: "ur-5577",
			Ref: "checkbox-1", Raw: raw(`{"ref":"checkbox-1","user_ref":"ur-5577"}`), OccurredAt: ms(1717000019000)}}},
		{"changes conversations seconds", []schemas.Data{schemas.ConversationChanged{PageID: "104400000000001",
			ThreadID: "t_5520000000000031", ChangedAt: time.Unix(1717000050, 0).UTC()}}},
		{"numeric page id, old mid", []schemas.Data{schemas.Message{PageID: "104400000000001", PSID: "7310000000000021",
			MID: "mid.1457764197618:41d102a3e1ae206a38", Text: "old style", SentAt: ms(1717000060000)}}},
		{"unknown kind", []schemas.Data{schemas.Unknown{PageID: "104400000000001", Channel: schemas.ChannelMessaging,
			Kind: "pass_thread_control", OccurredAt: ms(1717000070000),
			Raw: raw(`{"sender":{"id":"7310000000000021"},"recipient":{"id":"104400000000001"},"timestamp":1717000070000,
  "pass_thread_control":{"new_owner_app_id":"123","metadata":"to human"}}`)}}},
		{"unicode escaped text", []schemas.Data{schemas.Message{PageID: "104400000000001", PSID: "7310000000000021",
			MID: "m_uni", Text: "Grüße 👋", SentAt: ms(1717000090000)}}},
	}
	for _, tt := range tests {
		t.Run(tt.payload, func(t *testing.T) {
			got, err := Parse([]byte(specPayloads[tt.payload]), arrival)
			if err != nil {
				t.Fatalf("Parse(%s) error = %v", tt.payload, err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Parse(%s) mismatch (-want +got):\n%s", tt.payload, diff)
			}
		})
	}
}

func TestParseAttachments(t *testing.T) {
	got, err := Parse([]byte(specPayloads["message attachments and sticker twice"]), arrival)
	if err != nil || len(got) != 1 {
		t.Fatalf("Parse() = %v, %v; want one message", got, err)
	}
	m := got[0].(schemas.Message)
	var types []string
	for _, a := range m.Attachments {
		types = append(types, a.Type)
	}
	if diff := cmp.Diff([]string{"sticker", "fallback", "reel", "appointment_booking"}, types); diff != "" {
		t.Errorf("attachment types (the image copy of the sticker dropped) mismatch (-want +got):\n%s", diff)
	}
	if m.Attachments[0].StickerID != "369239263222822" {
		t.Errorf("sticker_id = %q, want the number as a string without float rounding", m.Attachments[0].StickerID)
	}
	if m.Attachments[1].URL != "https://example.com" || m.Attachments[1].Title != "A link" {
		t.Errorf("fallback with null payload = %+v, want url and title lifted from the attachment", m.Attachments[1])
	}
	if m.QuickReplyPayload != "SIZE_M" || m.ReplyToMID != "m_prev" || len(m.Referral) == 0 {
		t.Errorf("message = %+v, want quick reply, reply_to and referral kept", m)
	}
}

func TestParseCountsEveryItem(t *testing.T) {
	tests := []struct {
		payload string
		want    []string // event types in order
	}{
		{"standby message and read", []string{schemas.TypeMessage, schemas.TypeRead, schemas.TypePostback}},
		{"several entries and items", []string{schemas.TypeMessage, schemas.TypeMessage, schemas.TypeMessage}},
		{"delivery with mids", []string{schemas.TypeDelivery}},
		{"referral", []string{schemas.TypeReferral}},
		{"optin marketing", []string{schemas.TypeOptin}},
		{"postback with referral", []string{schemas.TypePostback}},
		{"reaction", []string{schemas.TypeReaction}},
		{"changes thread_key", []string{schemas.TypeConversationChanged}},
		{"echo fallback payload null", []string{schemas.TypeEcho}},
	}
	for _, tt := range tests {
		got, err := Parse([]byte(specPayloads[tt.payload]), arrival)
		if err != nil {
			t.Fatalf("Parse(%s) error = %v", tt.payload, err)
		}
		var types []string
		for _, d := range got {
			types = append(types, d.EventType())
		}
		if diff := cmp.Diff(tt.want, types); diff != "" {
			t.Errorf("Parse(%s) event types mismatch (-want +got):\n%s", tt.payload, diff)
		}
	}
	got, _ := Parse([]byte(specPayloads["standby message and read"]), arrival)
	if m := got[0].(schemas.Message); !m.Standby {
		t.Errorf("standby message has Standby = false, want true")
	}
}

func TestParseRejectsWhatIsNotAPageWebhook(t *testing.T) {
	tests := []struct {
		name, body string
		notPage    bool
	}{
		{"malformed", `{"object":"page","entry":[`, false},
		{"not an object", `[1,2]`, false},
		{"no object", `{"entry":[]}`, false},
		{"instagram", `{"object":"instagram","entry":[]}`, true},
		{"entry not an object", `{"object":"page","entry":[42]}`, false},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(tt.body), arrival)
		var pe *PayloadError
		switch {
		case tt.notPage && !errors.Is(err, ErrNotPage):
			t.Errorf("Parse(%s) error = %v, want ErrNotPage", tt.name, err)
		case !tt.notPage && !errors.As(err, &pe):
			t.Errorf("Parse(%s) error = %v, want a *PayloadError", tt.name, err)
		}
	}
}

func TestParseKeepsInvalidItemsAsUnknown(t *testing.T) {
	body := `{"object":"page","entry":[{"id":"1044","time":1717000000000,"messaging":[
	  {"sender":{"id":"7310"},"recipient":{"id":"1044"},"timestamp":1717000000001,"message":{"text":"no mid"}},
	  {"sender":{"id":"7310"},"recipient":{"id":"1044"},"timestamp":1717000000002,"reaction":{"mid":"m_1","action":"smash"}}]}]}`
	got, err := Parse([]byte(body), arrival)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, d := range got {
		u, ok := d.(schemas.Unknown)
		if !ok {
			t.Fatalf("Parse(invalid items) gave %T, want schemas.Unknown", d)
		}
		kinds = append(kinds, u.Kind)
	}
	sort.Strings(kinds)
	if diff := cmp.Diff([]string{"message", "reaction"}, kinds); diff != "" {
		t.Errorf("unknown kinds mismatch (-want +got):\n%s", diff)
	}
}

func TestParseTimesInSecondsOrMilliseconds(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
	}{
		{"1717000000123", ms(1717000000123)},
		{"1717000000", time.Unix(1717000000, 0).UTC()},
		{`"1717000000"`, time.Unix(1717000000, 0).UTC()},
		{`"1717000000123"`, ms(1717000000123)},
		{`null`, time.Time{}},
		{`"soon"`, time.Time{}},
	}
	for _, tt := range tests {
		var f flexTime
		if err := json.Unmarshal([]byte(tt.in), &f); err != nil {
			t.Fatalf("unmarshal %s: %v", tt.in, err)
		}
		if !f.t().Equal(tt.want) {
			t.Errorf("flexTime(%s) = %v, want %v", tt.in, f.t(), tt.want)
		}
	}
}

// Every event the parser makes from the spec's payloads encodes into an envelope that
// validates against its published schema.
func TestParsedEventsValidateAgainstTheirSchemas(t *testing.T) {
	codec, err := schemas.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range specPayloads {
		evs, err := Parse([]byte(p), arrival)
		if err != nil {
			t.Fatalf("Parse(%s) error = %v", name, err)
		}
		for _, d := range evs {
			b, _, err := schemas.Encode(schemas.SourceWebhook, arrival, d)
			if err != nil {
				t.Fatalf("Encode(%s %T) error = %v", name, d, err)
			}
			if err := codec.Validate(b); err != nil {
				t.Errorf("payload %q: event %s does not validate: %v\n%s", name, d.EventType(), err, b)
			}
		}
	}
}

// Meta delivers a webhook again until it gets a 200, with the same body. When an item
// has no timestamp of its own, its time falls back to the arrival, but its id must not
// follow: a redelivery would be stored as a second postback, referral or opt-in. Its id
// then comes from the item as sent, so equal items give one id and different ones two.
func TestRedeliveryWithoutTimestampsKeepsEventIDs(t *testing.T) {
	body := []byte(`{"object":"page","entry":[{"id":"104400000000001","messaging":[
  {"sender":{"id":"7310000000000021"},"recipient":{"id":"104400000000001"},"postback":{"title":"Buy","payload":"BUY"}},
  {"sender":{"id":"7310000000000021"},"recipient":{"id":"104400000000001"},"postback":{"title":"Help","payload":"HELP"}},
  {"sender":{"id":"7310000000000021"},"recipient":{"id":"104400000000001"},"referral":{"ref":"spring","source":"SHORTLINK","type":"OPEN_THREAD"}},
  {"sender":{"id":"7310000000000021"},"recipient":{"id":"104400000000001"},"optin":{"type":"notification_messages","payload":"deals"}},
  {"sender":{"id":"7310000000000021"},"recipient":{"id":"104400000000001"},"reaction":{"mid":"m_a1","action":"react","reaction":"love","emoji":"\u2764"}}]}]}`)
	later := arrival.Add(17 * time.Minute)
	first, err := Parse(body, arrival)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse(body, later)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 5 || len(again) != 5 {
		t.Fatalf("Parse gave %d and %d events, want 5 each", len(first), len(again))
	}
	seen := map[string]string{}
	for i := range first {
		id, idAgain := schemas.ID(first[i]), schemas.ID(again[i])
		typ := first[i].EventType()
		if id != idAgain {
			t.Errorf("%s without timestamp: id %s at %s but %s at %s, want one id for one item", typ, id, arrival, idAgain, later)
		}
		if other, ok := seen[id]; ok {
			t.Errorf("%s and %s without timestamps share id %s, want different items to have different ids", other, typ, id)
		}
		seen[id] = typ
		if got := first[i].EventTime(); !got.Equal(arrival) {
			t.Errorf("%s without timestamp has time %s, want the arrival %s", typ, got, arrival)
		}
	}
}
