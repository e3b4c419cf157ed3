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
	cfg.PerPageRate, cfg.PerPageBurst = 0.001, 20 // no refill during the test
	cfg.AppRate, cfg.AppBurst = 0.001, 100
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
	cfg.PerPageRate, cfg.PerPageBurst = 0.001, 3
	s, srv := start(t, cfg)
	page := s.Pages()[0]
	ops := []map[string]any{get(page.ID + "/conversations"), get(page.ID + "/conversations"),
		get(page.ID + "/conversations"), get(page.ID + "/conversations")}
	_, got, raw := postBatch(t, srv, page.AccessToken, ops)
	if len(got) != 4 || got[2] == nil || got[2].Code != 200 || got[3] == nil || got[3].Code != 400 {
		t.Fatalf("batch of 4 with a burst of 3 = %s, want 3 answers then a 400", raw)
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

func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var b bucket
	for i := range 2 {
		if ok, _, _ := b.take(t0, 2, 2, false); !ok {
			t.Fatalf("call %d refused, want the burst of 2 allowed", i)
		}
	}
	ok, pct, wait := b.take(t0, 2, 2, false)
	if ok || pct != 100 || wait != 500*time.Millisecond {
		t.Errorf("3rd call = %v %d%% wait %v, want refused at 100%% for 500ms", ok, pct, wait)
	}
	if ok, _, _ := b.take(t0.Add(500*time.Millisecond), 2, 2, false); !ok {
		t.Error("call after 500ms at 2/s refused, want allowed")
	}
	// Penalised calls made while throttled extend the block.
	var p bucket
	p.take(t0, 1, 1, true)
	p.take(t0, 1, 1, true)
	if _, _, wait := p.take(t0, 1, 1, true); wait != 3*time.Second {
		t.Errorf("wait after two penalised calls = %v, want 3s", wait)
	}
}
