package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	c := newTestCodec(t)
	for _, ex := range examples() {
		t.Run(ex.data.EventType(), func(t *testing.T) {
			b, env, err := Encode(ex.source, testReceived, ex.data)
			if err != nil {
				t.Fatalf("Encode returned error %v, want none", err)
			}
			if err := c.Validate(b); err != nil {
				t.Fatalf("Validate(Encode output) returned %v, want the encoder's output to match its schema", err)
			}
			gotEnv, gotData, err := c.Decode(b)
			if err != nil {
				t.Fatalf("Decode returned error %v, want none", err)
			}
			if diff := cmp.Diff(env, gotEnv); diff != "" {
				t.Errorf("decoded envelope differs from the encoded one (-encoded +decoded):\n%s", diff)
			}
			if diff := cmp.Diff(ex.data.normalize(), gotData); diff != "" {
				t.Errorf("decoded data differs from the normalised input (-input +decoded):\n%s", diff)
			}
			// json.Marshal of an Envelope is the same record as Encode writes.
			m, err := json.Marshal(env)
			if err != nil {
				t.Fatalf("json.Marshal(envelope) returned error %v, want none", err)
			}
			if string(m) != string(b) {
				t.Errorf("json.Marshal(envelope) = %s, want the Encode output %s", m, b)
			}
		})
	}
}

func TestNewFillsTheEnvelope(t *testing.T) {
	local := time.FixedZone("CEST", 2*3600)
	d := Message{PageID: testPage, PSID: testPSID, MID: "mid.$cAAJ", Text: "hi", SentAt: time.Date(2024, 5, 29, 18, 40, 11, 123_456_789, local)}
	received := time.Date(2024, 5, 29, 18, 40, 12, 999_999_999, local)
	env, err := New(SourceWebhook, received, d)
	if err != nil {
		t.Fatalf("New returned error %v, want none", err)
	}
	want := Envelope{
		SpecVersion:     "1.0",
		ID:              ID(d),
		Source:          SourceWebhook,
		Type:            TypeMessage,
		Time:            time.Date(2024, 5, 29, 16, 40, 11, 123_000_000, time.UTC),
		Subject:         "pages/104400000000001/users/7310000000000021",
		DataContentType: "application/json",
		PageID:          testPage,
		ReceivedAt:      time.Date(2024, 5, 29, 16, 40, 12, 999_000_000, time.UTC),
		Data: json.RawMessage(`{"page_id":"104400000000001","psid":"7310000000000021","mid":"m_mid.$cAAJ","raw_mid":"mid.$cAAJ",` +
			`"direction":"inbound","text":"hi","sent_at":"2024-05-29T16:40:11.123456789Z"}`),
	}
	if diff := cmp.Diff(want, env); diff != "" {
		t.Errorf("New(message) returned an unexpected envelope (-want +got):\n%s", diff)
	}
}

func TestNewSetsTheDirectionItsTypeImplies(t *testing.T) {
	tests := []struct {
		data Data
		want Direction
	}{
		{Message{PageID: testPage, PSID: testPSID, MID: "m_1", Direction: Outbound, SentAt: testTime}, Inbound},
		{Echo{PageID: testPage, PSID: testPSID, MID: "m_1", SentAt: testTime}, Outbound},
		{MessageObserved{PageID: testPage, PSID: testPSID, MID: "m_1", Direction: Outbound, SentAt: testTime}, Outbound},
		{MessageObserved{PageID: testPage, PSID: testPSID, MID: "m_1", Direction: Inbound, SentAt: testTime}, Inbound},
	}
	for _, tt := range tests {
		env, err := New(SourceWebhook, testReceived, tt.data)
		if err != nil {
			t.Fatalf("New(%T) returned error %v, want none", tt.data, err)
		}
		var m Message
		if err := json.Unmarshal(env.Data, &m); err != nil {
			t.Fatal(err)
		}
		if m.Direction != tt.want {
			t.Errorf("New(%T with direction %q) wrote direction %q, want %q", tt.data, Message(toMessage(tt.data)).Direction, m.Direction, tt.want)
		}
	}
}

