// Package readapi serves the read model over HTTP: a page, its inbox (conversations,
// newest first, cursor pagination) and a conversation with its messages.
//
// Reads are cache-aside: an entry whose version is at least its page's or
// conversation's marker is served from the cache (Redis or memory); otherwise Postgres
// (DATABASE_READ_URL when set, a replica) is read in one repeatable-read snapshot, and
// the result is cached with the version of those rows, only if nothing newer is there.
// Concurrent misses of one key share one query. A cache outage degrades to Postgres,
// never to errors. Responses carry an ETag (304 on If-None-Match) and Cache-Control
// private, so the client's own cache may keep them for a moment but no shared cache (a
// CDN, a proxy) serves one token holder's answers to another. Every route needs a bearer
// token from API_TOKENS; no route ever returns a page's access token.
package readapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/convsync/convsync/internal/cache"
)

// Config is the read API's configuration.
type Config struct {
	Tokens       []string      // API_TOKENS: accepted bearer tokens
	DefaultLimit int           // API_DEFAULT_LIMIT
	MaxLimit     int           // API_MAX_LIMIT
	MaxAge       time.Duration // API_CACHE_MAX_AGE: Cache-Control max-age for the client's cache
	// RefreshMax (API_CACHE_REFRESH_MAX) bounds the entries the read API keeps warm
	// (cache.Config.WarmKeys, set from it where the API runs); 0 keeps none.
	RefreshMax int
}

// Defaults returns the configuration used when nothing is set.
func Defaults() Config {
	return Config{DefaultLimit: 25, MaxLimit: 100, MaxAge: 2 * time.Second, RefreshMax: 10_000}
}

// Validate reports the first invalid value, naming its variable.
func (c Config) Validate() error {
	switch {
	case len(c.Tokens) == 0:
		return errors.New("API_TOKENS is required: comma-separated bearer tokens for the read API")
	case c.MaxLimit < 1 || c.MaxLimit > 1000:
		return fmt.Errorf("API_MAX_LIMIT must be between 1 and 1000, got %d", c.MaxLimit)
	case c.DefaultLimit < 1 || c.DefaultLimit > c.MaxLimit:
		return fmt.Errorf("API_DEFAULT_LIMIT must be between 1 and API_MAX_LIMIT (%d), got %d", c.MaxLimit, c.DefaultLimit)
	case c.MaxAge < 0:
		return fmt.Errorf("API_CACHE_MAX_AGE must not be negative, got %s", c.MaxAge)
	case c.RefreshMax < 0:
		return fmt.Errorf("API_CACHE_REFRESH_MAX must not be negative, got %d", c.RefreshMax)
	}
	for _, t := range c.Tokens {
		if len(t) < 16 {
			return errors.New("API_TOKENS: every token must have at least 16 characters")
		}
	}
	return nil
}

// API is the read API.
type API struct {
	cfg   Config
	db    store
	cache *cache.Cache
	m     *metrics
	log   *slog.Logger
	// Header values every answer carries, built once (a hit is a few microseconds: header
	// keys canonicalised and values allocated on each request were a good part of it).
	cacheControl, vary, jsonType, hit, miss []string
}

// New builds the API over pool (the replica when there is one) and c.
func New(cfg Config, pool *pgxpool.Pool, c *cache.Cache, reg prometheus.Registerer, log *slog.Logger) (*API, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	maxAge := int(cfg.MaxAge.Seconds())
	return &API{cfg: cfg, db: store{pool}, cache: c, m: newMetrics(reg), log: log,
		// private: every answer is for a bearer token's holder, so no shared cache (a CDN,
		// a proxy) may keep it and serve it to another; the client's own cache may.
		cacheControl: []string{fmt.Sprintf("private, max-age=%d, stale-while-revalidate=%d", maxAge, 5*maxAge)},
		vary:         []string{"Authorization"}, jsonType: []string{"application/json"},
		hit: []string{"hit"}, miss: []string{"miss"}}, nil
}

