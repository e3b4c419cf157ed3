package graph

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/convsync/convsync/internal/graphsim"
	"github.com/prometheus/client_golang/prometheus"
)

// server is a graphsim served over real HTTP, behind a wrapper that can fail the first
// requests and checks that no token travels in a URL.
type server struct {
	sim      *graphsim.Sim
	srv      *httptest.Server
	failNext atomic.Int64 // requests still to answer 503
	attempts atomic.Int64 // HTTP requests seen
	leaks    atomic.Int64 // requests with access_token in the URL
	holdNext atomic.Int64 // requests still to hold for holdFor before the simulator sees them
	holdFor  atomic.Int64 // nanoseconds

	mu       sync.Mutex
	arrivals []time.Time // when each request arrived
}

// arrived returns when each request arrived, in order.
func (s *server) arrived() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.arrivals)
}

func newServer(t *testing.T, cfg graphsim.Config) *server {
	t.Helper()
	sim, err := graphsim.New(cfg)
	if err != nil {
		t.Fatalf("graphsim.New: %v", err)
	}
	s := &server{sim: sim}
	h := sim.Handler()
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.attempts.Add(1)
		s.mu.Lock()
		s.arrivals = append(s.arrivals, time.Now())
		s.mu.Unlock()
		if r.URL.Query().Has("access_token") {
			s.leaks.Add(1)
		}
		if s.holdNext.Add(-1) >= 0 {
			time.Sleep(time.Duration(s.holdFor.Load())) // a request held up on its way
		}
		if s.failNext.Add(-1) >= 0 {
			http.Error(w, "<html>bad gateway</html>", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		s.srv.Close()
		if n := s.leaks.Load(); n > 0 {
			t.Errorf("%d requests carried access_token in their URL, want none", n)
		}
	})
	return s
}

func simConfig() graphsim.Config {
	cfg := graphsim.DefaultConfig()
	cfg.Messages = 10
	return cfg
}

// testConfig keeps the waits of a test in milliseconds.
func testConfig(url string) Config {
	cfg := Defaults()
	cfg.BaseURL = url
	cfg.Timeout = 5 * time.Second
	cfg.PageRate = 1000
	cfg.PageSize = 5
	cfg.MaxRetries = 8
	cfg.BackoffBase, cfg.BackoffMax = time.Millisecond, 5*time.Millisecond
	cfg.RateLimitBase, cfg.RateLimitMax = 2*time.Millisecond, 20*time.Millisecond
	cfg.UsagePause = 2 * time.Millisecond
	return cfg
}

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg, nil, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func TestValidateNamesTheVariable(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string // the variable named; "" for valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"no url", func(c *Config) { c.BaseURL = "" }, "GRAPH_API_URL"},
		{"url without scheme", func(c *Config) { c.BaseURL = "graph.facebook.com" }, "GRAPH_API_URL"},
		{"bad version", func(c *Config) { c.Version = "21" }, "GRAPH_API_VERSION"},
		{"zero timeout", func(c *Config) { c.Timeout = 0 }, "GRAPH_API_TIMEOUT"},
		{"zero concurrency", func(c *Config) { c.MaxConcurrency = 0 }, "GRAPH_API_MAX_CONCURRENCY"},
		{"negative retries", func(c *Config) { c.MaxRetries = -1 }, "GRAPH_API_MAX_RETRIES"},
		{"zero page rate", func(c *Config) { c.PageRate = 0 }, "GRAPH_API_PAGE_RATE"},
		{"zero window", func(c *Config) { c.PageWindow = 0 }, "GRAPH_API_PAGE_WINDOW"},
		{"margin as long as the window", func(c *Config) { c.PageWindowMargin = c.PageWindow }, "GRAPH_API_PAGE_WINDOW_MARGIN"},
		{"page size too big", func(c *Config) { c.PageSize = 500 }, "GRAPH_API_PAGE_SIZE"},
		{"backoff base over max", func(c *Config) { c.BackoffBase = time.Hour }, "GRAPH_API_BACKOFF_BASE"},
		{"rate-limit base zero", func(c *Config) { c.RateLimitBase = 0 }, "GRAPH_API_RATE_LIMIT_BACKOFF_BASE"},
		{"usage over 100", func(c *Config) { c.UsageHigh = 120 }, "GRAPH_API_USAGE_HIGH"},
		{"negative usage pause", func(c *Config) { c.UsagePause = -time.Second }, "GRAPH_API_USAGE_PAUSE"},
		{"zero cache", func(c *Config) { c.ProfileCacheSize = 0 }, "GRAPH_API_PROFILE_CACHE_SIZE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Defaults()
			tt.change(&cfg)
			err := cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v, want an error naming %s", err, tt.want)
			}
			if _, nerr := New(cfg, nil, nil, nil); (nerr == nil) != (tt.want == "") {
				t.Errorf("New() error = %v, want error: %v", nerr, tt.want != "")
			}
		})
	}
}
