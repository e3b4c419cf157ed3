// Package graphsim simulates the part of Meta's Graph API that convsync's backfill reads
// (spec docs/meta-platform.md sections 4 to 6), for the tests, the benchmarks and the
// demo. It serves a generated, deterministic data set (Pages, users, threads, messages)
// over HTTP:
//
//   - GET /{version}/{page-id}/conversations: one folder's threads (folder=inbox by
//     default, other, page_done or spam; Config.FolderShare of the threads in each of
//     the last three) newest first by updated_time, cursor paging, fields with expansion
//     (messages.limit(n){…}), user_id (a thread of the folder listed);
//   - GET /{version}/{thread-id}/messages, /{message-id}, /{thread-id}, /{page-id},
//     /{psid} (user profile), /?ids=…, /me and /me/accounts (any user token);
//   - POST /{version}/ batches of at most 50 operations, bodies as JSON strings.
//
// Only a thread's 20 newest messages can be read in detail: older ones are listed with
// id and created_time alone and reading one by id gives code 100. Page tokens must
// match their Page; an expired one gives 190/463. Each Page token's calls (each batch
// operation too) are rate limited by a sliding window (at most PerPageCalls started in
// any PerPageWindow, strictly) and by a rolling hour's budget (HourlyBudget): over
// either, code 80001 with X-Business-Use-Case-Usage at call_count 100; under them,
// X-Business-Use-Case-Usage gives the share of the hour's budget used, as Meta's does,
// once it passes 10%. Latency, transient errors (code 2, null batch entries) and
// rate-limit storms can be injected; every call is counted.
package graphsim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// Sim is a Graph API simulator. It is safe for concurrent use.
type Sim struct {
	cfg Config

	mu       sync.RWMutex // guards the data below
	pages    []*page
	byPage   map[string]*page
	byToken  map[string]*page
	byThread map[string]*conv
	byMID    map[string]msgRef
	users    map[string]bool // accepted user tokens; empty = any non-Page token

	lmu       sync.Mutex // guards the limiter and the injection state
	windows   map[string]*slidingWindow
	app       slidingWindow
	stormEnd  time.Time
	failEvery int
	failRate  float64
	failRNG   *rand.Rand
	calls     int64 // API calls seen by the injector

	cmu    sync.Mutex // guards counts
	counts Counts
	trace  uint64
}

// New generates the data set of cfg. It starts nothing: serve Handler().
func New(cfg Config) (*Sim, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Sim{cfg: cfg, byPage: map[string]*page{}, byToken: map[string]*page{},
		byThread: map[string]*conv{}, byMID: map[string]msgRef{}, users: map[string]bool{},
		windows: map[string]*slidingWindow{}, failEvery: cfg.FailEvery, failRate: cfg.FailRate,
		failRNG: rngFor(cfg.Seed, 1<<40)}
	for _, t := range cfg.UserTokens {
		s.users[t] = true
	}
	for p := range cfg.Pages {
		pg := generate(cfg, p)
		s.pages = append(s.pages, pg)
		s.byPage[pg.ID] = pg
		s.byToken[pg.AccessToken] = pg
		for _, c := range pg.convs {
			s.byThread[c.id] = c
			for i := range c.msgs {
				s.byMID[c.msgs[i].ID] = msgRef{c: c, i: i}
			}
		}
	}
	s.resetCounts()
	return s, nil
}

// Version is the API version served, e.g. "v21.0".
func (s *Sim) Version() string { return s.cfg.Version }

// Page returns one Page by id.
func (s *Sim) Page(pageID string) (Page, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.byPage[pageID]
	if p == nil {
		return Page{}, false
	}
	return p.Page, true
}

// ExpireToken makes a Page's access token expired: its calls fail with 190/463.
func (s *Sim) ExpireToken(pageID string) error { return s.setExpired(pageID, true) }

// RenewToken undoes ExpireToken.
func (s *Sim) RenewToken(pageID string) error { return s.setExpired(pageID, false) }

func (s *Sim) setExpired(pageID string, v bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.byPage[pageID]
	if p == nil {
		return fmt.Errorf("expire token of page %s: unknown page", pageID)
	}
	p.expired = v
	return nil
}

// Storm throttles every Page-token call for d from now (code 80001); 0 ends a storm.
func (s *Sim) Storm(d time.Duration) {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	s.stormEnd = time.Now().Add(d)
}

// FailEvery makes every nth API call from now fail with code 2 (a null entry in a
// batch); 0 stops it.
func (s *Sim) FailEvery(n int) {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	s.failEvery, s.calls = max(0, n), 0
}

// FailRate makes API calls fail with code 2 with probability p; 0 stops it.
func (s *Sim) FailRate(p float64) {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	s.failRate = min(1, max(0, p))
}

// inject reports whether this API call fails by error injection.
func (s *Sim) inject() bool {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	s.calls++
	if s.failEvery > 0 && s.calls%int64(s.failEvery) == 0 {
		return true
	}
	return s.failRate > 0 && s.failRNG.Float64() < s.failRate
}

// Handler serves the API under /{version}/.
func (s *Sim) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// sleep waits the configured latency or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