func toMessage(d Data) Message {
	switch m := d.(type) {
	case Message:
		return m
	case Echo:
		return Message(m)
	case MessageObserved:
		return Message(m)
	}
	return Message{}
}

func TestNewDoesNotChangeTheCallersData(t *testing.T) {
	mids := []string{"mid.b", "m_a"}
	if _, err := New(SourceWebhook, testReceived, Delivery{PageID: testPage, PSID: testPSID, MIDs: mids, Watermark: testTime}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"mid.b", "m_a"}; !cmp.Equal(mids, want) {
		t.Errorf("New changed the caller's mids to %v, want them left as %v", mids, want)
	}
}

func TestNewRefusesUnroutableEvents(t *testing.T) {
	tests := []struct {
		name   string
		source string
		data   Data
		field  string
	}{
		{"no data", SourceWebhook, nil, "data"},
		{"no source", "", Read{PageID: testPage, PSID: testPSID, Watermark: testTime}, "source"},
		{"no page id", SourceWebhook, Read{PSID: testPSID, Watermark: testTime}, "data.page_id"},
		{"no event time", SourceWebhook, Read{PageID: testPage, PSID: testPSID}, "time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.source, testReceived, tt.data)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("New returned %v, want a *ValidationError", err)
			}
			if ve.Field != tt.field {
				t.Errorf("New returned an error about field %q (%v), want one about %q", ve.Field, err, tt.field)
			}
		})
	}
}

// goldenDoc returns the golden record of typ as a map, for tests to break.
func goldenDoc(t *testing.T, typ string) map[string]any {
	t.Helper()
	for _, ex := range examples() {
		if ex.data.EventType() == typ {
			b, _, err := Encode(ex.source, testReceived, ex.data)
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatal(err)
			}
			return doc
		}
	}
	t.Fatalf("no example of type %s", typ)
	return nil
}

