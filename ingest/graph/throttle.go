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

// limiter paces the calls of one scope (a token, or the whole app): a token bucket
// that may go into debt, so waiters queue in order, plus a pause set by usage headers
// and rate-limit answers. Calls made while throttled extend Meta's block, so a pause
// stops every call of the scope, not just the one that was refused.
type limiter struct {
	mu     sync.Mutex
	rate   float64 // calls per second; 0: no bucket, pauses only
	burst  float64
	tokens float64
	last   time.Time
	until  time.Time // paused until
}

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

// reserve takes n calls and says how long to wait before making them, and whether the
// wait comes from a pause rather than the bucket.
func (l *limiter) reserve(now time.Time, n int) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	at := now
	paused := l.until.After(now)
	if paused {
		at = l.until
	}
	if l.rate <= 0 {
		return at.Sub(now), paused
	}
	if l.last.IsZero() {
		l.last = at
	}
	if at.After(l.last) {
		l.tokens = min(l.burst, l.tokens+at.Sub(l.last).Seconds()*l.rate)
		l.last = at
	}
	l.tokens -= float64(n)
	wait := at.Sub(now)
	if l.tokens < 0 {
		wait += time.Duration(-l.tokens / l.rate * float64(time.Second))
	}
	return wait, paused
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
		l = newLimiter(c.cfg.PageRate, c.cfg.PageBurst)
		c.scopes[key] = l
	}
	return l
}

// Reasons for a throttle wait, the values of the reason label.
const (
	waitRate  = "rate"  // the token bucket at PageRate
	waitPause = "pause" // usage headers or a rate-limit answer
)

// throttle waits until n calls of scope l may go out.
func (c *Client) throttle(ctx context.Context, l *limiter, n int) error {
	now := time.Now()
	d, paused := l.reserve(now, n)
	if ad, _ := c.app.reserve(now, 0); ad > d {
		d, paused = ad, true
	}
	if d <= 0 {
		return nil
	}
	reason := waitRate
	if paused {
		reason = waitPause
	}
	c.metrics.throttleWaits.WithLabelValues(reason).Inc()
	c.metrics.throttleSeconds.Add(d.Seconds())
	return sleep(ctx, d)
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
						u.regain = max(u.regain, time.Duration(*e.Regain*float64(time.Minute)))
						u.regainGiven = true
					}
				}
			}
			ok = true
		}
	}
	return u, ok
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
