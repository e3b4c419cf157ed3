package readapi

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/convsync/convsync/internal/logging"
)

// FuzzReadAPIQuery parses what a client sends to the paginated routes: the page and
// psid path values, the query (limit, cursor), as the list and the conversation
// routes do (the same checks that a decoded cursor has its key). Whatever it is, nothing panics and a refusal is a 400 (*apiError), never
// an error that would answer 500. What is accepted is what the queries can take: ids
// that validID accepts, a limit in [1, MaxLimit], a cursor with its key, holding nothing
// Postgres refuses in a text parameter (NUL). And a cursor the API emits (encodeCursor of
// a position the read model can hold) decodes back to the same position.
// `make fuzz FUZZTIME=5m` runs it longer.
func FuzzReadAPIQuery(f *testing.F) {
	at := time.Date(2024, 5, 29, 16, 40, 11, 123456000, time.UTC)
	list := encodeCursor(listCursor{At: &at, PSID: "7310000000000021"})
	msgs := encodeCursor(msgCursor{At: &at, MID: "m_Zk3x9Q"})
	f.Add("104400000000001", "", "limit=3&cursor="+list, at.UnixMicro(), "7310000000000021")
	f.Add("104400000000001", "7310000000000021", "cursor="+msgs, at.UnixMicro(), "m_Zk3x9Q")
	f.Add("104400000000001", "", "cursor="+encodeCursor(listCursor{PSID: "s1-p0-u3"}), int64(0), "s1-p0-u3")
	f.Add("bad id", "%C3%A9", "limit=0", int64(-1), "")
	f.Add("1", "", "limit=abc&cursor=!!!", int64(1), "x")
	f.Add("1", "2", "limit=100&cursor=eyJ4IjoxfQ", int64(253402300799999999), "m_\x00")
	f.Add(strings.Repeat("1", 65), "", "limit=+5&limit=7&cursor=e30", int64(-62135596800000000), "\xff")
	a, err := New(Config{Tokens: []string{"fuzz-token-0123456789"}, DefaultLimit: 25, MaxLimit: 100}, nil, nil,
		prometheus.NewRegistry(), logging.Discard())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, page, psid, query string, atMicro int64, key string) {
		// As the list route reads it: no psid.
		var lc listCursor
		r := request(page, "", query)
		_, _, limit, raw, err := a.paged(r, &lc, func() bool { return lc.PSID != "" })
		checkParsed(t, a, r, limit, raw, err)
		if err == nil && raw != "" {
			checkKey(t, r, lc.PSID)
			back := listCursor{}
			if err := decodeCursor(encodeCursor(lc), &back); err != nil || !samePosition(back.At, lc.At) || back.PSID != lc.PSID {
				t.Fatalf("list cursor %+v, re-encoded, decodes to %+v (%v), want the same position", lc, back, err)
			}
		}
		// As the conversation route reads it.
		var mc msgCursor
		r = request(page, psid, query)
		_, _, limit, raw, err = a.paged(r, &mc, func() bool { return mc.MID != "" })
		checkParsed(t, a, r, limit, raw, err)
		if err == nil && raw != "" {
			checkKey(t, r, mc.MID)
		}

		// The cursors the API emits: a position the read model holds (a key Postgres
		// text can hold, a timestamptz in Go's years) decodes to itself.
		if key == "" || !utf8.ValidString(key) || strings.ContainsRune(key, 0) {
			return
		}
		var atp *time.Time
		if ts := time.UnixMicro(atMicro); ts.Year() >= 1 && ts.Year() <= 9999 {
			atp = &ts
		} else if atMicro != 0 {
			return
		}
		q := url.Values{"cursor": {encodeCursor(listCursor{At: atp, PSID: key})}}.Encode()
		var gotL listCursor
		if _, _, _, _, err := a.paged(request("1", "", q), &gotL, func() bool { return gotL.PSID != "" }); err != nil ||
			gotL.PSID != key || !samePosition(gotL.At, atp) {
			t.Fatalf("list cursor of (%v, %q) decodes to %+v (%v), want the same position", atp, key, gotL, err)
		}
		q = url.Values{"cursor": {encodeCursor(msgCursor{At: atp, MID: key})}}.Encode()
		var gotM msgCursor
		if _, _, _, _, err := a.paged(request("1", "2", q), &gotM, func() bool { return gotM.MID != "" }); err != nil ||
			gotM.MID != key || !samePosition(gotM.At, atp) {
			t.Fatalf("message cursor of (%v, %q) decodes to %+v (%v), want the same position", atp, key, gotM, err)
		}
	})
}

func request(page, psid, query string) *http.Request {
	r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/v1/pages/x", RawQuery: query}, Header: http.Header{}}
	r.SetPathValue("page_id", page)
	if psid != "" {
		r.SetPathValue("psid", psid)
	}
	return r
}

func checkParsed(t *testing.T, a *API, r *http.Request, limit int, raw string, err error) {
	t.Helper()
	if err != nil {
		ae, ok := errors.AsType[*apiError](err)
		if !ok || ae.status != http.StatusBadRequest || ae.code != "bad_request" || ae.message == "" {
			t.Fatalf("paged(%q, %q, %q) error %T %v, want a 400 bad_request", r.PathValue("page_id"), r.PathValue("psid"), r.URL.RawQuery, err, err)
		}
		return
	}
	if page, psid := r.PathValue("page_id"), r.PathValue("psid"); !validID(page) || psid != "" && !validID(psid) {
		t.Fatalf("paged accepted page %q psid %q, want ids of 1 to 64 letters, digits, '.', '_' or '-'", page, psid)
	}
	if limit < 1 || limit > a.cfg.MaxLimit {
		t.Fatalf("paged(%q) limit = %d, want 1 to %d", r.URL.RawQuery, limit, a.cfg.MaxLimit)
	}
	if raw != r.URL.Query().Get("cursor") {
		t.Fatalf("paged(%q) raw cursor = %q, want the query's", r.URL.RawQuery, raw)
	}
	if _, err := base64.RawURLEncoding.DecodeString(raw); raw != "" && err != nil {
		t.Fatalf("paged(%q) accepted a cursor that is not base64url: %v", r.URL.RawQuery, err)
	}
}

// checkKey: an accepted cursor's key can be a Postgres text parameter, or the query
// fails and the API answers 500.
func checkKey(t *testing.T, r *http.Request, key string) {
	t.Helper()
	if key == "" || strings.ContainsRune(key, 0) || !utf8.ValidString(key) {
		t.Fatalf("paged(%q) accepted a cursor with key %q, which Postgres text cannot hold", r.URL.RawQuery, key)
	}
}

func samePosition(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}
