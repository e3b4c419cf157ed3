package readapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/convsync/convsync/internal/cache"
	"github.com/convsync/convsync/internal/logging"
	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/pipelinetest"
	"github.com/convsync/convsync/projector"
	"github.com/convsync/convsync/projector/readapi"
	"github.com/convsync/convsync/schemas/deltas"
)

const token = "test-token-0123456789"

type env struct {
	srv   *httptest.Server
	pool  *pgxpool.Pool
	w     *projector.Writer
	hook  projector.Hook
	c     *cache.Cache
	pages []string
	refs  projector.Rows
}

// setup projects a few random histories into a fresh schema and serves the API over it
// with the given cache store; opts change the cache's configuration.
func setup(t *testing.T, store cache.Store, prefix string, opts ...func(*cache.Config)) *env {
	t.Helper()
	pool, _ := testenv.Postgres(t)
	ccfg := cache.Defaults()
	ccfg.Prefix = prefix
	for _, o := range opts {
		o(&ccfg)
	}
	c := cache.New(store, ccfg, prometheus.NewRegistry(), logging.Discard())
	cfg := readapi.Defaults()
	cfg.Tokens = []string{token}
	api, err := readapi.New(cfg, pool, c, prometheus.NewRegistry(), logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	e := &env{srv: httptest.NewServer(mux), pool: pool, w: projector.NewWriter(pool), hook: readapi.Hook(c), c: c}
	t.Cleanup(e.srv.Close)
	var all []pipelinetest.Event
	for seed := uint64(1); seed <= 3; seed++ {
		evs, err := pipelinetest.History(seed, pipelinetest.HistoryConfig{Pages: 1, Users: 8, Facts: 80, DuplicateRate: 0.1})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, evs...)
	}
	e.apply(t, all)
	e.refs = pipelinetest.Reference(all)
	for _, p := range e.refs.Pages {
		e.pages = append(e.pages, p.PageID)
	}
	return e
}

func (e *env) apply(t *testing.T, evs []pipelinetest.Event) {
	t.Helper()
	in := make([]deltas.Event, len(evs))
	for i, x := range evs {
		in[i] = deltas.Event{Env: x.Env, Data: x.Data}
	}
	var inputs []projector.Input
	for _, d := range deltas.Fold(in) {
		inputs = append(inputs, projector.Input{Delta: d})
	}
	res, err := e.w.Apply(context.Background(), nil, inputs)
	if err != nil {
		t.Fatal(err)
	}
	e.hook(context.Background(), res.Touched)
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (e *env) get(t *testing.T, path string, hdr ...string) reply {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}
}

func TestMissThenHitAndUpdateVisibleOnNextRead(t *testing.T) {
	t.Parallel()
	rc, prefix := testenv.Redis(t)
	e := setup(t, cache.NewRedis(rc, prefix), prefix)
	page := e.pages[0]
	conv := firstConversation(e.refs, page)

	path := "/v1/pages/" + page + "/conversations/" + conv
	first := e.get(t, path)
	if first.status != 200 || first.header.Get("X-Cache") != "miss" {
		t.Fatalf("first GET %s = %d, X-Cache %q; want 200 miss", path, first.status, first.header.Get("X-Cache"))
	}
	second := e.get(t, path)
	if second.status != 200 || second.header.Get("X-Cache") != "hit" || !bytes.Equal(first.body, second.body) {
		t.Fatalf("second GET = %d, X-Cache %q; want 200 hit with the same body", second.status, second.header.Get("X-Cache"))
	}

	// A new message through the projector is visible on the very next read.
	msg := newMessage(page, conv, "m_fresh_1", "just arrived")
	e.apply(t, msg)
	third := e.get(t, path)
	if third.status != 200 || !strings.Contains(string(third.body), "just arrived") {
		t.Fatalf("GET after the projector committed a new message = %d %s; want it to contain the message", third.status, third.body)
	}
	if third.header.Get("X-Cache") != "miss" {
		t.Errorf("GET after an update was a cache %s, want a miss (the marker rose)", third.header.Get("X-Cache"))
	}
	list := e.get(t, "/v1/pages/"+page+"/conversations?limit=1")
	var l readapi.ConversationList
	if err := json.Unmarshal(list.body, &l); err != nil || len(l.Data) != 1 || l.Data[0].PSID != conv {
		t.Errorf("inbox after a new message in %s = %s; want that conversation first", conv, list.body)
	}
}

