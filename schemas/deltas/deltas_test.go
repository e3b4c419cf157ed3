package deltas

import (
	"bufio"
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/convsync/convsync/schemas"
)

// recordsFile holds delta records as the processor wrote them before the contract moved
// to schemas/deltas (key, a tab, the value; one per line): the fold of every golden event
// of ../testdata, then of a load generator mix and of a small conversation. Every build
// must still decode them. Never regenerate it: add a file for a new version instead.
const recordsFile = "testdata/v1-records.tsv"

type record struct{ key, value string }

func readRecords(t *testing.T) []record {
	t.Helper()
	f, err := os.Open(recordsFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []record
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			t.Fatalf("%s: line %q has no tab", recordsFile, sc.Text())
		}
		out = append(out, record{k, v})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) < 3 {
		t.Fatalf("%s holds %d records, want the fold of the golden events and more", recordsFile, len(out))
	}
	return out
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(SchemaJSON))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource("delta.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("delta.json")
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

func validate(t *testing.T, sch *jsonschema.Schema, b []byte) error {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return err
	}
	return sch.Validate(v)
}

func TestRecordsOfEarlierBuildsDecodeAndMatchTheSchema(t *testing.T) {
	sch := compileSchema(t)
	for i, r := range readRecords(t) {
		d, err := Decode([]byte(r.value))
		if err != nil {
			t.Fatalf("Decode(record %d) returned error %v, want none", i, err)
		}
		if d.PageID != r.key || d.Events == 0 || len(d.Conversations) == 0 {
			t.Errorf("record %d decodes to page %q with %d events and %d conversations, want page %q (the key) and some of each",
				i, d.PageID, d.Events, len(d.Conversations), r.key)
		}
		again, err := Encode(d)
		if err != nil {
			t.Fatal(err)
		}
		if string(again) != r.value {
			t.Errorf("Encode(Decode(record %d)) differs from the record (-old +now):\n%s", i, cmp.Diff(r.value, string(again)))
		}
		if err := validate(t, sch, []byte(r.value)); err != nil {
			t.Errorf("record %d does not match json/convsync.deltas.v1.json: %v", i, err)
		}
	}
}

// goldenEvents decodes every golden event of ../testdata.
func goldenEvents(t *testing.T) []Event {
	t.Helper()
	codec, err := schemas.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join("..", "testdata", "convsync.*.json"))
	if err != nil || len(files) < 14 {
		t.Fatalf("golden events: %d files, %v; want one per type", len(files), err)
	}
	var out []Event
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		env, data, err := codec.Decode(b)
		if err != nil {
			t.Fatalf("decode %s: %v", f, err)
		}
		out = append(out, Event{Env: env, Data: data})
	}
	return out
}

