package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// FuzzCodecDecode: whatever the record, Decode does not panic and every error is a
// *ValidationError (the processor dead-letters on it, and only on it). A record it
// accepts re-encodes, with its envelope's source and receivedat, to a record Decode
// accepts again, with the same data as normalised and the same routing attributes: what
// the processor reads it can also write. Seeded with every golden file, the previous
// versions' files and the examples. `make fuzz FUZZTIME=5m` runs it longer.
func FuzzCodecDecode(f *testing.F) {
	for _, pattern := range []string{"testdata/*.json", "testdata/previous/*.json"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, name := range files {
			b, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	for _, ex := range examples() {
		b, _, err := Encode(ex.source, testReceived, ex.data)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"specversion":"1.0","type":"convsync.messenger.message.v2","data":{}}`))
	codec, err := NewCodec()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		env, d, err := codec.Decode(b)
		if err != nil {
			if ve, ok := errors.AsType[*ValidationError](err); !ok || ve.Error() == "" {
				t.Fatalf("Decode(%q) error %T %v, want a *ValidationError with a reason", b, err, err)
			}
			if d != nil {
				t.Fatalf("Decode(%q) = %v with error %v, want no data", b, d, err)
			}
			return
		}
		if d == nil || reflect.TypeOf(d).Kind() == reflect.Pointer {
			t.Fatalf("Decode(%q) data = %T, want a value of an event type", b, d)
		}
		if d.EventType() != env.Type || d.EventPageID() != env.PageID {
			t.Fatalf("Decode(%q) = type %s page %s with data of type %s page %s, want them equal", b, env.Type, env.PageID, d.EventType(), d.EventPageID())
		}
		again, _, err := Encode(env.Source, env.ReceivedAt, d)
		if err != nil {
			t.Fatalf("Decode(%q) accepted %s data that does not encode: %v", b, d.EventType(), err)
		}
		env2, d2, err := codec.Decode(again)
		if err != nil {
			t.Fatalf("Decode(%q) accepted it, but not its re-encoding %s: %v", b, again, err)
		}
		n := d.normalize()
		if diff := cmp.Diff(n, d2, equateEmpty, cmp.Comparer(sameJSON)); diff != "" {
			t.Fatalf("Decode(Encode(Decode(%q))) data differs from the first decode's, normalised (-want +got):\n%s", b, diff)
		}
		want := Envelope{SpecVersion: SpecVersion, Source: env.Source, Type: env.Type, PageID: env.PageID,
			Time: n.EventTime().UTC().Truncate(time.Millisecond), ReceivedAt: env.ReceivedAt.UTC().Truncate(time.Millisecond),
			Subject: n.EventSubject(), DataContentType: DataContentType, ID: ID(n)}
		if diff := cmp.Diff(want, env2, cmpopts.IgnoreFields(Envelope{}, "Data")); diff != "" {
			t.Fatalf("Decode(Encode(Decode(%q))) envelope (-want +got):\n%s", b, diff)
		}
	})
}

// equateEmpty is cmpopts.EquateEmpty for everything but raw JSON, which sameJSON compares.
var equateEmpty = cmp.FilterPath(func(p cmp.Path) bool {
	return p.Last().Type() != reflect.TypeFor[json.RawMessage]()
}, cmpopts.EquateEmpty())

// sameJSON compares raw JSON by value: encoding compacts it and escapes <, > and &.
func sameJSON(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) || len(a) == 0 && len(b) == 0 {
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

// TestDecodeRefusesTimesItCannotWrite: found by FuzzCodecDecode. Times that pass the
// date-time format but cannot be written again (a UTC year outside 0 to 9999, Go's zero
// time as the event time) are a *ValidationError naming the field, so the processor
// dead-letters the record instead of folding it and failing to encode its delta.
func TestDecodeRefusesTimesItCannotWrite(t *testing.T) {
	codec, err := NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	golden := func(typ string) string {
		b, err := os.ReadFile(filepath.Join("testdata", typ+".json"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	msg, delivery := golden(TypeMessage), golden(TypeDelivery)
	const sentAt = `"sent_at":"2024-05-29T16:40:11.123Z"`
	tests := []struct {
		name, record, field string // field "" when the record is valid
	}{
		{"event time at Go's zero", strings.Replace(msg, sentAt, `"sent_at":"0001-01-01T00:00:00Z"`, 1), "data.sent_at"},
		{"year -1 in UTC", strings.Replace(msg, sentAt, `"sent_at":"0000-01-01T00:00:00+01:00"`, 1), "data.sent_at"},
		{"year 10000 in UTC", strings.Replace(msg, sentAt, `"sent_at":"9999-12-31T23:30:00-01:00"`, 1), "data.sent_at"},
		{"receivedat in year -1", strings.Replace(msg, `"receivedat":"2024-05-29T16:40:12.373Z"`, `"receivedat":"0000-01-01T00:00:00+00:01"`, 1), "receivedat"},
		{"time in year 10000", strings.Replace(msg, `"time":"2024-05-29T16:40:11.123Z"`, `"time":"9999-12-31T23:59:59-23:00"`, 1), "time"},
		{"watermark at Go's zero", regexp.MustCompile(`"watermark":"[^"]*"`).ReplaceAllString(delivery, `"watermark":"0001-01-01T00:00:00Z"`), "data.watermark"},
		{"year 0 in UTC is writable", strings.Replace(msg, sentAt, `"sent_at":"0000-01-01T00:00:00Z"`, 1), ""},
		{"an hour after Go's zero", strings.Replace(msg, sentAt, `"sent_at":"0001-01-01T01:00:00+01:00"`, 1), "data.sent_at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, d, err := codec.Decode([]byte(tt.record))
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Decode = %v, want it accepted", err)
				}
				if _, _, err := Encode(SourceWebhook, testReceived, d); err != nil {
					t.Fatalf("Decode accepted data that does not encode: %v", err)
				}
				return
			}
			ve, ok := errors.AsType[*ValidationError](err)
			if !ok || ve.Field != tt.field {
				t.Fatalf("Decode error = %v, want a *ValidationError of %s", err, tt.field)
			}
		})
	}
}
