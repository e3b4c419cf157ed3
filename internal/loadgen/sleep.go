package loadgen

import (
	"context"
	"time"
)

// sleepUntil waits until t or until ctx ends (false). Go's timers wake up to a
// millisecond late when the process is idle: the runtime's poller sleeps in whole
// milliseconds and rounds a shorter wait up to 1 ms (golang/go#44343). A paced run
// measures latency from when a request was due, so that error would be charged to the
// server: at 5,000 requests/s every request would look up to 0.8 ms slower than it was.
// So the last stretch of a wait is on p's timer, which the poller watches (microseconds
// of slack, no thread held), and only a longer wait goes through a Go timer first.
func (p *pacer) sleepUntil(ctx context.Context, t time.Time) bool {
	const fine = 2 * time.Millisecond
	if wait := time.Until(t) - fine; wait > 0 {
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return false
		case <-timer.C:
		}
	}
	if ctx.Err() != nil {
		return false
	}
	p.sleep(time.Until(t))
	return true
}
