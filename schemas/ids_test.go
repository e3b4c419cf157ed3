package schemas

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestNamespaceIsTheDocumentedUUID(t *testing.T) {
	derived := uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/convsync/convsync/schemas/events"))
	if Namespace != derived.String() || namespace != derived {
		t.Errorf("Namespace = %s (parsed %s), want %s", Namespace, namespace, derived)
	}
}

func TestIDOfAKnownKeyNeverChanges(t *testing.T) {
	// Other producers and every record already in the log depend on this value.
	got := ID(Message{PageID: "104400000000001", MID: "m_Zk3x9Q"})
	if want := "0a033799-058b-56ee-8f6f-137cb51261bd"; got != want {
		t.Errorf("ID(message m_Zk3x9Q of page 104400000000001) = %s, want %s", got, want)
	}
}

func TestNormalizeMID(t *testing.T) {
	tests := []struct{ in, want string }{
		{"m_Zk3x9Q", "m_Zk3x9Q"},
		{"mid.$cAAJsujCd2ORj", "m_mid.$cAAJsujCd2ORj"},
		{"mid.1457764197618:41d102a3e1ae206a38", "m_mid.1457764197618:41d102a3e1ae206a38"},
		{"m_", "m_"},
		{"M_abc", "m_M_abc"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := NormalizeMID(tt.in); got != tt.want {
			t.Errorf("NormalizeMID(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSameFactSameID(t *testing.T) {
	at := testTime
	tests := []struct {
		name string
		a, b Data
	}{
		{"a webhook message and its backfill, old mid without m_",
			Message{PageID: testPage, PSID: testPSID, MID: "mid.$cAAJ", Text: "hi", SentAt: at},
			MessageObserved{PageID: testPage, PSID: testPSID, MID: "m_mid.$cAAJ", Direction: Inbound, SentAt: at.Add(time.Second)}},
		{"an echo and the backfill of the same page message",
			Echo{PageID: testPage, PSID: testPSID, MID: "m_Yh2kP0", AppID: "263902037430900", SentAt: at},
			MessageObserved{PageID: testPage, PSID: testPSID, MID: "m_Yh2kP0", Direction: Outbound, Text: "Yes", SentAt: at}},
		{"a message from messaging[] and its standby copy",
			Message{PageID: testPage, PSID: testPSID, MID: "m_1", SentAt: at},
			Message{PageID: testPage, PSID: testPSID, MID: "m_1", Standby: true, SentAt: at}},
		{"a delivery with mids in another order and form",
			Delivery{PageID: testPage, PSID: testPSID, MIDs: []string{"m_b", "a"}, Watermark: at},
			Delivery{PageID: testPage, PSID: testPSID, MIDs: []string{"m_a", "m_b"}, Watermark: at}},
		{"a watermark in another time zone and below the millisecond",
			Read{PageID: testPage, PSID: testPSID, Watermark: at},
			Read{PageID: testPage, PSID: testPSID, Watermark: at.In(time.FixedZone("X", 3600)).Add(time.Microsecond)}},
		{"an edit redelivered with the mid in the old form",
			Edit{PageID: testPage, PSID: testPSID, MID: "m_x", Text: "new", NumEdit: 2, EditedAt: at},
			Edit{PageID: testPage, PSID: testPSID, MID: "x", Text: "new", NumEdit: 2, EditedAt: at}},
		{"an unknown event, indented or compact",
			Unknown{PageID: testPage, Channel: ChannelMessaging, Raw: json.RawMessage(`{ "a": "<b>" }`), OccurredAt: at},
			Unknown{PageID: testPage, Channel: ChannelStandby, Raw: json.RawMessage(`{"a":"\u003cb\u003e"}`), OccurredAt: at}},
	}
	for _, tt := range tests {
		if ida, idb := ID(tt.a), ID(tt.b); ida != idb {
			t.Errorf("%s: ID(%#v) = %s and ID(%#v) = %s, want the same id", tt.name, tt.a, ida, tt.b, idb)
		}
	}
}

func TestDifferentFactsDifferentIDs(t *testing.T) {
	at := testTime
	tests := []struct {
		name string
		a, b Data
	}{
		{"two messages",
			Message{PageID: testPage, MID: "m_1", SentAt: at},
			Message{PageID: testPage, MID: "m_2", SentAt: at}},
		{"one mid on two pages",
			Message{PageID: testPage, MID: "m_1", SentAt: at},
			Message{PageID: "104400000000002", MID: "m_1", SentAt: at}},
		{"a react and its unreact",
			Reaction{PageID: testPage, PSID: testPSID, MID: "m_1", Action: React, Reaction: "love", ReactedAt: at},
			Reaction{PageID: testPage, PSID: testPSID, MID: "m_1", Action: Unreact, Reaction: "love", ReactedAt: at}},
		{"two edits of one message",
			Edit{PageID: testPage, MID: "m_1", NumEdit: 1, EditedAt: at},
			Edit{PageID: testPage, MID: "m_1", NumEdit: 2, EditedAt: at}},
		{"two read watermarks",
			Read{PageID: testPage, PSID: testPSID, Watermark: at},
			Read{PageID: testPage, PSID: testPSID, Watermark: at.Add(time.Millisecond)}},
		{"deliveries of different mids",
			Delivery{PageID: testPage, PSID: testPSID, MIDs: []string{"m_1"}, Watermark: at},
			Delivery{PageID: testPage, PSID: testPSID, MIDs: []string{"m_1", "m_2"}, Watermark: at}},
		{"two postbacks of different buttons",
			Postback{PageID: testPage, PSID: testPSID, Payload: "A", OccurredAt: at},
			Postback{PageID: testPage, PSID: testPSID, Payload: "B", OccurredAt: at}},
		{"two unknown events",
			Unknown{PageID: testPage, Raw: json.RawMessage(`{"a":1}`), OccurredAt: at},
			Unknown{PageID: testPage, Raw: json.RawMessage(`{"a":2}`), OccurredAt: at}},
		{"two snapshots of one thread",
			ConversationObserved{PageID: testPage, PSID: testPSID, ThreadID: "t_1", UpdatedTime: at, MessageCount: 3},
			ConversationObserved{PageID: testPage, PSID: testPSID, ThreadID: "t_1", UpdatedTime: at, MessageCount: 4}},
	}
	for _, tt := range tests {
		if ida, idb := ID(tt.a), ID(tt.b); ida == idb {
			t.Errorf("%s: ID(%#v) and ID(%#v) are both %s, want different ids", tt.name, tt.a, tt.b, ida)
		}
	}
}

func TestIDSurvivesTheWire(t *testing.T) {
	c := newTestCodec(t)
	for _, ex := range examples() {
		b, env, err := Encode(ex.source, testReceived, ex.data)
		if err != nil {
			t.Fatal(err)
		}
		_, d, err := c.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if ID(ex.data) != env.ID || ID(d) != env.ID {
			t.Errorf("%s: ID before encoding = %s, envelope id = %s, ID after decoding = %s, want all equal",
				ex.data.EventType(), ID(ex.data), env.ID, ID(d))
		}
	}
}

func TestExamplesOfDifferentFactsHaveDistinctIDs(t *testing.T) {
	seen := map[string]string{}
	for _, ex := range examples() {
		typ := ex.data.EventType()
		id := ID(ex.data)
		if other, ok := seen[id]; ok {
			// The echo and the backfilled message are one message: they must collide.
			if !(other == TypeEcho && typ == TypeMessageObserved) {
				t.Errorf("examples of %s and %s share id %s, want distinct ids", other, typ, id)
			}
			continue
		}
		seen[id] = typ
	}
}
