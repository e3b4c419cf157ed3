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
	// hourStart and hourCalls count calls in the current hour, for usage headers
	// against HourlyBudget.
	hourStart time.Time
	hourCalls int
}

// hourly counts one call in the current hour and returns its usage of budget in percent
// (Meta's usage headers are shares of a rolling budget, not of the per-second limit).
func (b *slidingWindow) hourly(now time.Time, budget int) int {
	if now.Sub(b.hourStart) >= time.Hour {
		b.hourStart, b.hourCalls = now, 0
	}
	b.hourCalls++
	return min(100, b.hourCalls*100/budget)
}

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
	ok, pct, wait := b.take(now, s.cfg.PerPageCalls, s.cfg.PerPageWindow, s.cfg.PenalizeThrottled)
	if !ok {
		h.Set("X-Business-Use-Case-Usage", bucUsage(pageID, 100, regainMinutes(wait)))
		return nil, errPageThrottled(h)
	}
	if s.cfg.HourlyBudget > 0 {
		pct = b.hourly(now, s.cfg.HourlyBudget)
	}
	if pct >= usageFloor {
		h.Set("X-Business-Use-Case-Usage", bucUsage(pageID, pct, 0))
	}
	return h, nil
}
