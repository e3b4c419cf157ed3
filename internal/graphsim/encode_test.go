package graphsim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
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

// renderMessage writes what marshal wrote of the object renderMessage built before
// (renderMessageObject, kept here as the reference), byte for byte: for every message of
// a data set with attachments, readable or not, every field selection, times in both
// forms.
func TestRenderMessageMatchesTheObject(t *testing.T) {
	s, err := New(Config{Pages: 1, Conversations: 6, Messages: 30, Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	selections := []string{"", "id", "created_time", "id,created_time,from,to,message,attachments,tags",
		"from{id}", "from{name},to{email}", "from{id,name,email}", "from{bogus},to{id}", "from,from{id}", "message,message",
		"attachments{mime_type,image_data{url}}", "tags{name}", "sticker,shares,reply_to,story,reactions,is_unsupported,id"}
	attachments := 0
	for _, sel := range selections {
		fs, err := parseFields(sel)
		if err != nil {
			t.Fatal(err)
		}
		for _, dateU := range []bool{false, true} {
			cl := &call{dateU: dateU}
			for _, c := range s.pages[0].convs {
				for j := range c.msgs {
					m := c.newest(j)
					attachments += len(m.Attachments)
					readable := j < readableRecent
					got, err := s.renderMessage(cl, c, m, readable, fs)
					if err != nil {
						t.Fatalf("renderMessage(%s, fields %q) error = %v", m.ID, sel, err)
					}
					want := marshal(renderMessageObject(cl, c, m, readable, fs))
					if !bytes.Equal(got, want) {
						t.Fatalf("renderMessage(%s, fields %q, readable %t, date_format=U %t) = %s, want %s", m.ID, sel, readable, dateU, got, want)
					}
				}
			}
		}
	}
	if attachments == 0 {
		t.Error("the data set has no attachment: pick another seed")
	}
	if _, err := s.renderMessage(&call{}, s.pages[0].convs[0], &s.pages[0].convs[0].msgs[0], false, []field{{name: "bogus"}}); err == nil {
		t.Error("renderMessage with an unknown field = nil error, want code 100")
	}
}

// renderMessageObject is how renderMessage built a message before it wrote JSON itself.
func renderMessageObject(cl *call, c *conv, m *Message, readable bool, fs []field) map[string]any {
	if len(fs) == 0 {
		fs = []field{{name: "id"}, {name: "created_time"}}
	}
	user, pg := party(c.user.PSID, c.user.Name), party(c.page.ID, c.page.Name)
	from, to := user, pg
	if !m.Inbound {
		from, to = pg, user
	}
	out := map[string]any{"id": m.ID}
	for _, f := range fs {
		var v any
		switch f.name {
		case "id":
			continue
		case "created_time":
			out[f.name] = cl.time(m.CreatedTime)
			continue
		case "from":
			v = project(from, f.sub)
		case "to":
			v = project(map[string]any{"data": []map[string]any{to}}, f.sub)
		case "message":
			v = m.Text
		case "attachments":
			if len(m.Attachments) == 0 {
				continue
			}
			data := make([]map[string]any, len(m.Attachments))
			for i, a := range m.Attachments {
				data[i] = map[string]any{"id": a.ID, "mime_type": a.MimeType, "name": a.Name, "size": a.Size,
					"image_data": map[string]any{"url": a.URL, "preview_url": a.PreviewURL, "width": a.Width,
						"height": a.Height, "max_width": a.Width, "max_height": a.Height}}
			}
			v = project(map[string]any{"data": data}, f.sub)
		case "tags":
			tags := []map[string]any{{"name": "inbox"}, {"name": "source:chat"}}
			if !m.Inbound {
				tags = append(tags, map[string]any{"name": "sent"})
			}
			v = project(map[string]any{"data": tags}, f.sub)
		default:
			continue
		}
		if readable {
			out[f.name] = v
		}
	}
	return out
}

// BenchmarkAnswerListing answers a backfill's conversations call as the handler does,
// rendering and encoding included: 25 threads with their 20 newest messages, the
// fields convsync's backfill asks for, times as Unix seconds.
func BenchmarkAnswerListing(b *testing.B) {
	s, err := New(Config{Pages: 1, Conversations: 25, Messages: 20, Seed: 1, FolderShare: -1})
	if err != nil {
		b.Fatal(err)
	}
	p := s.pages[0]
	q := url.Values{"limit": {"25"}, "platform": {"messenger"}, "date_format": {"U"}, "access_token": {p.AccessToken},
		"fields": {"id,updated_time,message_count,unread_count,snippet,participants,messages.limit(20){id,created_time,from{id},message,attachments}"}}
	b.ReportAllocs()
	for b.Loop() {
		res, err := s.answer(http.MethodGet, p.ID+"/conversations", q, "http://h/v21.0/")
		if err != nil || res.status != http.StatusOK {
			b.Fatalf("answer = %d, %v", res.status, err)
		}
	}
}
