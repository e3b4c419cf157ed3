package graph

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A storm throttles every call for a while: the client pauses and retries, and the
// walk ends with the same data.
func TestStormSlowsTheWalk(t *testing.T) {
	cfg := simConfig()
	cfg.PerPageRate, cfg.PerPageBurst = 200, 10
	s := newServer(t, cfg)
	page := s.sim.Pages()[0]
	ccfg := testConfig(s.srv.URL)
	ccfg.PageRate, ccfg.PageBurst = 100, 5
	c := newClient(t, ccfg)
	s.sim.Storm(30 * time.Millisecond)
	got, err := walkConversations(t, c, page.ID, page.AccessToken, time.Time{})
	if err != nil {
		t.Fatalf("Conversations(%s) during a storm error = %v", page.ID, err)
	}
	if diff := cmp.Diff(simConversations(s.sim, page.ID, time.Time{}), got); diff != "" {
		t.Errorf("Conversations(%s) during a storm differs from the simulator (-want +got):\n%s", page.ID, diff)
	}
	if n := s.sim.Requests().Throttled; n == 0 {
		t.Errorf("the simulator throttled %d calls, want some: the storm did not happen", n)
	}
	if w := testutil.ToFloat64(c.metrics.throttleWaits.WithLabelValues(waitPause)); w == 0 {
		t.Errorf("throttle pauses = %v, want some after rate-limit answers", w)
	}
	if n := testutil.ToFloat64(c.metrics.requests.WithLabelValues(kindConversations, outcomeRateLimited)); n == 0 {
		t.Errorf("rate-limited requests counted = %v, want some", n)
	}
}

func TestServerErrorsRetried(t *testing.T) {
	tests := []struct {
		name       string
		fail       int64 // first HTTP requests answered 503
		failEvery  int   // graphsim code 2 on every nth call
		maxRetries int
		wantErr    bool
		wantHTTP   int64
	}{
		{"two 503 then ok", 2, 0, 3, false, 2 + 4},
		{"503 beyond the retries", 10, 0, 2, true, 3},
		{"code 2 retried", 0, 3, 3, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, simConfig())
			page := s.sim.Pages()[2]
			cfg := testConfig(s.srv.URL)
			cfg.MaxRetries = tt.maxRetries
			c := newClient(t, cfg)
			s.failNext.Store(tt.fail)
			s.sim.FailEvery(tt.failEvery)
			got, err := walkConversations(t, c, page.ID, page.AccessToken, time.Time{})
			if tt.wantErr {
				var e *APIError
				if err == nil || !errors.As(err, &e) || e.HTTPStatus != http.StatusServiceUnavailable {
					t.Errorf("Conversations() error = %v, want the 503 after %d retries", err, tt.maxRetries)
				}
			} else {
				if err != nil {
					t.Fatalf("Conversations() error = %v, want nil after retries", err)
				}
				if diff := cmp.Diff(simConversations(s.sim, page.ID, time.Time{}), got); diff != "" {
					t.Errorf("Conversations() after retries differs from the simulator (-want +got):\n%s", diff)
				}
			}
			if n := s.attempts.Load(); tt.wantHTTP > 0 && n != tt.wantHTTP {
				t.Errorf("Conversations() made %d HTTP requests, want %d", n, tt.wantHTTP)
			}
			if tt.failEvery > 0 && s.sim.Requests().Injected == 0 {
				t.Errorf("no code 2 was injected, want some")
			}
		})
	}
}

func TestParseUsage(t *testing.T) {
	tests := []struct {
		name   string
		header map[string]string
		want   usage
		ok     bool
	}{
		{"none", nil, usage{}, false},
		{"app", map[string]string{"X-App-Usage": `{"call_count":28,"total_cputime":25,"total_time":91}`}, usage{app: 91}, true},
		{"buc with regain", map[string]string{"X-Business-Use-Case-Usage": `{"104400000000001":[{"type":"pages","call_count":97,"total_cputime":23,"total_time":23,"estimated_time_to_regain_access":3}]}`},
			usage{scope: 97, regain: 3 * time.Minute, regainGiven: true}, true},
		{"buc blocked for under a minute", map[string]string{"X-Business-Use-Case-Usage": `{"104400000000001":[{"type":"pages","call_count":100,"estimated_time_to_regain_access":0}]}`},
			usage{scope: 100, regainGiven: true}, true},
		{"garbage ignored", map[string]string{"X-App-Usage": `nope`}, usage{}, false},
	}
	for _, tt := range tests {
		h := http.Header{}
		for k, v := range tt.header {
			h.Set(k, v)
		}
		got, ok := parseUsage(h)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseUsage(%s) = %+v, %v; want %+v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestLimiter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiter(2, 2)
	steps := []struct {
		at       time.Duration
		n        int
		pause    time.Duration
		wantWait time.Duration
	}{
		{0, 1, 0, 0},
		{0, 1, 0, 0},
		{0, 1, 0, 500 * time.Millisecond},  // bucket empty: 2 per second
		{0, 2, 0, 1500 * time.Millisecond}, // queued behind the previous debt
		{3 * time.Second, 1, 0, 0},
		{3 * time.Second, 1, 10 * time.Second, 10 * time.Second}, // paused
	}
	for i, s := range steps {
		at := now.Add(s.at)
		if s.pause > 0 {
			l.pause(at, s.pause)
		}
		if got, _ := l.reserve(at, s.n); got != s.wantWait {
			t.Errorf("step %d: reserve(%v, %d) = %v, want %v", i, s.at, s.n, got, s.wantWait)
		}
	}
}

// Usage headers at UsageHigh and above pause the token before Meta refuses a call.
func TestUsageHeadersSlowDownBeforeTheBlock(t *testing.T) {
	cfg := simConfig()
	cfg.PerPageRate, cfg.PerPageBurst = 100, 5
	s := newServer(t, cfg)
	page := s.sim.Pages()[0]
	thread := s.sim.Conversations(page.ID)[0]
	ccfg := testConfig(s.srv.URL)
	ccfg.UsagePause = 50 * time.Millisecond
	c := newClient(t, ccfg)
	n := 0
	for _, err := range c.Messages(t.Context(), thread.ID, page.AccessToken, 1, nil) {
		if err != nil {
			t.Fatalf("Messages(%s) error = %v", thread.ID, err)
		}
		n++
	}
	if n != len(s.sim.Messages(thread.ID)) {
		t.Errorf("Messages(%s) gave %d messages, want %d", thread.ID, n, len(s.sim.Messages(thread.ID)))
	}
	if w := testutil.ToFloat64(c.metrics.throttleWaits.WithLabelValues(waitPause)); w == 0 {
		t.Errorf("throttle pauses = %v, want some: usage passed %d%%", w, ccfg.UsageHigh)
	}
	if got := s.sim.Requests().Throttled; got != 0 {
		t.Errorf("the simulator throttled %d calls, want 0: the client should slow down first", got)
	}
}
