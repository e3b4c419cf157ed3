package graph

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// limiter paces the calls of one scope (a token, or the whole app): a sliding window
// of at most n calls, plus a pause set by usage headers and rate-limit answers. Calls
// made while throttled extend Meta's block, so a pause stops every call of the scope,
// not just the one that was refused.
//
// The window counts each call from when its answer came back, not from when it left:
// Meta counts a call somewhere in between, and under load (the caller's, the network's
// or Meta's) that can be hundreds of milliseconds after it left, so a window counted
// from departures needs a margin as long as the worst delay. A call may leave once the
// call n places before it, and every call before that one, was answered a window ago
// (plus the margin, against skew between Meta's clocks); while one of them is in
// flight, it waits for it.
type limiter struct {
	mu     sync.Mutex
	n      int           // calls per window; 0: no window, pauses only
	window time.Duration // its length, margin included
	calls  []*slot       // calls in the order they were given a start, the last n and any older in flight
	floor  time.Time     // the latest answer of the older calls dropped from calls
	ended  chan struct{} // closed and replaced when a call is answered; nil when nobody waits
	until  time.Time     // paused until
}

// slot is one call, or the operations of one batch request, in a limiter's window.
type slot struct {
	l   *limiter
	end time.Time // when its answer came back; zero while in flight
}

func newLimiter(n int, window time.Duration) *limiter {
	return &limiter{n: n, window: window}
}

// pausedUntil says until when the scope is paused, if it is.
func (l *limiter) pausedUntil(now time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.until, l.until.After(now)
}

// reserve takes k calls that start together (a batch's operations; more than n count as
// n, and Batch never sends more). It returns when they may start, whether a pause rather
// than the window decides it, and their slot, to end once they are answered. When a call
// they must follow is still in flight it returns instead a channel closed when a call is
// answered: wait on it, then ask again.
func (l *limiter) reserve(now time.Time, k int) (at time.Time, paused bool, s *slot, wait <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	at, paused = now, l.until.After(now)
	if paused {
		at = l.until
	}
	if l.n <= 0 {
		return at, paused, nil, nil
	}
	k = min(max(k, 1), l.n)
	last := l.floor
	for _, c := range l.calls[:max(0, len(l.calls)+k-l.n)] {
		if c.end.IsZero() {
			if l.ended == nil {
				l.ended = make(chan struct{})
			}
			return time.Time{}, false, nil, l.ended
		}
		if c.end.After(last) {
			last = c.end
		}
	}
	if t := last.Add(l.window); !last.IsZero() && t.After(at) {
		at = t
	}
	s = &slot{l: l}
	for range k {
		l.calls = append(l.calls, s)
	}
	for len(l.calls) > l.n && !l.calls[0].end.IsZero() {
		if e := l.calls[0].end; e.After(l.floor) {
			l.floor = e
		}
		l.calls = l.calls[1:]
	}
	return at, paused, s, nil
}

// done records when the slot's calls were answered (or gave up). nil does nothing.
func (s *slot) done(at time.Time) {
	if s == nil {
		return
	}
	l := s.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.end.IsZero() {
		s.end = at
	}
	if l.ended != nil {
		close(l.ended)
		l.ended = nil
	}
}

// pause stops the scope's calls until now+d at least.
func (l *limiter) pause(now time.Time, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t := now.Add(d); t.After(l.until) {
		l.until = t
	}
}

// scope returns the limiter of a token. Tokens are keyed by a fingerprint so the map
// holds no secret.
func (c *Client) scope(token string) *limiter {
	sum := sha256.Sum256([]byte(token))
	key := hex.EncodeToString(sum[:8])
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.scopes[key]
	if l == nil {
		l = newLimiter(c.pageCalls, c.pageWindow)
		c.scopes[key] = l
	}
	return l
}

// Reasons for a throttle wait, the values of the reason label.
const (
	waitRate  = "rate"  // the per-token window
	waitPause = "pause" // usage headers or a rate-limit answer
)

