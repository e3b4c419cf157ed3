package graph

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/convsync/convsync/internal/graphsim"
)

// FuzzGraphResponse feeds one answer of the Graph API to every decoder of the client:
// the body as a listing page, a conversation, a message (DecodeMessage, what backfill
// reads), a batch answer and its entries, and an error answer of any status; the usage
// headers to parseUsage; the paging.next link to nextPage. Whatever Meta (or a proxy in
// between) sends, nothing panics, errors are what the callers branch on (*APIError for
// every answer that is not 200), what encoding/json decodes is decoded the same (the
// client decodes with sonic), and decoded values keep their invariants: times in UTC,
// usage percentages finite, pauses never negative and never shorter than Meta asked
// for, no access token in a next page's query or in an error. Seeded with the
// simulator's real answers and the samples of docs/meta-platform.md.
// `make fuzz FUZZTIME=5m` runs it longer.
func FuzzGraphResponse(f *testing.F) {
	for _, s := range simAnswers(f) {
		f.Add(s.body, s.status, s.header.Get("X-App-Usage"), s.header.Get("X-Business-Use-Case-Usage"), s.next)
	}
	f.Add([]byte(`{"data":[{"id":"t_5520000000000031","updated_time":"2024-05-29T16:40:11+0000","message_count":14,"unread_count":0,"can_reply":true,"participants":{"data":[{"id":"7310000000000021","name":"Ada K."},{"id":104400000000001,"name":"Blue Shop"}]}}],"paging":{"cursors":{"before":"QVFIUk1","after":"QVFIUl9"},"next":"https://graph.facebook.com/v21.0/104400000000001/conversations?access_token=EAAB123&after=QVFIUl9"}}`),
		200, `{"call_count":28,"total_cputime":25,"total_time":25}`,
		`{"104400000000001":[{"type":"pages","call_count":97,"total_cputime":23,"total_time":23,"estimated_time_to_regain_access":0}]}`,
		"https://graph.facebook.com/v21.0/104400000000001/conversations?access_token=EAAB123&after=QVFIUl9")
	f.Add([]byte(`{"error":{"message":"(#80006) There have been too many messenger api calls","type":"OAuthException","code":80006,"error_subcode":2446079,"fbtrace_id":"AbC","is_transient":false}}`),
		400, `{"call_count":100}`, `{"1":[{"type":"messenger","call_count":100,"estimated_time_to_regain_access":7}]}`, "%zz?access_token=EAAB123")
	f.Add([]byte(`[{"code":200,"headers":[{"name":"X-App-Usage","value":"{\"call_count\":3}"}],"body":"{\"id\":\"m_1\",\"created_time\":1716993611}"},null,{"code":500,"body":"{\"error\":{\"code\":2,\"is_transient\":true}}"}]`),
		200, "", `{"1":[{"estimated_time_to_regain_access":1e12}]}`, "http://h/v21.0/1/messages?limit=2&ACCESS_TOKEN=x#access_token=y")
	f.Add([]byte(`<html>bad gateway</html>`), 502, "nope", "{}", "")

	c, err := New(testConfig("http://127.0.0.1:1"), nil, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, status int, appUsage, bucUsage, next string) {
		checkListing(t, body)
		checkConversation(t, body)
		checkMessage(t, body)
		checkBatch(t, body)
		h := http.Header{}
		if appUsage != "" {
			h.Set("X-App-Usage", appUsage)
			h.Set("X-Page-Usage", appUsage)
		}
		if bucUsage != "" {
			h.Set("X-Business-Use-Case-Usage", bucUsage)
		}
		checkUsage(t, c, h)
		e := decodeError(status, h, body)
		checkAPIError(t, e, status, body)
		checkNextPage(t, next)
	})
}

func checkListing(t *testing.T, body []byte) {
	var p struct {
		Data   []json.RawMessage `json:"data"`
		Paging struct {
			Next string `json:"next"`
		} `json:"paging"`
	}
	if json.Unmarshal(body, &p) != nil {
		return
	}
	for _, raw := range p.Data {
		checkConversation(t, raw)
		checkMessage(t, raw)
	}
	checkNextPage(t, p.Paging.Next)
}

