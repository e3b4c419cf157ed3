// Package graph is convsync's Graph API client for backfills (spec
// docs/meta-platform.md sections 4 to 6).
//
// In: Page and user access tokens from the caller. Out: threads (Conversations), their
// messages (Messages), the Pages of a user token (Accounts), user names (Profiles) and
// raw batch answers (Batch). Answers are decoded leniently (fields convsync does not read
// are skipped) in one pass each; the raw JSON is kept for batch answers only.
//
// Guarantees:
//   - Every call takes a context; HTTP requests in flight are bounded by MaxConcurrency.
//   - Each token (one Page for a Page token) gets a sliding window: at most PageRate
//     calls in any second (PageWindow), each counted from when its answer came back, so
//     however late Meta counts a call it cannot see more; every batch operation counts
//     as one call and no batch request holds more operations than a window allows.
//     Usage headers at or above UsageHigh pause that token before Meta blocks it;
//     rate-limit codes pause it for estimated_time_to_regain_access, else for an
//     exponential backoff with jitter.
//   - Transient failures (HTTP 5xx, codes 1 and 2, is_transient, null batch entries,
//     network errors) are retried with backoff and jitter, at most MaxRetries times.
//   - Token and permission problems (codes 190, 102, 10, 200-299) are never retried and
//     come back as *APIError (IsTokenError), wrapped with the Page or thread they stopped.
//   - Access tokens are sent in the Authorization header or the POST form, never in a URL,
//     and never appear in errors or logs.
package graph

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config is the Graph API client's configuration.
type Config struct {
	BaseURL string        // GRAPH_API_URL: scheme and host, no version
	Version string        // GRAPH_API_VERSION: path prefix, e.g. v21.0
	Timeout time.Duration // GRAPH_API_TIMEOUT: one HTTP attempt
	// MaxConcurrency (GRAPH_API_MAX_CONCURRENCY) bounds the HTTP requests in flight. Meta
	// limits calls per Page token, not requests in flight, so it is as high as the calls
	// a backfill makes at once: two for each Page it reads (backfill.DefaultConcurrency;
	// a Page's window lets two calls go together, and the backfill lists its inbox beside
	// its other folders). Lower, Pages wait for each other's answers and fall behind
	// their own limit.
	MaxConcurrency int
	MaxRetries     int     // GRAPH_API_MAX_RETRIES: retries of one call or batch operation
	PageRate       float64 // GRAPH_API_PAGE_RATE: calls per second per token (Meta: 2 per Page)
	// PageWindow (GRAPH_API_PAGE_WINDOW) is the window PageRate is kept over, read
	// strictly: at most PageRate × PageWindow calls (rounded down, at least 1) in any
	// window of their time at PageRate, each counted from when its answer came back
	// (Meta counts it before answering, however late). With the defaults, 2 calls in any
	// second: a chain of calls answered in 50 ms goes out at 0, 0.05 s, 1.07 s, 1.12 s, …
	// (the margin included) rather than every half second, and no delay on the way can
	// put three in one second.
	PageWindow time.Duration
	// PageWindowMargin (GRAPH_API_PAGE_WINDOW_MARGIN) lengthens each window against skew
	// between the clocks of Meta's servers, which may count two calls of a token apart:
	// a block (code 80001) costs far more than the margin (BenchmarkLoadBackfill).
	PageWindowMargin time.Duration
	// PageSize (GRAPH_API_PAGE_SIZE) is the limit of conversations listings: by default
	// 200, the most threads integrators report Graph gives in one answer (spec 4.3), so a
	// backfill makes as few calls as the Page's window allows (a folder of up to 200
	// threads in one call, not one per 25). When Graph finds an answer too large (code 1,
	// "reduce the amount of data": a messages expansion on many threads) the client halves
	// it and asks again (Client.Conversations).
	PageSize int
	// BackoffBase and BackoffMax bound the retries of transient failures.
	BackoffBase time.Duration // GRAPH_API_BACKOFF_BASE
	BackoffMax  time.Duration // GRAPH_API_BACKOFF_MAX
	// RateLimitBase and RateLimitMax bound the pause after a rate-limit code that gives
	// no estimated_time_to_regain_access (spec: 1 min doubling to 1 h).
	RateLimitBase time.Duration // GRAPH_API_RATE_LIMIT_BACKOFF_BASE
	RateLimitMax  time.Duration // GRAPH_API_RATE_LIMIT_BACKOFF_MAX
	// UsageHigh is the usage percentage from which the client slows down; at it a token
	// pauses for a share of UsagePause growing to all of it at 100.
	UsageHigh        int           // GRAPH_API_USAGE_HIGH
	UsagePause       time.Duration // GRAPH_API_USAGE_PAUSE
	ProfileCacheSize int           // GRAPH_API_PROFILE_CACHE_SIZE: names remembered
}

// Defaults returns the configuration used when nothing is set.
func Defaults() Config {
	return Config{
		BaseURL: "https://graph.facebook.com", Version: "v21.0", Timeout: 30 * time.Second,
		MaxConcurrency: 128, MaxRetries: 6, PageRate: 2, PageWindow: time.Second,
		PageWindowMargin: 20 * time.Millisecond, PageSize: 200,
		BackoffBase: 500 * time.Millisecond, BackoffMax: 30 * time.Second,
		RateLimitBase: time.Minute, RateLimitMax: time.Hour,
		UsageHigh: 80, UsagePause: 30 * time.Second, ProfileCacheSize: 100_000,
	}
}

