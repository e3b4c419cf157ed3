package deltas

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// FuzzDeltaDecode: whatever the record value, Decode does not panic; what it accepts has
// a page id, encodes, and decodes back to the same delta: the projector and replay read
// what they read, and a delta the projector dead-letters (with a re-encoded copy) keeps
// its content. Seeded with every record of testdata/v1-records.tsv (values written by an
// earlier build). `make fuzz FUZZTIME=5m` runs it longer.
func FuzzDeltaDecode(f *testing.F) {
	file, err := os.Open(recordsFile)
	if err != nil {
		f.Fatal(err)
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Buffer(nil, 16<<20)
	seeds := 0
	for sc.Scan() {
		_, value, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			f.Fatalf("%s: a line without a tab", recordsFile)
		}
		f.Add([]byte(value))
		seeds++
	}
	if err := sc.Err(); err != nil || seeds == 0 {
		f.Fatalf("%s: %d records read: %v", recordsFile, seeds, err)
	}
	f.Add([]byte(`{"page_id":"1","events":0}`))
	f.Add([]byte(`{"page_id":"","events":1}`))
	f.Add([]byte(`{"page_id":"1","conversations":[{"psid":"2","messages":[{"mid":"m_1","content_source":1,"attachments":[ {"a" : "<&>"} ],"reactions":{"2":{"action":"unreact","at":"2024-05-29T16:40:24+02:00"}}}]}],"others":[{"id":"x","type":"t","occurred_at":"2024-05-29T16:40:24.1Z","data":null}],"events":2,"received_ms":[1,2]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Decode(b)
		if err != nil {
			if !reflect.DeepEqual(d, Delta{}) {
				t.Fatalf("Decode(%q) = %+v with error %v, want a zero delta", b, d, err)
			}
			return
		}
		if d.PageID == "" {
			t.Fatalf("Decode(%q) accepted a delta without a page id", b)
		}
		enc, err := Encode(d)
		if err != nil {
			t.Fatalf("Decode(%q) accepted a delta that does not encode: %v", b, err)
		}
		back, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode(%q) accepted a delta whose encoding %s it refuses: %v", b, enc, err)
		}
		if diff := cmp.Diff(d, back, equateEmpty, cmp.Comparer(sameJSON)); diff != "" {
			t.Fatalf("Decode(Encode(Decode(%q))) differs from the first decode (-first +second):\n%s", b, diff)
		}
	})
}

// TestDecodeRefusesWithoutPage: the error of a delta without a page id is ErrNoPage, so
// the reader can tell it from a value that is not JSON.
func TestDecodeRefusesWithoutPage(t *testing.T) {
	for _, in := range []string{`{}`, `{"page_id":""}`, `{"events":3}`} {
		if _, err := Decode([]byte(in)); !errors.Is(err, ErrNoPage) {
			t.Errorf("Decode(%s) error = %v, want ErrNoPage", in, err)
		}
	}
	for _, in := range []string{``, `[`, `"x"`, `{"page_id":1}`} {
		if _, err := Decode([]byte(in)); err == nil || errors.Is(err, ErrNoPage) {
			t.Errorf("Decode(%q) error = %v, want a decoding error", in, err)
		}
	}
}

// equateEmpty is cmpopts.EquateEmpty for everything but raw JSON, which sameJSON compares.
var equateEmpty = cmp.FilterPath(func(p cmp.Path) bool {
	return p.Last().Type() != reflect.TypeFor[json.RawMessage]()
}, cmpopts.EquateEmpty())

// sameJSON compares raw JSON by value: encoding compacts it and escapes <, > and &. An
// absent value is null: Other.Data has no omitempty, so a delta without "data" (nil)
// encodes as null (testdata/fuzz/FuzzDeltaDecode/a0a24f0f83ac731d), the same on the wire.
func sameJSON(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) || isNull(a) && isNull(b) {
		return true
	}
	var va, vb any
	da, db := json.NewDecoder(bytes.NewReader(a)), json.NewDecoder(bytes.NewReader(b))
	da.UseNumber()
	db.UseNumber()
	if da.Decode(&va) != nil || db.Decode(&vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(bytes.TrimSpace(raw)) == "null"
}
