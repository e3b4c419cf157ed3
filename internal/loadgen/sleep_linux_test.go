package loadgen

import (
	"testing"
	"time"
)

// On Linux the pacer waits on its timerfd, and keeps it: a silent fallback to Go's
// timers would put the millisecond error back into every paced latency.
func TestPacerWaitsOnATimerfd(t *testing.T) {
	p := newPacer()
	defer p.Close()
	if p.f == nil {
		t.Fatal("no timerfd: the pacer fell back to Go's timers")
	}
	for range 20 {
		start := time.Now()
		p.sleep(300 * time.Microsecond)
		if time.Since(start) < 300*time.Microsecond {
			t.Fatal("woke before the timer fired")
		}
	}
	if p.f == nil {
		t.Fatal("the timerfd failed and the pacer fell back to Go's timers")
	}
}