// The fold of one event of every type is the first record written by the earlier build:
// a change of a merge rule or of the encoding shows here.
func TestFoldOfTheGoldenEventsIsUnchanged(t *testing.T) {
	ds := Fold(goldenEvents(t))
	if len(ds) != 1 {
		t.Fatalf("Fold(golden events) = %d deltas, want 1 (one page)", len(ds))
	}
	b, err := Encode(ds[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := readRecords(t)[0].value; string(b) != want {
		t.Errorf("Encode(Fold(golden events)) differs from %s line 1 (-old +now):\n%s", recordsFile, cmp.Diff(want, string(b)))
	}
}

func TestFoldIgnoresOrderAndDuplicates(t *testing.T) {
	events := goldenEvents(t)
	want := Fold(events)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 50 {
		in := append([]Event(nil), events...)
		for range rng.IntN(len(events)) {
			in = append(in, events[rng.IntN(len(events))])
		}
		rng.Shuffle(len(in), func(a, b int) { in[a], in[b] = in[b], in[a] })
		got := Fold(in)
		// Events and ReceivedMS count deliveries, not facts.
		if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(Delta{}, "Events", "ReceivedMS")); diff != "" {
			t.Fatalf("permutation %d: Fold differs from the fold in order (-in order +shuffled):\n%s", i, diff)
		}
	}
}

func TestDecodeRefusesWhatIsNotADelta(t *testing.T) {
	for _, v := range []string{``, `not json`, `[]`, `{}`, `{"page_id":""}`, `{"page_id":7}`} {
		if _, err := Decode([]byte(v)); err == nil {
			t.Errorf("Decode(%q) returned no error, want one", v)
		}
	}
	if _, err := Decode([]byte(`{"events":1}`)); !errors.Is(err, ErrNoPage) {
		t.Errorf("Decode of a delta without page_id returned %v, want ErrNoPage", err)
	}
}

func TestSchemaRefusesBrokenDeltas(t *testing.T) {
	sch := compileSchema(t)
	for _, v := range []string{
		`{"events":1}`,
		`{"page_id":"1","events":1,"conversations":[{"read_watermark":"2024-01-01T00:00:00Z"}]}`,
		`{"page_id":"1","events":1,"conversations":[{"psid":"2","messages":[{"mid":"m_1","content_source":3,"edit_count":0}]}]}`,
		`{"page_id":"1","events":1,"last_synced_at":"yesterday"}`,
	} {
		if err := validate(t, sch, []byte(v)); err == nil {
			t.Errorf("the schema accepts %s, want an error", v)
		}
	}
	if err := validate(t, sch, []byte(`{"page_id":"1","events":0,"future_field":true}`)); err != nil {
		t.Errorf("the schema refuses an unknown property (%v); versions evolve additively, want it allowed", err)
	}
}

func TestHeadersNameTheVersion(t *testing.T) {
	h := Headers()
	got := map[string]string{}
	for _, x := range h {
		got[x.Key] = string(x.Value)
	}
	if got["content-type"] != "application/json" || got["convsync-delta"] != "v1" || len(h) != 2 {
		t.Errorf("Headers() = %v, want content-type: application/json and convsync-delta: v1", got)
	}
	h[0].Value[0] = 'X'
	if string(Headers()[0].Value) != ContentType {
		t.Error("Headers() shares its values between calls, want new ones each time")
	}
}

func TestSplitKeepsEveryPartOnce(t *testing.T) {
	d := Fold(goldenEvents(t))[0]
	if len(d.Conversations) == 0 || len(d.Others) == 0 || d.LastSyncedAt.IsZero() {
		t.Fatal("the golden fold lacks a conversation, an event or a page sync: the test would miss a part")
	}
	parts := Split(d)
	if want := 1 + len(d.Conversations) + len(d.Others); len(parts) != want {
		t.Fatalf("Split(golden fold) = %d parts, want %d (page fields, each conversation, each event)", len(parts), want)
	}
	var back Delta
	for _, p := range parts {
		if p.PageID != d.PageID {
			t.Errorf("a part has page %q, want %q", p.PageID, d.PageID)
		}
		if p.PageName != "" || !p.LastSyncedAt.IsZero() {
			back.PageName, back.PageNameAt, back.LastSyncedAt = p.PageName, p.PageNameAt, p.LastSyncedAt
		}
		back.Conversations = append(back.Conversations, p.Conversations...)
		back.Others = append(back.Others, p.Others...)
		back.Events += p.Events
		back.ReceivedMS = append(back.ReceivedMS, p.ReceivedMS...)
	}
	back.PageID = d.PageID
	if diff := cmp.Diff(d, back); diff != "" {
		t.Errorf("the parts of Split put together differ from the delta (-delta +parts):\n%s", diff)
	}
	one := Delta{PageID: "p", Events: 1, Conversations: []ConversationDelta{{PSID: "u"}}}
	if got := Split(one); len(got) != 1 || !cmp.Equal(got[0], one) {
		t.Errorf("Split(one conversation) = %+v, want the delta itself", got)
	}
}