// Validate reports the first invalid value, naming its variable.
func (c Config) Validate() error {
	u, err := url.Parse(c.BaseURL)
	switch {
	case c.BaseURL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("GRAPH_API_URL must be an http(s) URL such as https://graph.facebook.com, got %q", c.BaseURL)
	case !validVersion(c.Version):
		return fmt.Errorf("GRAPH_API_VERSION must look like v21.0, got %q", c.Version)
	case c.Timeout <= 0:
		return fmt.Errorf("GRAPH_API_TIMEOUT must be positive, got %s", c.Timeout)
	case c.MaxConcurrency < 1:
		return fmt.Errorf("GRAPH_API_MAX_CONCURRENCY must be at least 1, got %d", c.MaxConcurrency)
	case c.MaxRetries < 0:
		return fmt.Errorf("GRAPH_API_MAX_RETRIES must be at least 0, got %d", c.MaxRetries)
	case c.PageRate <= 0:
		return fmt.Errorf("GRAPH_API_PAGE_RATE must be positive (Meta allows 2 per Page), got %v", c.PageRate)
	case c.PageWindow <= 0:
		return fmt.Errorf("GRAPH_API_PAGE_WINDOW must be positive, got %s", c.PageWindow)
	case c.PageWindowMargin < 0 || c.PageWindowMargin >= c.PageWindow:
		return fmt.Errorf("GRAPH_API_PAGE_WINDOW_MARGIN must be at least 0 and less than GRAPH_API_PAGE_WINDOW (%s), got %s",
			c.PageWindow, c.PageWindowMargin)
	case c.PageSize < 1 || c.PageSize > 200:
		return fmt.Errorf("GRAPH_API_PAGE_SIZE must be between 1 and 200, got %d", c.PageSize)
	case c.BackoffBase <= 0 || c.BackoffMax < c.BackoffBase:
		return fmt.Errorf("GRAPH_API_BACKOFF_BASE (%s) must be positive and at most GRAPH_API_BACKOFF_MAX (%s)", c.BackoffBase, c.BackoffMax)
	case c.RateLimitBase <= 0 || c.RateLimitMax < c.RateLimitBase:
		return fmt.Errorf("GRAPH_API_RATE_LIMIT_BACKOFF_BASE (%s) must be positive and at most GRAPH_API_RATE_LIMIT_BACKOFF_MAX (%s)", c.RateLimitBase, c.RateLimitMax)
	case c.UsageHigh < 1 || c.UsageHigh > 100:
		return fmt.Errorf("GRAPH_API_USAGE_HIGH must be a percentage between 1 and 100, got %d", c.UsageHigh)
	case c.UsagePause < 0:
		return fmt.Errorf("GRAPH_API_USAGE_PAUSE must be at least 0, got %s", c.UsagePause)
	case c.ProfileCacheSize < 1:
		return fmt.Errorf("GRAPH_API_PROFILE_CACHE_SIZE must be at least 1, got %d", c.ProfileCacheSize)
	}
	return nil
}

// window is the per-token limit: n calls in any w, w the time of n calls at PageRate
// (PageWindow when PageRate × PageWindow is whole) plus the margin.
func (c Config) window() (n int, w time.Duration) {
	n = max(1, int(math.Floor(c.PageRate*c.PageWindow.Seconds()+1e-9)))
	return n, time.Duration(float64(n)/c.PageRate*float64(time.Second)) + c.PageWindowMargin
}

func validVersion(v string) bool {
	major, minor, ok := strings.Cut(strings.TrimPrefix(v, "v"), ".")
	return strings.HasPrefix(v, "v") && ok && digits(major) && digits(minor)
}

func digits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// Client calls the Graph API. It is safe for concurrent use.
type Client struct {
	cfg     Config
	http    *http.Client
	log     *slog.Logger
	metrics *metrics
	root    string        // "{base}/{version}/"
	sem     chan struct{} // HTTP requests in flight
	// pageCalls calls start in any pageWindow per token (PageRate, PageWindow and the
	// margin); pageCalls also bounds the operations of one batch request.
	pageCalls  int
	pageWindow time.Duration
	app        *limiter // pauses of the whole app (code 4, X-App-Usage)
	// pageSize is the limit of conversations listings: PageSize, halved each time Graph
	// asks for less data (code 1) so later listings do not ask again.
	pageSize atomic.Int32

	mu     sync.Mutex
	scopes map[string]*limiter // by token fingerprint

	profiles *nameCache
}

// New validates cfg and builds a client. httpClient, reg and log may be nil: a default
// client, an unregistered registry and a discarding logger are used.
func New(cfg Config, httpClient *http.Client, reg prometheus.Registerer, log *slog.Logger) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if httpClient == nil {
		httpClient = &http.Client{Transport: transport(cfg.MaxConcurrency)}
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	n, w := cfg.window()
	c := &Client{
		cfg: cfg, http: httpClient, log: log, metrics: m,
		root:      strings.TrimRight(cfg.BaseURL, "/") + "/" + cfg.Version + "/",
		sem:       make(chan struct{}, cfg.MaxConcurrency),
		pageCalls: n, pageWindow: w,
		app:      newLimiter(0, 0),
		scopes:   map[string]*limiter{},
		profiles: newNameCache(cfg.ProfileCacheSize),
	}
	c.pageSize.Store(int32(cfg.PageSize))
	return c, nil
}

// transport is the default transport keeping up to n idle connections to a host, n the
// requests in flight: the default keeps 2, so with more in flight most connections would
// be closed after one request and the next would open a new one (a TLS handshake with
// Meta each time).
func transport(n int) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = n
	t.MaxIdleConns = max(t.MaxIdleConns, n)
	return t
}

// errNoToken is returned before any request when a call is given an empty token.
var errNoToken = errors.New("empty access token")