func checkConversation(t *testing.T, raw []byte) {
	c, err := decodeConversation(raw)
	var std wireConversation
	stdErr := json.Unmarshal(raw, &std)
	if err != nil {
		if c.ID != "" || c.Expanded || !strings.HasPrefix(err.Error(), "decode ") {
			t.Fatalf("decodeConversation(%q) = %+v, %v; want a zero conversation and a decode error", raw, c, err)
		}
		if stdErr == nil {
			t.Fatalf("decodeConversation(%q) error = %v, but encoding/json decodes it", raw, err)
		}
		return
	}
	if stdErr == nil { // sonic may accept more than encoding/json, never decode differently
		if diff := cmp.Diff(std.conversation(), c, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("decodeConversation(%q) differs from encoding/json's decoding (-std +got):\n%s", raw, diff)
		}
	}
	checkUTC(t, "conversation updated_time", raw, c.UpdatedTime)
	if !c.Expanded && len(c.Messages) > 0 {
		t.Fatalf("decodeConversation(%q) has %d messages but Expanded is false", raw, len(c.Messages))
	}
	for _, m := range c.Messages {
		checkUTC(t, "nested message created_time", raw, m.CreatedTime)
	}
}

func checkMessage(t *testing.T, raw []byte) {
	m, err := DecodeMessage(raw)
	var std wireMessage
	stdErr := json.Unmarshal(raw, &std)
	if err != nil {
		if m.ID != "" || !strings.HasPrefix(err.Error(), "decode message") {
			t.Fatalf("DecodeMessage(%q) = %+v, %v; want a zero message and a decode error", raw, m, err)
		}
		if stdErr == nil {
			t.Fatalf("DecodeMessage(%q) error = %v, but encoding/json decodes it", raw, err)
		}
		return
	}
	if stdErr == nil {
		if diff := cmp.Diff(std.message(), m, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("DecodeMessage(%q) differs from encoding/json's decoding (-std +got):\n%s", raw, diff)
		}
	}
	checkUTC(t, "message created_time", raw, m.CreatedTime)
	if m.From.ID == "" && m.From != (Party{}) {
		t.Fatalf("DecodeMessage(%q).From = %+v: a sender without an id", raw, m.From)
	}
}

func checkUTC(t *testing.T, what string, raw []byte, v time.Time) {
	if !v.IsZero() && v.Location() != time.UTC {
		t.Fatalf("decoding %q: %s %v is in %v, want UTC", raw, what, v, v.Location())
	}
}

func checkBatch(t *testing.T, body []byte) {
	var entries []json.RawMessage
	if json.Unmarshal(body, &entries) != nil {
		checkEntry(t, body) // an entry alone
		return
	}
	for _, raw := range entries {
		checkEntry(t, raw)
	}
}

func checkEntry(t *testing.T, raw []byte) {
	r, err := decodeEntry(raw)
	switch {
	case err != nil:
		if r != nil {
			t.Fatalf("decodeEntry(%q) = %+v with error %v, want no result", raw, r, err)
		}
		return
	case r == nil:
		if string(raw) != "null" {
			t.Fatalf("decodeEntry(%q) = nil, nil; only null is an incomplete operation", raw)
		}
		return
	}
	if r.Body != nil && !json.Valid(r.Body) {
		t.Fatalf("decodeEntry(%q).Body = %q, not JSON", raw, r.Body)
	}
	if r.Code == http.StatusOK {
		if r.Err != nil {
			t.Fatalf("decodeEntry(%q): code 200 with error %v", raw, r.Err)
		}
		return
	}
	e, ok := errors.AsType[*APIError](r.Err)
	if !ok {
		t.Fatalf("decodeEntry(%q): code %d with error %T %v, want an *APIError", raw, r.Code, r.Err, r.Err)
	}
	checkAPIError(t, e, r.Code, r.Body)
}

func checkAPIError(t *testing.T, e *APIError, status int, body []byte) {
	switch {
	case e == nil:
		t.Fatalf("decodeError(%d, %q) = nil, want an *APIError", status, body)
	case e.HTTPStatus != status:
		t.Fatalf("decodeError(%d, %q).HTTPStatus = %d, want the answer's", status, body, e.HTTPStatus)
	case e.Error() == "":
		t.Fatalf("decodeError(%d, %q) has no text", status, body)
	case e.RegainAfter < 0, !e.RegainGiven && e.RegainAfter != 0:
		t.Fatalf("decodeError(%d, %q) regain %v (given %t), want a duration >= 0, 0 when not given", status, body, e.RegainAfter, e.RegainGiven)
	}
}

