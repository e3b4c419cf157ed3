package loadgen

import (
	"syscall"
	"time"
)

// preciseSleep blocks the calling thread in nanosleep(2), whose slack is tens of
// microseconds; the runtime hands the goroutine's processor to other work meanwhile.
func preciseSleep(d time.Duration) {
	if d <= 0 {
		return
	}
	ts := syscall.NsecToTimespec(d.Nanoseconds())
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
}