// OpenAPI is the API's OpenAPI 3.1 document, served at /v1/openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// Routes are the API's patterns; the OpenAPI test checks the document against them.
var Routes = []string{
	"GET /v1/pages/{page_id}",
	"GET /v1/pages/{page_id}/conversations",
	"GET /v1/pages/{page_id}/conversations/{psid}",
}

// Register mounts the routes.
func (a *API) Register(mux interface {
	Handle(pattern string, h http.Handler)
}) {
	handlers := []func(*http.Request) (response, error){a.getPage, a.listConversations, a.getConversation}
	for i, route := range Routes {
		mux.Handle(route, a.wrap(route, handlers[i]))
	}
	mux.Handle("GET /v1/openapi.json", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(OpenAPI)
	}))
}

// response is a handler's result: the body and the version it reflects.
type response struct {
	body []byte
	hit  bool
}

// apiError is a JSON error answer.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.message }

func badRequest(msg string) error { return &apiError{http.StatusBadRequest, "bad_request", msg} }

func (a *API) wrap(route string, h func(*http.Request) (response, error)) http.Handler {
	ok, notModified := a.m.requests.WithLabelValues(route, "200"), a.m.requests.WithLabelValues(route, "304")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		status := a.serve(w, r, h)
		switch status {
		case http.StatusOK:
			ok.Observe(time.Since(start).Seconds())
		case http.StatusNotModified:
			notModified.Observe(time.Since(start).Seconds())
		default:
			a.m.requests.WithLabelValues(route, strconv.Itoa(status)).Observe(time.Since(start).Seconds())
		}
	})
}