// checkUsage: percentages are finite, the regain time is the longest
// estimated_time_to_regain_access given, at most maxRegain, never negative,
// and the pause a percentage gives is between 0 and UsagePause.
func checkUsage(t *testing.T, c *Client, h http.Header) {
	u, ok := parseUsage(h)
	if !ok {
		if u != (usage{}) {
			t.Fatalf("parseUsage(%v) = %+v without ok, want zero", h, u)
		}
		return
	}
	for _, pct := range []float64{u.app, u.scope} {
		if math.IsNaN(pct) || math.IsInf(pct, 0) {
			t.Fatalf("parseUsage(%v) = %+v: a percentage that is not finite", h, u)
		}
		if d := c.slowDown(pct); d < 0 || d > c.cfg.UsagePause {
			t.Fatalf("slowDown(%v) = %v, want between 0 and %v", pct, d, c.cfg.UsagePause)
		}
	}
	if u.regain < 0 || !u.regainGiven && u.regain != 0 {
		t.Fatalf("parseUsage(%v) regain = %v (given %t), want >= 0, 0 when not given", h, u.regain, u.regainGiven)
	}
	var m map[string][]struct {
		Regain *float64 `json:"estimated_time_to_regain_access"`
	}
	if json.Unmarshal([]byte(h.Get("X-Business-Use-Case-Usage")), &m) != nil {
		return
	}
	longest := 0.0
	for _, entries := range m {
		for _, e := range entries {
			if e.Regain != nil {
				longest = max(longest, *e.Regain)
			}
		}
	}
	want := maxRegain // Meta's minutes, up to maxRegain, computed without overflow
	if longest*float64(time.Minute) < float64(maxRegain) {
		want = time.Duration(max(0, longest) * float64(time.Minute))
	}
	if u.regain < want || u.regain > maxRegain {
		t.Fatalf("parseUsage(%v) regain = %v, want the %v minutes Meta asked for, at most %v", h, u.regain, longest, maxRegain)
	}
}

// checkNextPage: a next link never sends an access token on (in the query kept) nor
// shows one (in an error), and its path is relative to BaseURL.
func checkNextPage(t *testing.T, next string) {
	path, q, err := nextPage(next)
	if err != nil {
		msg, redacted := err.Error(), redactURL(next)
		for _, s := range secretValues(next) {
			if strings.Contains(msg, s) && !strings.Contains(redacted, s) {
				t.Fatalf("nextPage(%q) error %q shows the secret %q", next, msg, s)
			}
		}
		return
	}
	if q.Has("access_token") {
		t.Fatalf("nextPage(%q) query %v keeps access_token", next, q)
	}
	if strings.HasPrefix(path, "/") {
		t.Fatalf("nextPage(%q) path = %q, want it relative to the version root", next, path)
	}
}

// secretValue finds the values secretParams redacts.
var secretValue = regexp.MustCompile(`(?i)(?:^|[?&#;])(?:access_token|appsecret_proof)=([^&#;]{4,})`)

func secretValues(link string) []string {
	var out []string
	for _, m := range secretValue.FindAllStringSubmatch(link, -1) {
		out = append(out, m[1])
	}
	return out
}

// simAnswer is one answer of the simulator, with the next link of a listing.
type simAnswer struct {
	body   []byte
	status int
	header http.Header
	next   string
}

