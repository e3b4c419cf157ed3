package graphsim

import (
	"bytes"
	"encoding/json"
	"testing"
)

// marshal writes what encoding/json writes (HTML escaping off), byte for byte.
func TestMarshalMatchesEncodingJSON(t *testing.T) {
	values := []any{
		nil, true, 0, -42, int64(1767323045), 1.5, "",
		"plain", `quote " backslash \ slash /`, "<b>&amp;</b>", "tab\tnew\nline\rcr\bbs\fff",
		"\x00\x01\x1f\x7f", "héllo wörld ✓ 😀", "bad \xff utf8 \xc3", "js \u2028 \u2029 line seps",
		[]string{"a", "b"}, []string(nil), []map[string]any(nil), []any{1, "x", nil, []any{}},
		map[string]any{"b": 1, "a": map[string]any{"z": []map[string]any{{"id": "m_1", "n": int64(2)}}, "é": true}},
		map[string]any{}, map[string]any{"paging": map[string]any{"next": "http://h/v21.0/x?after=QVFI&limit=25"}},
	}
	for _, v := range values {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
		want := bytes.TrimRight(buf.Bytes(), "\n")
		if got := marshal(v); !bytes.Equal(got, want) {
			t.Errorf("marshal(%#v) = %s, want %s", v, got, want)
		}
	}
}

func BenchmarkMarshalListing(b *testing.B) {
	s, err := New(Config{Pages: 1, Conversations: 25, Messages: 20, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	p := s.pages[0]
	q := map[string][]string{"access_token": {p.AccessToken}, "limit": {"25"},
		"fields": {"id,updated_time,message_count,unread_count,snippet,participants,messages.limit(20){id,created_time,from,to,message,attachments}"}}
	fs, _ := parseFields(q["fields"][0])
	v, err := s.conversations(&call{base: "http://h/v21.0/", q: q, page: p}, p, fs)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		marshal(v)
	}
}