func (a *API) serve(w http.ResponseWriter, r *http.Request, h func(*http.Request) (response, error)) int {
	if !a.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="convsync"`)
		return writeError(w, &apiError{http.StatusUnauthorized, "unauthorized", "a valid bearer token is required"})
	}
	res, err := h(r)
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			a.log.Error("read api", "path", r.URL.Path, "error", err)
			ae = &apiError{http.StatusInternalServerError, "internal", "the read model is unavailable, retry"}
		}
		return writeError(w, ae)
	}
	sum := sha256.Sum256(res.body)
	etag := `"` + hex.EncodeToString(sum[:12]) + `"`
	hdr := w.Header() // keys in canonical form, values shared: nothing downstream changes them
	hdr["Etag"] = []string{etag}
	hdr["Cache-Control"] = a.cacheControl
	hdr["Vary"] = a.vary
	if res.hit {
		hdr["X-Cache"] = a.hit
	} else {
		hdr["X-Cache"] = a.miss
	}
	if match := r.Header.Get("If-None-Match"); match != "" && etagMatches(match, etag) {
		w.WriteHeader(http.StatusNotModified)
		return http.StatusNotModified
	}
	hdr["Content-Type"] = a.jsonType
	_, _ = w.Write(res.body)
	return http.StatusOK
}

func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

func (a *API) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return false
	}
	valid := 0
	for _, t := range a.cfg.Tokens {
		valid |= subtle.ConstantTimeCompare([]byte(tok), []byte(t))
	}
	return valid == 1
}

func writeError(w http.ResponseWriter, e *apiError) int {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": e.code, "message": e.message, "status": e.status}})
	return e.status
}

// validID reports whether s is an id: Facebook ids are digits; other producers and
// tests use short tokens. 1 to 64 of [A-Za-z0-9_.-].
func validID(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := range len(s) {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}

func (a *API) ids(r *http.Request) (page, psid string, err error) {
	page = r.PathValue("page_id")
	if !validID(page) {
		return "", "", badRequest("page_id must be 1 to 64 letters, digits, '.', '_' or '-'")
	}
	if psid = r.PathValue("psid"); psid != "" && !validID(psid) {
		return "", "", badRequest("psid must be 1 to 64 letters, digits, '.', '_' or '-'")
	}
	return page, psid, nil
}

func (a *API) limit(r *http.Request) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return a.cfg.DefaultLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > a.cfg.MaxLimit {
		return 0, badRequest(fmt.Sprintf("limit must be an integer from 1 to %d", a.cfg.MaxLimit))
	}
	return n, nil
}

func notFound(what string) error {
	return &apiError{http.StatusNotFound, "not_found", what + " not found"}
}

func (a *API) getPage(r *http.Request) (response, error) {
	page, _, err := a.ids(r)
	if err != nil {
		return response{}, err
	}
	k := a.cache.Keys()
	return a.load(r.Context(), k.Entry(page, "page"), k.PageMarker(page), "page", a.db.pageVersion(page), func(ctx context.Context) (any, int64, error) {
		p, err := a.db.page(ctx, page)
		return p, p.Version, err
	})
}

// paged reads what a paginated route takes: the ids, the limit, and the cursor decoded
// into cur (valid reports whether a decoded cursor has its key), raw as given.
func (a *API) paged(r *http.Request, cur any, valid func() bool) (page, psid string, limit int, raw string, err error) {
	if page, psid, err = a.ids(r); err != nil {
		return
	}
	if limit, err = a.limit(r); err != nil {
		return
	}
	if raw = r.URL.Query().Get("cursor"); raw != "" {
		if derr := decodeCursor(raw, cur); derr != nil || !valid() {
			err = badRequest("cursor is not one this API returned")
		}
	}
	return
}

func (a *API) listConversations(r *http.Request) (response, error) {
	var c listCursor
	page, _, limit, raw, err := a.paged(r, &c, func() bool { return c.PSID != "" })
	if err != nil {
		return response{}, err
	}
	var after *listCursor
	if raw != "" {
		after = &c
	}
	k := a.cache.Keys()
	return a.load(r.Context(), k.Entry(page, "list", strconv.Itoa(limit), raw), k.PageMarker(page), "page", a.db.pageVersion(page), func(ctx context.Context) (any, int64, error) {
		return a.db.conversations(ctx, page, after, limit)
	})
}

func (a *API) getConversation(r *http.Request) (response, error) {
	var c msgCursor
	page, psid, limit, raw, err := a.paged(r, &c, func() bool { return c.MID != "" })
	if err != nil {
		return response{}, err
	}
	var after *msgCursor
	if raw != "" {
		after = &c
	}
	k := a.cache.Keys()
	return a.load(r.Context(), k.Entry(page, "conv", psid, strconv.Itoa(limit), raw), k.ConversationMarker(page, psid), "conversation",
		a.db.conversationVersion(page, psid), func(ctx context.Context) (any, int64, error) {
			d, err := a.db.conversation(ctx, page, psid, after, limit)
			return d, d.Conversation.Version, err
		})
}

// load is cache-aside around a query that returns a value and the version of its rows;
// current is that version as committed now, which hits are checked against.
func (a *API) load(ctx context.Context, key, marker, what string, current cache.Current, q func(ctx context.Context) (any, int64, error)) (response, error) {
	e, hit, err := a.cache.Load(ctx, key, marker, current, func(ctx context.Context) (cache.Entry, error) {
		v, version, err := q(ctx)
		if err != nil {
			return cache.Entry{}, err
		}
		return entryOf(v, version)
	})
	if errors.Is(err, errNotFound) {
		return response{}, notFound(what)
	}
	if err != nil {
		return response{}, err
	}
	return response{body: e.Value, hit: hit}, nil
}

// listCursor and msgCursor are where the previous page ended; opaque to clients.
type listCursor struct {
	At   *time.Time `json:"t,omitempty"`
	PSID string     `json:"p"`
}

type msgCursor struct {
	At  *time.Time `json:"t,omitempty"`
	MID string     `json:"m"`
}

func encodeCursor(v any) string {
	b, _ := json.Marshal(v) // plain structs: cannot fail
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor decodes a cursor into v, a *listCursor or a *msgCursor. A key holding NUL
// (JSON "\u0000") is refused: Postgres text cannot hold one, so the API never emitted it,
// and as a query parameter it fails the query (SQLSTATE 22021), a 500 for a client's
// mistake.
func decodeCursor(s string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	var key string
	switch c := v.(type) {
	case *listCursor:
		key = c.PSID
	case *msgCursor:
		key = c.MID
	}
	if strings.ContainsRune(key, 0) {
		return errors.New("cursor key holds NUL")
	}
	return nil
}