func newMessage(page, psid, mid, text string) []pipelinetest.Event {
	evs, _ := pipelinetest.Messages(page, psid, mid, text, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	return evs
}

func firstConversation(r projector.Rows, page string) string {
	for _, c := range r.Conversations {
		if c.PageID == page && c.LastMessageMID != nil {
			return c.PSID
		}
	}
	return ""
}

func TestETagGives304(t *testing.T) {
	t.Parallel()
	e := setup(t, cache.NewMemory(1000), "m:")
	path := "/v1/pages/" + e.pages[0]
	r := e.get(t, path)
	etag := r.header.Get("ETag")
	if r.status != 200 || etag == "" || !strings.Contains(r.header.Get("Cache-Control"), "max-age") {
		t.Fatalf("GET %s = %d, ETag %q, Cache-Control %q; want 200 with both", path, r.status, etag, r.header.Get("Cache-Control"))
	}
	if r2 := e.get(t, path, "If-None-Match", etag); r2.status != http.StatusNotModified || len(r2.body) != 0 {
		t.Errorf("GET with If-None-Match of the current ETag = %d (%d bytes), want 304 and no body", r2.status, len(r2.body))
	}
	if r3 := e.get(t, path, "If-None-Match", `"other"`); r3.status != 200 {
		t.Errorf("GET with a stale ETag = %d, want 200", r3.status)
	}
}

// Every route needs a bearer token, so an answer belongs to its token holder: a shared
// cache (a CDN, a corporate proxy) must not keep it and serve it to someone else. Only
// the client's own cache may, for max-age, and it may serve it stale while revalidating.
func TestAnswersAreCachedOnlyPrivately(t *testing.T) {
	t.Parallel()
	e := setup(t, cache.NewMemory(1000), "m:")
	page := e.pages[0]
	for _, path := range []string{"/v1/pages/" + page, "/v1/pages/" + page + "/conversations", "/v1/pages/" + page + "/conversations/" + firstConversation(e.refs, page)} {
		r := e.get(t, path)
		cc := r.header.Get("Cache-Control")
		directives := map[string]bool{}
		for _, d := range strings.Split(cc, ",") {
			directives[strings.TrimSpace(d)] = true
		}
		if r.status != 200 || !directives["private"] || directives["public"] || !directives["max-age=2"] || !directives["stale-while-revalidate=10"] {
			t.Errorf("GET %s = %d with Cache-Control %q, want 200 with private, max-age=2, stale-while-revalidate=10 and never public", path, r.status, cc)
		}
		if r304 := e.get(t, path, "If-None-Match", r.header.Get("ETag")); r304.header.Get("Cache-Control") != cc {
			t.Errorf("GET %s with If-None-Match = %d with Cache-Control %q, want %q as on the 200", path, r304.status, r304.header.Get("Cache-Control"), cc)
		}
	}
}

func TestErrorsAreClearJSON(t *testing.T) {
	t.Parallel()
	e := setup(t, cache.NewMemory(1000), "m:")
	page := e.pages[0]
	tests := []struct {
		path, auth string
		status     int
		code       string
	}{
		{"/v1/pages/" + page, "", 401, "unauthorized"},
		{"/v1/pages/" + page, "Bearer wrong-token-0123456789", 401, "unauthorized"},
		{"/v1/pages/bad%20id", "Bearer " + token, 400, "bad_request"},
		{"/v1/pages/" + strings.Repeat("1", 65), "Bearer " + token, 400, "bad_request"},
		{"/v1/pages/" + page + "/conversations/%C3%A9", "Bearer " + token, 400, "bad_request"},
		{"/v1/pages/" + page + "/conversations?limit=0", "Bearer " + token, 400, "bad_request"},
		{"/v1/pages/" + page + "/conversations?limit=abc", "Bearer " + token, 400, "bad_request"},
		{"/v1/pages/" + page + "/conversations?cursor=!!!", "Bearer " + token, 400, "bad_request"},
		{"/v1/pages/" + page + "/conversations?cursor=eyJ4IjoxfQ", "Bearer " + token, 400, "bad_request"},
		{"/v1/pages/999999999", "Bearer " + token, 404, "not_found"},
		{"/v1/pages/999999999/conversations", "Bearer " + token, 404, "not_found"},
		{"/v1/pages/" + page + "/conversations/nobody", "Bearer " + token, 404, "not_found"},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+tt.path, nil)
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || err != nil || body.Error.Code != tt.code || body.Error.Message == "" {
			t.Errorf("GET %s = %d %+v (%v), want %d with error code %s and a message", tt.path, resp.StatusCode, body, err, tt.status, tt.code)
		}
	}
}

