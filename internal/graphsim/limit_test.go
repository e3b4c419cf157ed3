package graphsim

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"
)

type bucUsageEntry struct {
	Type         string `json:"type"`
	CallCount    int    `json:"call_count"`
	TotalCPUTime int    `json:"total_cputime"`
	TotalTime    int    `json:"total_time"`
	Regain       int    `json:"estimated_time_to_regain_access"`
}

func parseBUC(t *testing.T, h http.Header, pageID string) (bucUsageEntry, bool) {
	t.Helper()
	v := h.Get("X-Business-Use-Case-Usage")
	if v == "" {
		return bucUsageEntry{}, false
	}
	var m map[string][]bucUsageEntry
	if err := json.Unmarshal([]byte(v), &m); err != nil || len(m[pageID]) != 1 {
		t.Fatalf("X-Business-Use-Case-Usage = %q, want one entry for page %s (%v)", v, pageID, err)
	}
	return m[pageID][0], true
}

func TestPageRateLimit(t *testing.T) {
	cfg := small()
	cfg.PerPageCalls, cfg.PerPageWindow = 20, time.Hour // nothing leaves the window during the test
	cfg.WindowUsage = true                              // usage climbs with each call of the window
	cfg.AppCalls, cfg.AppWindow = 100, time.Hour
	s, srv := start(t, cfg)
	page, other := s.Pages()[0], s.Pages()[1]
	q := url.Values{"access_token": {page.AccessToken}, "fields": {"id"}, "limit": {"1"}}
	last := 0
	for i := 1; i <= 20; i++ {
		status, h := fetch(t, apiURL(srv, page.ID+"/conversations", q), nil)
		if status != http.StatusOK {
			t.Fatalf("call %d = %d, want 200 (under the limit)", i, status)
		}
		u, ok := parseBUC(t, h, page.ID)
		if i == 1 {
			if ok {
				t.Errorf("call 1 sent usage %+v, want no header while usage is low", u)
			}
			continue
		}
		if !ok || u.CallCount <= last || u.Type != "pages" {
			t.Errorf("call %d usage = %+v (present %v), want call_count above %d", i, u, ok, last)
		}
		last = u.CallCount
		if i >= 10 && h.Get("X-App-Usage") == "" {
			t.Errorf("call %d has no X-App-Usage at 10%% app usage", i)
		}
	}
	var e apiErrBody
	status, h := fetch(t, apiURL(srv, page.ID+"/conversations", q), &e)
	u, ok := parseBUC(t, h, page.ID)
	if status != http.StatusBadRequest || e.Error.Code != 80001 || !ok || u.CallCount != 100 {
		t.Errorf("call 21 = %d code %d usage %+v, want 400 code 80001 with call_count 100", status, e.Error.Code, u)
	}
	// Another Page has its own budget.
	q.Set("access_token", other.AccessToken)
	if status, _ := fetch(t, apiURL(srv, other.ID+"/conversations", q), nil); status != http.StatusOK {
		t.Errorf("other page = %d, want 200", status)
	}
	if got := s.Requests().Throttled; got != 1 {
		t.Errorf("Throttled = %d, want 1", got)
	}
}

func TestBatchOperationsCountAgainstLimit(t *testing.T) {
	cfg := small()
	cfg.PerPageCalls, cfg.PerPageWindow = 3, time.Hour
	s, srv := start(t, cfg)
	page := s.Pages()[0]
	ops := []map[string]any{get(page.ID + "/conversations"), get(page.ID + "/conversations"),
		get(page.ID + "/conversations"), get(page.ID + "/conversations")}
	_, got, raw := postBatch(t, srv, page.AccessToken, ops)
	if len(got) != 4 || got[2] == nil || got[2].Code != 200 || got[3] == nil || got[3].Code != 400 {
		t.Fatalf("batch of 4 with 3 calls per window = %s, want 3 answers then a 400", raw)
	}
	var e apiErrBody
	if err := json.Unmarshal([]byte(got[3].Body), &e); err != nil || e.Error.Code != 80001 {
		t.Errorf("4th operation = %s, want code 80001", got[3].Body)
	}
	found := false
	for _, h := range got[3].Headers {
		found = found || h.Name == "X-Business-Use-Case-Usage"
	}
	if !found {
		t.Errorf("throttled operation headers = %+v, want X-Business-Use-Case-Usage", got[3].Headers)
	}
}

