package testenv

import "time"

// Poll calls cond every 50ms until it is true or d passes, and reports whether it came
// true: waiting on a condition with a deadline, never a timing assertion.
func Poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}
}