// throttle waits until n calls of scope l may go out and returns their slot: end it
// when they are answered, or do not go out.
func (c *Client) throttle(ctx context.Context, l *limiter, n int) (*slot, error) {
	start := time.Now()
	reason := ""
	for {
		now := time.Now()
		at, paused, s, wait := l.reserve(now, n)
		if wait != nil { // a call it follows is in flight
			reason = waitRate
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if app, ok := c.app.pausedUntil(now); ok && app.After(at) {
			at, paused = app, true
		}
		if d := at.Sub(now); d > 0 {
			reason = waitRate
			if paused {
				reason = waitPause
			}
			if err := sleep(ctx, d); err != nil {
				s.done(time.Now())
				return nil, err
			}
		}
		if reason != "" {
			c.metrics.throttleWaits.WithLabelValues(reason).Inc()
			c.metrics.throttleSeconds.Add(time.Since(start).Seconds())
		}
		return s, nil
	}
}

// usage is what the usage headers of one answer say.
type usage struct {
	app    float64       // X-App-Usage, highest percentage
	scope  float64       // X-Business-Use-Case-Usage (or X-Page-Usage), highest percentage
	regain time.Duration // estimated_time_to_regain_access, longest
	// regainGiven says the header carried estimated_time_to_regain_access, even 0: a
	// block shorter than a minute (Meta counts whole minutes).
	regainGiven bool
}

type usagePct struct {
	CallCount    float64 `json:"call_count"`
	TotalCPUTime float64 `json:"total_cputime"`
	TotalTime    float64 `json:"total_time"`
}

func (u usagePct) max() float64 { return max(u.CallCount, u.TotalCPUTime, u.TotalTime) }

// parseUsage reads the usage headers; ok is false when there are none. Headers that do
// not parse are ignored: they only ever slow the client down.
func parseUsage(h http.Header) (u usage, ok bool) {
	if v := h.Get("X-App-Usage"); v != "" {
		var p usagePct
		if json.Unmarshal([]byte(v), &p) == nil {
			u.app, ok = p.max(), true
		}
	}
	if v := h.Get("X-Page-Usage"); v != "" {
		var p usagePct
		if json.Unmarshal([]byte(v), &p) == nil {
			u.scope, ok = max(u.scope, p.max()), true
		}
	}
	if v := h.Get("X-Business-Use-Case-Usage"); v != "" {
		var m map[string][]struct {
			usagePct
			Regain *float64 `json:"estimated_time_to_regain_access"`
		}
		if json.Unmarshal([]byte(v), &m) == nil {
			for _, entries := range m {
				for _, e := range entries {
					u.scope = max(u.scope, e.max())
					if e.Regain != nil {
						u.regain = max(u.regain, regainMinutes(*e.Regain))
						u.regainGiven = true
					}
				}
			}
			ok = true
		}
	}
	return u, ok
}

// maxRegain bounds the pause of estimated_time_to_regain_access: a day, far beyond any
// block Meta documents, and short enough that adding jitter or now cannot overflow.
const maxRegain = 24 * time.Hour

// regainMinutes converts estimated_time_to_regain_access (minutes) to a Duration in
// [0, maxRegain]. A float beyond what a Duration holds converts to an undefined value (on
// amd64 the most negative Duration), which would turn the longest block into no pause.
func regainMinutes(m float64) time.Duration {
	d := m * float64(time.Minute)
	switch {
	case !(d > 0): // negative, zero or NaN
		return 0
	case d >= float64(maxRegain):
		return maxRegain
	}
	return time.Duration(d)
}

// observe slows a scope (and the app) down from the usage headers of an answer.
func (c *Client) observe(l *limiter, h http.Header) {
	u, ok := parseUsage(h)
	if !ok {
		return
	}
	now := time.Now()
	if d := c.slowDown(u.app); d > 0 {
		c.app.pause(now, d)
	}
	if d := c.slowDown(u.scope); d > 0 {
		l.pause(now, d)
	}
	if u.regain > 0 {
		l.pause(now, u.regain+jitter(u.regain/10))
	}
}

// slowDown is the pause for a usage percentage: none under UsageHigh, then a growing
// share of UsagePause, all of it at 100.
func (c *Client) slowDown(pct float64) time.Duration {
	high := float64(c.cfg.UsageHigh)
	if pct < high {
		return 0
	}
	share := min(1, (pct-high+1)/(101-high))
	return time.Duration(share * float64(c.cfg.UsagePause))
}

// rateLimited pauses the scope of a rate-limit answer: for estimated_time_to_regain_access
// plus jitter when given (0 minutes: a per-second block, so up to a second), else for an
// exponential backoff with jitter.
func (c *Client) rateLimited(l *limiter, e *APIError, attempt int) time.Duration {
	d := e.RegainAfter
	switch {
	case d > 0:
		d += jitter(d / 10)
	case e.RegainGiven:
		d = time.Second/2 + jitter(time.Second/2)
	default:
		d = backoff(attempt, c.cfg.RateLimitBase, c.cfg.RateLimitMax)
	}
	if isAppScope(e.Code) {
		c.app.pause(time.Now(), d)
	} else {
		l.pause(time.Now(), d)
	}
	return d
}

// backoff is base doubled attempt times, at most maxD, with equal jitter: between half
// and all of it, so retries of many callers spread out.
func backoff(attempt int, base, maxD time.Duration) time.Duration {
	d := base
	for i := 0; i < attempt && d < maxD; i++ {
		d *= 2
	}
	d = min(d, maxD)
	return d/2 + jitter(d/2)
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d + 1)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