func TestDecodeRejectsInvalidRecords(t *testing.T) {
	tests := []struct {
		name   string
		typ    string
		breakf func(doc, data map[string]any)
		want   string // the whole Error()
	}{
		{"missing data.mid", TypeMessage,
			func(_, data map[string]any) { delete(data, "mid") },
			`data.mid: missing property`},
		{"mid without the m_ prefix", TypeMessage,
			func(_, data map[string]any) { data["mid"] = "mid.$cAAJ" },
			`data.mid: "mid.$cAAJ" does not match pattern "^m_"`},
		{"empty mid", TypeMessage,
			func(_, data map[string]any) { data["mid"] = "" },
			`data.mid: must not be empty`},
		{"missing attachment type", TypeMessage,
			func(_, data map[string]any) { delete(data["attachments"].([]any)[0].(map[string]any), "type") },
			`data.attachments.0.type: missing property`},
		{"inbound echo", TypeEcho,
			func(_, data map[string]any) { data["direction"] = "inbound" },
			`data.direction: "inbound" is not one of "outbound"`},
		{"num_edit is a string", TypeEdit,
			func(_, data map[string]any) { data["num_edit"] = "1" },
			`data.num_edit: got string, want integer`},
		{"num_edit is a fraction", TypeEdit,
			func(_, data map[string]any) { data["num_edit"] = 1.5 },
			`data.num_edit: got number, want integer`},
		{"empty psid", TypeRead,
			func(_, data map[string]any) { data["psid"] = "" },
			`data.psid: must not be empty`},
		{"reaction action not in the enum", TypeReaction,
			func(_, data map[string]any) { data["action"] = "like" },
			`data.action: "like" is not one of "react", "unreact"`},
		{"optin without psid or user_ref", TypeOptin,
			func(_, data map[string]any) { delete(data, "psid") },
			`data: needs one of "psid", "user_ref"`},
		{"unknown without raw", TypeUnknown,
			func(_, data map[string]any) { delete(data, "raw") },
			`data.raw: missing property`},
		{"bad data time", TypeRead,
			func(_, data map[string]any) { data["watermark"] = "1717000000123" },
			`data.watermark: "1717000000123" is not a valid date-time`},
		{"bad time format", TypeRead,
			func(doc, _ map[string]any) { doc["time"] = "2024-05-29 16:40:11" },
			`time: "2024-05-29 16:40:11" is not a valid date-time`},
		{"unknown type", TypeRead,
			func(doc, _ map[string]any) { doc["type"] = "x" },
			`type: unknown event type "x"`},
		{"a version we do not have", TypeRead,
			func(doc, _ map[string]any) { doc["type"] = "convsync.messenger.read.v2" },
			`type: unsupported version v2 of event type "convsync.messenger.read"`},
		{"pageid differs from data.page_id", TypeRead,
			func(doc, _ map[string]any) { doc["pageid"] = "999" },
			`data.page_id: "104400000000001" does not match pageid "999"`},
		{"missing specversion", TypeRead,
			func(doc, _ map[string]any) { delete(doc, "specversion") },
			`specversion: missing property`},
		{"other specversion", TypeRead,
			func(doc, _ map[string]any) { doc["specversion"] = "0.3" },
			`specversion: "0.3" is not one of "1.0"`},
		{"missing pageid", TypeRead,
			func(doc, _ map[string]any) { delete(doc, "pageid") },
			`pageid: missing property`},
		{"missing data", TypeRead,
			func(doc, _ map[string]any) { delete(doc, "data") },
			`data: missing property`},
		{"data is not an object", TypeRead,
			func(doc, _ map[string]any) { doc["data"] = "{}" },
			`data: got string, want object`},
		{"id is a number", TypeRead,
			func(doc, _ map[string]any) { doc["id"] = 7 },
			`id: got number, want string`},
	}
	c := newTestCodec(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := goldenDoc(t, tt.typ)
			tt.breakf(doc, doc["data"].(map[string]any))
			b, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = c.Decode(b)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Decode(%s) returned %v, want a *ValidationError", b, err)
			}
			if got := ve.Error(); got != tt.want {
				t.Errorf("Decode(record with %s) returned error %q, want %q", tt.name, got, tt.want)
			}
		})
	}
}

func TestDecodeRejectsWhatIsNotAnEnvelope(t *testing.T) {
	tests := []struct {
		in   string
		want string // prefix of Error()
	}{
		{``, "not JSON"},
		{`{"specversion":`, "not JSON"},
		{`{} {}`, "not JSON"},
		{`[]`, "got array, want object"},
		{`null`, "got null, want object"},
	}
	c := newTestCodec(t)
	for _, tt := range tests {
		_, _, err := c.Decode([]byte(tt.in))
		var ve *ValidationError
		if !errors.As(err, &ve) || !strings.HasPrefix(ve.Error(), tt.want) {
			t.Errorf("Decode(%q) returned %v, want a *ValidationError starting %q", tt.in, err, tt.want)
		}
	}
}