func TestStorm(t *testing.T) {
	s, srv := start(t, small())
	q := url.Values{"fields": {"id"}}
	s.Storm(time.Hour)
	for _, p := range s.Pages() {
		q.Set("access_token", p.AccessToken)
		var e apiErrBody
		status, h := fetch(t, apiURL(srv, p.ID+"/conversations", q), &e)
		u, _ := parseBUC(t, h, p.ID)
		if status != http.StatusBadRequest || e.Error.Code != 80001 || u.CallCount != 100 || u.Regain != 60 {
			t.Errorf("page %s in a storm = %d code %d usage %+v, want code 80001, call_count 100, 60 minutes",
				p.ID, status, e.Error.Code, u)
		}
	}
	s.Storm(0)
	p := s.Pages()[0]
	q.Set("access_token", p.AccessToken)
	if status, _ := fetch(t, apiURL(srv, p.ID+"/conversations", q), nil); status != http.StatusOK {
		t.Errorf("after the storm = %d, want 200", status)
	}
}

// By default the simulator reports usage as Meta does: X-Business-Use-Case-Usage is the
// share of a rolling hour's budget, so Meta's 2 calls per second leave it near zero. (It
// used to be the share of the one-second window: the second call of each second read
// 100%, and a client pausing on high usage paused 30 s every second call.)
func TestUsageIsAShareOfTheHourlyBudget(t *testing.T) {
	cfg := small()
	cfg.PerPageCalls, cfg.PerPageWindow = 2, time.Second // Meta's Conversations limit
	s, srv := start(t, cfg)
	page := s.Pages()[0]
	q := url.Values{"access_token": {page.AccessToken}, "fields": {"id"}, "limit": {"1"}}
	for i := 1; i <= 2; i++ {
		status, h := fetch(t, apiURL(srv, page.ID+"/conversations", q), nil)
		if status != http.StatusOK {
			t.Fatalf("call %d = %d, want 200 (under the limit)", i, status)
		}
		if u, ok := parseBUC(t, h, page.ID); ok {
			t.Errorf("call %d of the hour's %d sent usage %+v, want no header: 2 calls are %.2f%% of the budget",
				i, DefaultHourlyBudget, u, 200.0/DefaultHourlyBudget)
		}
	}

	// A small budget: usage climbs by its share, and a token that spent it is refused for
	// the rest of the hour, with the minutes to wait.
	cfg.PerPageCalls, cfg.HourlyBudget = 100, 20
	s, srv = start(t, cfg)
	page = s.Pages()[0]
	q.Set("access_token", page.AccessToken)
	for i := 1; i <= 20; i++ {
		status, h := fetch(t, apiURL(srv, page.ID+"/conversations", q), nil)
		if status != http.StatusOK {
			t.Fatalf("call %d of a budget of 20 = %d, want 200", i, status)
		}
		u, ok := parseBUC(t, h, page.ID)
		if want := i * 5; want >= usageFloor && (!ok || u.CallCount != want || u.Regain != 0) {
			t.Errorf("call %d of a budget of 20 sent usage %+v (present %v), want call_count %d", i, u, ok, want)
		}
	}
	var e apiErrBody
	status, h := fetch(t, apiURL(srv, page.ID+"/conversations", q), &e)
	u, ok := parseBUC(t, h, page.ID)
	if status != http.StatusBadRequest || e.Error.Code != 80001 || !ok || u.CallCount != 100 || u.Regain < 59 || u.Regain > 60 {
		t.Errorf("call 21 of a budget of 20 = %d code %d usage %+v, want 400 code 80001, call_count 100, about 60 minutes to wait",
			status, e.Error.Code, u)
	}
}

