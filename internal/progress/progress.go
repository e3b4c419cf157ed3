// Package progress reports how far a long job is (a replay of the event log): on a
// terminal a bar redrawn in place, otherwise a plain line every few seconds, so logs stay
// readable. Both show done/total, the rate and the time left. No dependencies, no
// goroutines: output happens on Add, at most once per interval, and on Done.
package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Intervals between two reports.
const (
	terminalEvery = 200 * time.Millisecond
	logEvery      = 5 * time.Second
	barWidth      = 30
)

// Reporter counts work done against a total known at the start. It is safe for
// concurrent use.
type Reporter struct {
	w        io.Writer
	total    int64
	terminal bool
	every    time.Duration
	now      func() time.Time

	done atomic.Int64

	mu       sync.Mutex
	start    time.Time
	last     time.Time
	finished bool
}

// New starts a report of total units written to w (nil writes nothing). isTerminal
// chooses the redrawn bar over log lines. Work past total is counted; the bar stays full.
func New(w io.Writer, total int64, isTerminal bool) *Reporter {
	if w == nil {
		w = io.Discard
	}
	every := logEvery
	if isTerminal {
		every = terminalEvery
	}
	r := &Reporter{w: w, total: max(total, 0), terminal: isTerminal, every: every, now: time.Now}
	r.start = r.now()
	r.last = r.start
	return r
}

// Add counts n more units done and reports if the interval has passed.
func (r *Reporter) Add(n int64) {
	done := r.done.Add(n)
	if !r.mu.TryLock() {
		return // another goroutine is reporting
	}
	defer r.mu.Unlock()
	now := r.now()
	if r.finished || now.Sub(r.last) < r.every {
		return
	}
	r.last = now
	r.write(done, now, false)
}

// Done writes the final report. Later calls do nothing.
func (r *Reporter) Done() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return
	}
	r.finished = true
	r.write(r.done.Load(), r.now(), true)
}

// Count is the number of units done so far.
func (r *Reporter) Count() int64 { return r.done.Load() }

func (r *Reporter) write(done int64, now time.Time, final bool) {
	elapsed := now.Sub(r.start)
	rate := 0.0
	if elapsed > 0 {
		rate = float64(done) / elapsed.Seconds()
	}
	pct := 100.0
	if r.total > 0 {
		pct = min(100, 100*float64(done)/float64(r.total))
	}
	eta := "-"
	switch {
	case done >= r.total:
		eta = "0s"
	case rate > 0:
		eta = (time.Duration(float64(r.total-done) / rate * float64(time.Second))).Round(time.Second).String()
	}
	var b strings.Builder
	if r.terminal {
		fill := int(pct / 100 * barWidth)
		b.WriteString("\r[")
		b.WriteString(strings.Repeat("=", fill))
		b.WriteString(strings.Repeat(" ", barWidth-fill))
		fmt.Fprintf(&b, "] %5.1f%% %d/%d %.0f/s", pct, done, r.total, rate)
		if final {
			fmt.Fprintf(&b, " in %s\x1b[K\n", elapsed.Round(time.Millisecond))
		} else {
			fmt.Fprintf(&b, " ETA %s\x1b[K", eta)
		}
	} else if final {
		fmt.Fprintf(&b, "progress: done, %d/%d (%.1f%%) in %s, %.0f/s\n", done, r.total, pct, elapsed.Round(time.Millisecond), rate)
	} else {
		fmt.Fprintf(&b, "progress: %d/%d (%.1f%%), %.0f/s, ETA %s\n", done, r.total, pct, rate, eta)
	}
	_, _ = io.WriteString(r.w, b.String()) // progress output is best effort
}