func TestPaginationWalksTheInboxOnce(t *testing.T) {
	t.Parallel()
	e := setup(t, cache.NewMemory(1000), "m:")
	page := e.pages[0]
	var want []string
	rows := append([]projector.ConversationRow(nil), e.refs.Conversations...)
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		switch {
		case a.LastMessageAt == nil || b.LastMessageAt == nil:
			if (a.LastMessageAt == nil) != (b.LastMessageAt == nil) {
				return b.LastMessageAt == nil
			}
		case !a.LastMessageAt.Equal(*b.LastMessageAt):
			return a.LastMessageAt.After(*b.LastMessageAt)
		}
		return a.PSID > b.PSID
	})
	for _, c := range rows {
		if c.PageID == page {
			want = append(want, c.PSID)
		}
	}
	var got []string
	cursor := ""
	for range 100 {
		r := e.get(t, "/v1/pages/"+page+"/conversations?limit=3&cursor="+cursor)
		var l readapi.ConversationList
		if err := json.Unmarshal(r.body, &l); err != nil || r.status != 200 {
			t.Fatalf("list = %d %s", r.status, r.body)
		}
		for _, c := range l.Data {
			got = append(got, c.PSID)
		}
		if cursor = l.Paging.Next; cursor == "" {
			break
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("paging through the inbox gave %v, want %v (newest first, each once)", got, want)
	}
}

func TestTokenIsNeverReturned(t *testing.T) {
	t.Parallel()
	e := setup(t, cache.NewMemory(1000), "m:")
	page := e.pages[0]
	if _, err := e.pool.Exec(context.Background(), `UPDATE facebook_pages SET access_token = 'EAAG-secret-page-token' WHERE page_id = $1`, page); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v1/pages/" + page, "/v1/pages/" + page + "/conversations", "/v1/pages/" + page + "/conversations/" + firstConversation(e.refs, page)} {
		if r := e.get(t, path); strings.Contains(string(r.body), "EAAG") || strings.Contains(string(r.body), "token") {
			t.Errorf("GET %s returned the page token or a token field: %s", path, r.body)
		}
	}
}

