//go:build !linux

package loadgen

import "time"

// pacer sleeps as Go's timers do where there is no timerfd.
type pacer struct{}

func newPacer() *pacer               { return &pacer{} }
func (*pacer) Close()                {}
func (*pacer) sleep(d time.Duration) { time.Sleep(d) }