// simAnswers asks the Graph API simulator what the client asks Meta: listings (with the
// messages expansion), a thread's messages, a batch with a failing operation, errors of
// a bad token and a bad path, and answers at the usage limits. Each item of a listing
// is an answer of its own too, and so is each batch entry.
func simAnswers(f *testing.F) []simAnswer {
	f.Helper()
	cfg := graphsim.DefaultConfig()
	cfg.Pages, cfg.Conversations, cfg.Messages = 1, 3, 4
	cfg.PerPageCalls, cfg.PerPageWindow = 3, time.Hour
	cfg.WindowUsage = true // usage headers under the limit too (33%, 66%)
	cfg.AppCalls, cfg.AppWindow = 100, time.Hour
	sim, err := graphsim.New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	defer srv.Close()
	page := sim.Pages()[0]
	base := srv.URL + "/" + cfg.Version + "/"
	var out []simAnswer
	do := func(method, path string, form url.Values, token string) simAnswer {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequest(method, base+path, body)
		if err != nil {
			f.Fatal(err)
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			f.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			f.Fatal(err)
		}
		a := simAnswer{body: b, status: resp.StatusCode, header: resp.Header}
		var p struct {
			Data   []json.RawMessage `json:"data"`
			Paging struct {
				Next string `json:"next"`
			} `json:"paging"`
		}
		if json.Unmarshal(b, &p) == nil {
			a.next = p.Paging.Next
			for _, item := range p.Data {
				out = append(out, simAnswer{body: item, status: http.StatusOK, header: http.Header{}})
			}
		}
		var entries []json.RawMessage
		if json.Unmarshal(b, &entries) == nil {
			for _, e := range entries {
				out = append(out, simAnswer{body: e, status: http.StatusOK, header: http.Header{}})
			}
		}
		out = append(out, a)
		return a
	}
	convs := do(http.MethodGet, page.ID+"/conversations?platform=messenger&limit=2&fields=id,updated_time,message_count,unread_count,snippet,participants,messages.limit(3){id,created_time,from,to,message,attachments}", nil, page.AccessToken)
	var listing struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(convs.body, &listing); err != nil || len(listing.Data) == 0 {
		f.Fatalf("simulator conversations = %d %s (%v), want threads", convs.status, convs.body, err)
	}
	thread := listing.Data[0].ID
	do(http.MethodGet, thread+"/messages?fields=id,created_time,from,to,message,attachments&limit=2", nil, page.AccessToken)
	do(http.MethodGet, page.ID+"/conversations?platform=messenger&limit=1&folder=spam&date_format=U&fields=id,updated_time", nil, page.AccessToken)
	batch := `[{"method":"GET","relative_url":"` + thread + `/messages?fields=id,created_time,message"},{"method":"GET","relative_url":"nothing/here"}]`
	do(http.MethodPost, "", url.Values{"batch": {batch}, "include_headers": {"true"}}, page.AccessToken)
	do(http.MethodGet, page.ID+"/conversations?platform=messenger", nil, "not-a-token")
	do(http.MethodGet, "no/such/edge", nil, page.AccessToken)
	for range 4 { // past PageRate: the usage headers and the rate-limit error
		do(http.MethodGet, page.ID+"/conversations?platform=messenger&limit=1&fields=id", nil, page.AccessToken)
	}
	return out
}

// TestNextPageErrorShowsNoToken: found with FuzzGraphResponse's checkNextPage. A link
// whose token sits where url.Parse reads the port failed with an error quoting the port,
// token and all, though the link in it was redacted.
func TestNextPageErrorShowsNoToken(t *testing.T) {
	for _, next := range []string{
		"https://graph.facebook.com:;access_token=EAABsecret0/v21.0/1/conversations",
		"https://graph.facebook.com:&access_token=EAABsecret0&after=x",
		"https://graph.facebook.com/v21.0/1/%zz?access_token=EAABsecret0",
		"http://[::1%;appsecret_proof=EAABsecret0]/",
	} {
		_, _, err := nextPage(next)
		if err == nil || strings.Contains(err.Error(), "EAABsecret0") {
			t.Errorf("nextPage(%q) error = %v, want an error without the token", next, err)
		}
	}
}

// TestNextPagePathIsRelative: found by FuzzGraphResponse (testdata/fuzz/FuzzGraphResponse/
// e636aad4a4ad769b). A link with slashes after the version ("/v21.0//…") gave a path
// starting with "/", so the request went to "…/v21.0//…".
func TestNextPagePathIsRelative(t *testing.T) {
	tests := []struct{ next, path string }{
		{"https://graph.facebook.com/v21.0/1/conversations?after=x", "1/conversations"},
		{"https://graph.facebook.com/v21.0//1/conversations?after=x", "1/conversations"},
		{"https://graph.facebook.com//v21.0///1/messages", "1/messages"},
		{"https://graph.facebook.com/v21.0//", ""},
	}
	for _, tt := range tests {
		if path, _, err := nextPage(tt.next); err != nil || path != tt.path {
			t.Errorf("nextPage(%q) path = %q (%v), want %q", tt.next, path, err, tt.path)
		}
	}
}