// The hour rolls: a call stops counting an hour after it was made (to the minute), and the
// wait for a spent budget is until enough calls are that old.
func TestRollingHour(t *testing.T) {
	t0 := time.Unix(1_800_000_000/60*60, 0) // on a minute
	var r rollingHour
	r.add(t0)
	r.add(t0.Add(10 * time.Second))
	r.add(t0.Add(30 * time.Minute))
	tests := []struct {
		at   time.Duration
		used int
	}{
		{59 * time.Minute, 3}, {59*time.Minute + 59*time.Second, 3}, {60 * time.Minute, 1},
		{89*time.Minute + 59*time.Second, 1}, {90 * time.Minute, 0},
	}
	for _, tt := range tests {
		if got := r.used(t0.Add(tt.at)); got != tt.used {
			t.Errorf("calls of the hour before %v = %d, want %d", tt.at, got, tt.used)
		}
	}
	// With a budget of 2, the first minute's two calls must age out: at 60 minutes.
	if got := r.regain(t0.Add(45*time.Minute), 2); got != 15*time.Minute {
		t.Errorf("regain at 45 minutes with 3 calls of a budget of 2 = %v, want 15m", got)
	}
	// With a budget of 3, one call must age out: the first minute's.
	if got := r.regain(t0.Add(45*time.Minute+30*time.Second), 3); got != 14*time.Minute+30*time.Second {
		t.Errorf("regain at 45m30s with 3 calls of a budget of 3 = %v, want 14m30s", got)
	}
}

// The window is strict: no interval of its length holds more than n calls, whatever
// their pattern. A token bucket of the same rate and burst would let the third call of
// the second step through.
func TestSlidingWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	tests := []struct {
		name string
		at   []time.Duration // call times from t0
		ok   []bool
		wait time.Duration // of the last call, when refused
	}{
		{"a chain: two calls, then two a window later", []time.Duration{0, 50 * ms, 1000 * ms, 1050 * ms},
			[]bool{true, true, true, true}, 0},
		{"a third call inside the window", []time.Duration{0, 50 * ms, 999 * ms},
			[]bool{true, true, false}, ms},
		{"refill of a bucket is not enough", []time.Duration{0, 0, 500 * ms},
			[]bool{true, true, false}, 500 * ms},
		{"the window follows the call two before", []time.Duration{0, 50 * ms, 1000 * ms, 1049 * ms},
			[]bool{true, true, true, false}, ms},
		{"a refused call does not count", []time.Duration{0, 0, 10 * ms, 1000 * ms, 1000 * ms},
			[]bool{true, true, false, true, true}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w slidingWindow
			for i, at := range tt.at {
				ok, pct, wait := w.take(t0.Add(at), 2, time.Second, false)
				if ok != tt.ok[i] {
					t.Fatalf("call %d at %v admitted = %v, want %v", i, at, ok, tt.ok[i])
				}
				if !ok && (pct != 100 || (i == len(tt.at)-1 && wait != tt.wait)) {
					t.Errorf("call %d at %v refused at %d%% for %v, want 100%% for %v", i, at, pct, wait, tt.wait)
				}
			}
		})
	}
	// Usage is the share of the window in use.
	var u slidingWindow
	if _, pct, _ := u.take(t0, 4, time.Second, false); pct != 25 {
		t.Errorf("usage after 1 of 4 calls = %d%%, want 25%%", pct)
	}
	// Penalised calls made while throttled extend the block.
	var p slidingWindow
	p.take(t0, 1, time.Second, true)
	p.take(t0.Add(500*ms), 1, time.Second, true)
	if ok, _, wait := p.take(t0.Add(1000*ms), 1, time.Second, true); ok || wait != 500*ms {
		t.Errorf("call a second after the first, after a penalised one = %v, wait %v; want refused for 500ms", ok, wait)
	}
}
