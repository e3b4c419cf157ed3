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

// bucket is a token bucket. Usage is the share of the burst in use, in percent.
type bucket struct {
	tokens float64
	last   time.Time
	// hourStart and hourCalls count calls in the current hour, for usage headers
	// against HourlyBudget.
	hourStart time.Time
	hourCalls int
}

// hourly counts one call in the bucket's current hour and returns its usage of budget
// in percent (Meta's usage headers are shares of a rolling budget, not of the per-second
// limit).
func (b *bucket) hourly(now time.Time, budget int) int {
	if now.Sub(b.hourStart) >= time.Hour {
		b.hourStart, b.hourCalls = now, 0
	}
	b.hourCalls++
	return min(100, b.hourCalls*100/budget)
}

// take spends one call. It reports whether the call may go ahead, the usage after it and,
// when it may not, how long until it may.
func (b *bucket) take(now time.Time, rate float64, burst int, penalize bool) (ok bool, usage int, wait time.Duration) {
	cap := float64(burst)
	if b.last.IsZero() {
		b.tokens = cap
	} else {
		b.tokens = min(cap, b.tokens+now.Sub(b.last).Seconds()*rate)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, int(math.Round((cap - b.tokens) / cap * 100)), 0
	}
	if penalize && b.tokens > -10*cap {
		b.tokens--
	}
	return false, 100, time.Duration((1 - b.tokens) / rate * float64(time.Second))
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
	if s.cfg.AppRate > 0 {
		ok, pct, _ := s.app.take(now, s.cfg.AppRate, s.cfg.AppBurst, s.cfg.PenalizeThrottled)
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
	if s.cfg.PerPageRate <= 0 {
		return h, nil
	}
	b := s.buckets[pageID]
	if b == nil {
		b = &bucket{}
		s.buckets[pageID] = b
	}
	ok, pct, wait := b.take(now, s.cfg.PerPageRate, s.cfg.PerPageBurst, s.cfg.PenalizeThrottled)
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
