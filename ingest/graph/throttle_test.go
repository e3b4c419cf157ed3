package graph

import (
	"context"
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
	cfg.PerPageCalls, cfg.PerPageWindow = 10, 50*time.Millisecond
	s := newServer(t, cfg)
	page := s.sim.Pages()[0]
	ccfg := testConfig(s.srv.URL)
	ccfg.PageRate, ccfg.PageWindow, ccfg.PageWindowMargin = 100, 50*time.Millisecond, 5*time.Millisecond
	c := newClient(t, ccfg)
	s.sim.Storm(30 * time.Millisecond)
	got, err := walkConversations(t, c, page.ID, page.AccessToken, "", time.Time{})
	if err != nil {
		t.Fatalf("Conversations(%s) during a storm error = %v", page.ID, err)
	}
	if diff := cmp.Diff(simConversations(s.sim, page.ID, "", time.Time{}), got); diff != "" {
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
			got, err := walkConversations(t, c, page.ID, page.AccessToken, "", time.Time{})
			if tt.wantErr {
				var e *APIError
				if err == nil || !errors.As(err, &e) || e.HTTPStatus != http.StatusServiceUnavailable {
					t.Errorf("Conversations() error = %v, want the 503 after %d retries", err, tt.maxRetries)
				}
			} else {
				if err != nil {
					t.Fatalf("Conversations() error = %v, want nil after retries", err)
				}
				if diff := cmp.Diff(simConversations(s.sim, page.ID, "", time.Time{}), got); diff != "" {
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
		// Found by FuzzGraphResponse: minutes beyond what a Duration holds converted to the
		// most negative Duration, so the longest block of all gave no pause.
		{"regain beyond a Duration is the longest pause", map[string]string{"X-Business-Use-Case-Usage": `{"1":[{"call_count":100,"estimated_time_to_regain_access":1e12}]}`},
			usage{scope: 100, regain: maxRegain, regainGiven: true}, true},
		{"regain longer than maxRegain is cut to it", map[string]string{"X-Business-Use-Case-Usage": `{"1":[{"estimated_time_to_regain_access":100000}]}`},
			usage{regain: maxRegain, regainGiven: true}, true},
		{"negative regain is no regain", map[string]string{"X-Business-Use-Case-Usage": `{"1":[{"estimated_time_to_regain_access":-5}]}`},
			usage{regainGiven: true}, true},
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
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	l := newLimiter(2, time.Second)
	reserve := func(step string, at time.Duration, k int, wantAt time.Duration, wantPaused bool) *slot {
		t.Helper()
		got, paused, s, wait := l.reserve(t0.Add(at), k)
		if wait != nil || !got.Equal(t0.Add(wantAt)) || paused != wantPaused {
			t.Fatalf("%s: reserve(%v, %d) = %v paused %v (must wait %v), want %v paused %v",
				step, at, k, got.Sub(t0), paused, wait != nil, wantAt, wantPaused)
		}
		return s
	}
	a := reserve("first call", 0, 1, 0, false)
	a.done(t0.Add(50 * ms))
	b := reserve("second call of the window", 50*ms, 1, 50*ms, false)
	// A window after the first call's answer, not its departure.
	c := reserve("third call", 60*ms, 1, 1050*ms, false)
	if _, _, _, wait := l.reserve(t0.Add(70*ms), 1); wait == nil {
		t.Fatal("fourth call while the second is in flight: reserve gave a start, want a wait for its answer")
	} else {
		b.done(t0.Add(100 * ms))
		select {
		case <-wait:
		default:
			t.Fatal("the second call's answer did not end the wait")
		}
	}
	d := reserve("fourth call", 100*ms, 1, 1100*ms, false)
	c.done(t0.Add(1300 * ms)) // a slow answer
	d.done(t0.Add(1150 * ms))
	e := reserve("fifth call", 1300*ms, 1, 2300*ms, false) // a window after the slow third
	// A batch of 5 operations counts as a window's worth (2): it follows the fourth and
	// the fifth, still in flight.
	if _, _, _, wait := l.reserve(t0.Add(1310*ms), 5); wait == nil {
		t.Fatal("a batch while the fifth call is in flight: reserve gave a start, want a wait")
	}
	e.done(t0.Add(2350 * ms))
	f := reserve("a batch of 5", 2350*ms, 5, 3350*ms, false)
	f.done(t0.Add(3400 * ms))
	l.pause(t0.Add(3400*ms), 10*time.Second)
	reserve("paused", 3400*ms, 1, 13400*ms, true)
}

// walkUnderWindow walks a page's inbox (17 threads, 3 a call: 6 calls) against a
// simulator that keeps 2 calls in any w strictly, the client set to the same limit with
// margin, the first request held up for hold before the simulator sees it. It checks the
// walk's data and that no call was refused, and returns when the requests arrived.
func walkUnderWindow(t *testing.T, w, margin, hold time.Duration) []time.Time {
	t.Helper()
	cfg := simConfig()
	cfg.PerPageCalls, cfg.PerPageWindow = 2, w
	s := newServer(t, cfg)
	page := s.sim.Pages()[0]
	ccfg := testConfig(s.srv.URL)
	ccfg.PageRate, ccfg.PageWindow, ccfg.PageWindowMargin = 2/w.Seconds(), w, margin
	ccfg.PageSize = 3
	c := newClient(t, ccfg)
	s.holdFor.Store(int64(hold))
	s.holdNext.Store(1)
	got, err := walkConversations(t, c, page.ID, page.AccessToken, "", time.Time{})
	if err != nil {
		t.Fatalf("Conversations(%s) error = %v", page.ID, err)
	}
	if diff := cmp.Diff(simConversations(s.sim, page.ID, "", time.Time{}), got); diff != "" {
		t.Errorf("Conversations(%s) differs from the simulator (-want +got):\n%s", page.ID, diff)
	}
	if n := s.sim.Requests().Throttled; n != 0 {
		t.Errorf("the simulator refused %d calls (first request held up %v), want none: the client keeps the window", n, hold)
	}
	starts := s.arrived()
	if len(starts) != 6 {
		t.Fatalf("the walk made %d requests, want 6", len(starts))
	}
	return starts
}

// Against a simulator that enforces the same window strictly, a walk is never refused,
// never puts more calls in a window than allowed, and sends the second call of a window
// right after the first instead of spacing every call evenly as a token bucket would.
func TestWindowPacesAWalk(t *testing.T) {
	const w = 400 * time.Millisecond
	starts := walkUnderWindow(t, w, 20*time.Millisecond, 0)
	for i := 2; i < len(starts); i++ {
		if d := starts[i].Sub(starts[i-2]); d < w {
			t.Errorf("requests %d and %d arrived %v apart, want at least the window %v", i-2, i, d, w)
		}
	}
	for i := 1; i < len(starts); i += 2 {
		if d := starts[i].Sub(starts[i-1]); d > w/4 {
			t.Errorf("request %d came %v after request %d, want it right after (a token bucket would space them by %v)", i, d, i-1, w/2)
		}
	}
}

// Meta may count a call long after it left (a queue on the way, a loaded server): the
// window counts from the answer, so a call held up 300 ms before the simulator counts
// it still leaves the next window clear, even without a margin.
func TestWindowCountsFromTheAnswer(t *testing.T) {
	walkUnderWindow(t, 400*time.Millisecond, 0, 300*time.Millisecond)
}

// Usage headers at UsageHigh and above pause the token before Meta refuses a call.
func TestUsageHeadersSlowDownBeforeTheBlock(t *testing.T) {
	cfg := simConfig()
	cfg.PerPageCalls, cfg.PerPageWindow = 5, 50*time.Millisecond
	cfg.WindowUsage = true // usage nears 100% within each window, not over an hour
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

// Meta's usage headers are shares of a rolling budget: a token calling at Meta's 2 calls
// per window, far from its budget, is never paused by them, whatever UsagePause is. (The
// simulator used to report the share of the window, so the second call of each window
// read 100% and the client paused 30 s: a backfill at 2 calls per second crawled.)
func TestNoPauseFarFromTheBudget(t *testing.T) {
	cfg := simConfig() // usage of the simulator's default hourly budget
	const w = 100 * time.Millisecond
	cfg.PerPageCalls, cfg.PerPageWindow = 2, w
	s := newServer(t, cfg)
	page := s.sim.Pages()[0]
	ccfg := Defaults() // UsagePause 30 s, UsageHigh 80%
	ccfg.BaseURL, ccfg.Version = s.srv.URL, cfg.Version
	ccfg.PageRate, ccfg.PageWindow, ccfg.PageWindowMargin = 2/w.Seconds(), w, 10*time.Millisecond
	ccfg.PageSize = 3 // 17 threads in the inbox: 6 calls, 3 windows
	c := newClient(t, ccfg)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	n := 0
	for _, err := range c.Conversations(ctx, page.ID, page.AccessToken, FolderInbox, time.Time{}, nil) {
		if err != nil {
			t.Fatalf("Conversations(%s) at 2 calls per %v error = %v (a pause of %v on usage headers?)", page.ID, w, err, ccfg.UsagePause)
		}
		n++
	}
	if want := len(simConversations(s.sim, page.ID, FolderInbox, time.Time{})); n != want {
		t.Errorf("Conversations(%s) gave %d threads, want %d", page.ID, n, want)
	}
	if p := testutil.ToFloat64(c.metrics.throttleWaits.WithLabelValues(waitPause)); p != 0 {
		t.Errorf("throttle pauses = %v, want none: %d calls are far from the hourly budget", p, s.sim.Requests().Calls)
	}
	if got := s.sim.Requests().Throttled; got != 0 {
		t.Errorf("the simulator refused %d calls, want 0", got)
	}
}
