package graphsim

import (
	"encoding/json"
	"math"
	"net/http"
	"time"
)

// usageFloor is the usage percentage below which usage headers are left out: Meta sends
// them only once usage is noticeable.
const usageFloor = 10

// slidingWindow enforces "at most n calls started in any window of length w" exactly:
// a call at now is admitted when fewer than n admitted calls lie in (now-w, now], so no
// interval of length w ever holds more than n of them. It is not a token bucket: a
// bucket of burst n refilling at n/w lets a call through as soon as one token is back
// (with n = 2: calls at 0, 0 and w/2), which puts n+1 calls in one window. Usage is the
// share of the window in use, in percent.
type slidingWindow struct {
	calls []time.Time // admitted (and, when penalized, refused) calls of the last w, oldest first
	hour  rollingHour // admitted calls of the last hour, for HourlyBudget
}

// rollingHour counts calls over the last hour in one-minute buckets, as Meta's rolling
// budgets do: a call stops counting an hour (to the minute) after it was made, not when a
// fixed hour ends.
type rollingHour struct {
	minute [60]int64 // the minute (Unix minutes) each bucket counts; a stale one counts 0
	calls  [60]int
}

// used is the calls of the hour before now.
func (r *rollingHour) used(now time.Time) int {
	m, n := unixMinute(now), 0
	for i := range r.calls {
		if m-r.minute[i] < 60 {
			n += r.calls[i]
		}
	}
	return n
}

func (r *rollingHour) add(now time.Time) {
	m := unixMinute(now)
	i := m % 60
	if r.minute[i] != m {
		r.minute[i], r.calls[i] = m, 0
	}
	r.calls[i]++
}

// regain is how long until the hour before now holds fewer than budget calls.
func (r *rollingHour) regain(now time.Time, budget int) time.Duration {
	m := unixMinute(now)
	over := r.used(now) - budget + 1
	for age := int64(59); age >= 0 && over > 0; age-- { // oldest minute first
		i := (m - age) % 60
		if r.minute[i] != m-age {
			continue
		}
		if over -= r.calls[i]; over <= 0 {
			return time.Unix((m-age+60)*60, 0).Sub(now)
		}
	}
	return time.Hour
}

func unixMinute(t time.Time) int64 { return t.Unix() / 60 }

// take starts one call at now under a limit of n calls per w. It reports whether the call
// may go ahead, the usage after it and, when it may not, how long until one may.
// penalize counts a refused call too, so calls made while throttled extend the block, as
// Meta's do.
func (b *slidingWindow) take(now time.Time, n int, w time.Duration, penalize bool) (ok bool, usage int, wait time.Duration) {
	i := 0
	for i < len(b.calls) && now.Sub(b.calls[i]) >= w {
		i++
	}
	b.calls = b.calls[i:]
	if len(b.calls) < n {
		b.calls = append(b.calls, now)
		return true, int(math.Round(float64(len(b.calls)) / float64(n) * 100)), 0
	}
	// The call allowed next is w after the n-th most recent one.
	wait = b.calls[len(b.calls)-n].Add(w).Sub(now)
	if penalize && len(b.calls) < 10*n {
		b.calls = append(b.calls, now)
	}
	return false, 100, wait
}

// regainMinutes is estimated_time_to_regain_access: whole minutes, 0 under a minute.
func regainMinutes(wait time.Duration) int {
	if wait < time.Minute {
		return 0
	}
	return int(math.Ceil(wait.Minutes()))
}

func bucUsage(pageID string, pct int, regain int) string {
	b, _ := json.Marshal(map[string]any{pageID: []map[string]any{{"type": "pages", "call_count": pct,
		"total_cputime": pct / 4, "total_time": pct / 3, "estimated_time_to_regain_access": regain}}})
	return string(b)
}

func appUsage(pct int) string {
	b, _ := json.Marshal(map[string]any{"call_count": pct, "total_cputime": pct / 4, "total_time": pct / 3})
	return string(b)
}

// admit charges one call to the app and, for a Page token, to the Page. It returns the
// usage headers to send, or the throttling error.
func (s *Sim) admit(pageID string) (http.Header, *apiError) {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	now := time.Now()
	h := http.Header{}
	if s.cfg.AppCalls > 0 {
		ok, pct, _ := s.app.take(now, s.cfg.AppCalls, s.cfg.AppWindow, s.cfg.PenalizeThrottled)
		if !ok {
			h.Set("X-App-Usage", appUsage(100))
			return nil, errAppThrottled(h)
		}
		if pct >= usageFloor {
			h.Set("X-App-Usage", appUsage(pct))
		}
	}
	if pageID == "" {
		return h, nil
	}
	if d := s.stormEnd.Sub(now); d > 0 {
		h.Set("X-Business-Use-Case-Usage", bucUsage(pageID, 100, regainMinutes(d)))
		return nil, errPageThrottled(h)
	}
	if s.cfg.PerPageCalls <= 0 {
		return h, nil
	}
	b := s.windows[pageID]
	if b == nil {
		b = &slidingWindow{}
		s.windows[pageID] = b
	}
	// The rolling hour first: a token that spent its budget is blocked for minutes, and
	// calls it makes meanwhile do not count (Meta's do not lengthen a BUC block either).
	if b.hour.used(now) >= s.cfg.HourlyBudget {
		h.Set("X-Business-Use-Case-Usage", bucUsage(pageID, 100, regainMinutes(b.hour.regain(now, s.cfg.HourlyBudget))))
		return nil, errPageThrottled(h)
	}
	ok, pct, wait := b.take(now, s.cfg.PerPageCalls, s.cfg.PerPageWindow, s.cfg.PenalizeThrottled)
	if !ok {
		h.Set("X-Business-Use-Case-Usage", bucUsage(pageID, 100, regainMinutes(wait)))
		return nil, errPageThrottled(h)
	}
	b.hour.add(now)
	if !s.cfg.WindowUsage { // Meta's usage: the share of the rolling hour's budget
		pct = min(100, b.hour.used(now)*100/s.cfg.HourlyBudget)
	}
	if pct >= usageFloor {
		h.Set("X-Business-Use-Case-Usage", bucUsage(pageID, pct, 0))
	}
	return h, nil
}