// A Redis outage while serving degrades reads to Postgres: answers stay 200.
func TestRedisStoppedKeepsReadsWorking(t *testing.T) {
	t.Parallel()
	srv := testenv.PrivateRedis(t)
	cfg := cache.Defaults()
	cfg.URL = "redis://" + srv.Addr()
	c, closeFn, err := cache.Open(context.Background(), cfg, prometheus.NewRegistry(), logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	pool, _ := testenv.Postgres(t)
	acfg := readapi.Defaults()
	acfg.Tokens = []string{token}
	api, err := readapi.New(acfg, pool, c, prometheus.NewRegistry(), logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	e := &env{srv: httptest.NewServer(mux), pool: pool, w: projector.NewWriter(pool), hook: readapi.Hook(c)}
	defer e.srv.Close()
	evs := newMessage("p-outage", "u1", "m_o1", "hello")
	e.apply(t, evs)
	if r := e.get(t, "/v1/pages/p-outage/conversations/u1"); r.status != 200 {
		t.Fatalf("GET with Redis up = %d", r.status)
	}
	srv.Stop()
	e.apply(t, newMessage("p-outage", "u1", "m_o2", "during the outage"))
	r := e.get(t, "/v1/pages/p-outage/conversations/u1")
	if r.status != 200 || !strings.Contains(string(r.body), "during the outage") {
		t.Fatalf("GET with Redis stopped = %d %s; want 200 with the newest message from Postgres", r.status, r.body)
	}
}

// The OpenAPI document and the handlers agree: every documented route is served and
// every served route documented, and real answers validate against the schemas.
func TestOpenAPIMatchesHandlers(t *testing.T) {
	t.Parallel()
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(readapi.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	sort.Strings(documented)
	routes := append([]string(nil), readapi.Routes...)
	sort.Strings(routes)
	if strings.Join(documented, "\n") != strings.Join(routes, "\n") {
		t.Errorf("documented routes:\n%s\nserved routes:\n%s", strings.Join(documented, "\n"), strings.Join(routes, "\n"))
	}

	c := jsonschema.NewCompiler()
	var raw any
	if err := json.Unmarshal(readapi.OpenAPI, &raw); err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource("openapi.json", raw); err != nil {
		t.Fatal(err)
	}
	schema := func(name string) *jsonschema.Schema {
		s, err := c.Compile("openapi.json#/components/schemas/" + name)
		if err != nil {
			t.Fatalf("compile %s: %v", name, err)
		}
		return s
	}
	e := setup(t, cache.NewMemory(1000), "m:")
	page := e.pages[0]
	checks := []struct{ path, schema string }{
		{"/v1/pages/" + page, "Page"},
		{"/v1/pages/" + page + "/conversations?limit=2", "ConversationList"},
		{"/v1/pages/" + page + "/conversations/" + firstConversation(e.refs, page) + "?limit=2", "ConversationDetail"},
		{"/v1/pages/nope", "Error"},
		{"/v1/pages/" + page + "/conversations?limit=-1", "Error"},
	}
	for _, ch := range checks {
		r := e.get(t, ch.path)
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(r.body))
		if err != nil {
			t.Fatalf("GET %s body is not JSON: %v", ch.path, err)
		}
		if err := schema(ch.schema).Validate(v); err != nil {
			t.Errorf("GET %s does not match schema %s: %v\n%s", ch.path, ch.schema, err, r.body)
		}
	}
}

// With DATABASE_READ_URL set, reads go to the replica: a hot standby streaming from the
// primary serves the API, and a write on the primary shows up once replayed.
func TestReadReplicaServesReads(t *testing.T) {
	t.Parallel()
	primary, schemaURL := testenv.Postgres(t)
	w := projector.NewWriter(primary)
	e := &env{w: w}
	c := cache.New(cache.NewMemory(1000), cache.Defaults(), prometheus.NewRegistry(), logging.Discard())
	e.hook = readapi.Hook(c)
	e.apply(t, newMessage("p-replica", "u1", "m_r1", "written on the primary"))

	replicaURL := testenv.Replica(t, schemaURL)
	replica, err := pgxpool.New(context.Background(), replicaURL)
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close()
	var standby bool
	if err := replica.QueryRow(context.Background(), `SELECT pg_is_in_recovery()`).Scan(&standby); err != nil || !standby {
		t.Fatalf("the read pool's server is in recovery = %v (%v), want a standby", standby, err)
	}
	cfg := readapi.Defaults()
	cfg.Tokens = []string{token}
	api, err := readapi.New(cfg, replica, c, prometheus.NewRegistry(), logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	e.srv = httptest.NewServer(mux)
	defer e.srv.Close()

	if r := e.get(t, "/v1/pages/p-replica/conversations/u1"); r.status != 200 || !strings.Contains(string(r.body), "written on the primary") {
		t.Fatalf("GET from the replica = %d %s; want the primary's message", r.status, r.body)
	}
	e.apply(t, newMessage("p-replica", "u1", "m_r2", "second write"))
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := e.get(t, "/v1/pages/p-replica/conversations/u1")
		if strings.Contains(string(r.body), "second write") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica did not show the second write within 30s: %s", r.body)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}
}

// What the API read is kept warm: the projector's hook only raises markers, and the
// read API's cache rebuilds the entries it served lately whose marker rose, so the read
// right after a write is a hit with the new data; a conversation nobody read is not
// rebuilt.
func TestReadConversationsAreKeptWarmAfterWrites(t *testing.T) {
	t.Parallel()
	rc, prefix := testenv.Redis(t)
	e := setup(t, cache.NewRedis(rc, prefix), prefix, func(c *cache.Config) { c.WarmKeys = 10 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = e.c.Run(ctx) }()
	page := e.pages[0]
	conv, unread := firstConversation(e.refs, page), ""
	for _, c := range e.refs.Conversations {
		if c.PageID == page && c.PSID != conv {
			unread = c.PSID
		}
	}
	if unread == "" {
		t.Fatal("the fixture has one conversation on the page; want two")
	}
	path := "/v1/pages/" + page + "/conversations/" + conv
	e.get(t, path)
	e.apply(t, newMessage(page, unread, "m_cold_1", "nobody reads this"))
	e.apply(t, newMessage(page, conv, "m_warm_1", "kept warm"))
	// The rebuild runs beside the projector: the entry is rebuilt without any reader.
	// Look at the cache itself, so the check does not fill it.
	k := e.c.Keys()
	lim := strconv.Itoa(readapi.Defaults().DefaultLimit)
	key := k.Entry(page, "conv", conv, lim, "")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if en, ok := e.c.Get(context.Background(), key, k.ConversationMarker(page, conv)); ok && strings.Contains(string(en.Value), "kept warm") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the read conversation's new view was not put in the cache within 10s")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
	if r := e.get(t, path); r.status != 200 || r.header.Get("X-Cache") != "hit" || !strings.Contains(string(r.body), "kept warm") {
		t.Fatalf("GET after a write = %d, X-Cache %q; want a hit with the new message", r.status, r.header.Get("X-Cache"))
	}
	if _, ok := e.c.Get(context.Background(), k.Entry(page, "conv", unread, lim, ""), k.ConversationMarker(page, unread)); ok {
		t.Error("a conversation nobody read was put in the cache")
	}
}