func TestDecodeAllowsPropertiesItDoesNotKnow(t *testing.T) {
	doc := goldenDoc(t, TypeMessage)
	doc["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	doc["data"].(map[string]any)["commands"] = []any{map[string]any{"name": "flights"}}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	_, d, err := newTestCodec(t).Decode(b)
	if err != nil {
		t.Fatalf("Decode(record with extra properties) returned %v, want them ignored", err)
	}
	if m, ok := d.(Message); !ok || m.MID != "m_Zk3x9Q" {
		t.Errorf("Decode returned %#v, want the Message m_Zk3x9Q", d)
	}
}

func TestDecodeUpcastsOldVersions(t *testing.T) {
	// A made-up read.v0 whose data called the user "user" instead of "psid".
	const v0 = "convsync.messenger.read.v0"
	comp := jsonschema.NewCompiler()
	if err := comp.AddResource("v0.json", map[string]any{"type": "object", "required": []any{"user"}}); err != nil {
		t.Fatal(err)
	}
	sch, err := comp.Compile("v0.json")
	if err != nil {
		t.Fatal(err)
	}
	c := newTestCodec(t)
	c.data[v0] = sch
	c.upcasters[v0] = upcaster{to: TypeRead, up: func(data json.RawMessage) (json.RawMessage, error) {
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, err
		}
		m["psid"] = m["user"]
		delete(m, "user")
		return json.Marshal(m)
	}}

	doc := goldenDoc(t, TypeRead)
	doc["type"] = v0
	data := doc["data"].(map[string]any)
	data["user"] = data["psid"]
	delete(data, "psid")
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	env, d, err := c.Decode(b)
	if err != nil {
		t.Fatalf("Decode(v0 record) returned %v, want it upcast to v1", err)
	}
	want := Read{PageID: testPage, PSID: testPSID, Watermark: testTime.Add(12 * time.Second)}
	if env.Type != TypeRead || !cmp.Equal(d, Data(want)) {
		t.Errorf("Decode(v0 record) = %s %#v, want %s %#v", env.Type, d, TypeRead, want)
	}

	delete(data, "user")
	b, _ = json.Marshal(doc)
	if _, _, err := c.Decode(b); err == nil || err.Error() != "data.user: missing property" {
		t.Errorf("Decode(invalid v0 record) returned %v, want it checked against the v0 schema", err)
	}
}

func TestValidationErrorWorksWithErrorsAs(t *testing.T) {
	_, _, err := newTestCodec(t).Decode([]byte(`{}`))
	wrapped := errors.Join(errors.New("partition 3 offset 17"), err)
	var ve *ValidationError
	if !errors.As(wrapped, &ve) || ve.Field == "" {
		t.Errorf("errors.As(%v) found %v, want the *ValidationError with its field", wrapped, ve)
	}
}

func BenchmarkEncodeMessage(b *testing.B) {
	d := examples()[0].data
	enc, _, _ := Encode(SourceWebhook, testReceived, d)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Encode(SourceWebhook, testReceived, d); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeMessage(b *testing.B) {
	c := newTestCodec(b)
	enc, _, err := Encode(SourceWebhook, testReceived, examples()[0].data)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := c.Decode(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// Invalid UTF-8 in a string becomes U+FFFD, as encoding/json does: raw bytes would
// reach Postgres, which refuses them, and stall the projector's batch.
func TestDecodeReplacesInvalidUTF8(t *testing.T) {
	bad := goldenMessageWith(t, "Is the blue one in stock?", "Is the blue \xff in stock?")
	_, d, err := newTestCodec(t).Decode(bad)
	if err != nil {
		t.Fatalf("Decode(invalid UTF-8) = %v", err)
	}
	if text := d.(Message).Text; text != "Is the blue \ufffd in stock?" {
		t.Fatalf("text = %q, want the invalid byte replaced by U+FFFD", text)
	}
}

// Keys match fields exactly, as the schema validated them: an extra "TEXT" key (allowed,
// as unknown properties are) must not replace the validated "text".
func TestDecodeMatchesKeysExactly(t *testing.T) {
	shadowed := goldenMessageWith(t, `"text":"Is the blue one in stock?",`, `"text":"Is the blue one in stock?","TEXT":"shadow",`)
	_, d, err := newTestCodec(t).Decode(shadowed)
	if err != nil {
		t.Fatalf("Decode = %v", err)
	}
	if text := d.(Message).Text; text != "Is the blue one in stock?" {
		t.Fatalf("text = %q: an unvalidated key of another case replaced it", text)
	}
}

// goldenMessageWith is the golden message event with old replaced by new once.
func goldenMessageWith(t *testing.T, old, new string) []byte {
	t.Helper()
	good, err := os.ReadFile("testdata/convsync.messenger.message.v1.json")
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Replace(good, []byte(old), []byte(new), 1)
	if bytes.Equal(b, good) {
		t.Fatalf("the golden message no longer holds %q: update this test", old)
	}
	return b
}
