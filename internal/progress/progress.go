// Package progress reports how far a long job is (a replay of the event log, a
// backfill): on a terminal a bar redrawn in place, with a bar per part of the work in
// progress above it (Item: a page of a backfill), otherwise a plain line every few
// seconds, so logs stay readable. Both show done/total, the rate and the time left. No
// dependencies, no goroutines: output happens on Add and on an item's changes, at most
// once per interval, and on Done.
package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Intervals between two reports, and the shape of the terminal block.
const (
	terminalEvery = 200 * time.Millisecond
	logEvery      = 5 * time.Second
	barWidth      = 30
	itemBarWidth  = 20
	// maxItemBars is how many item bars are drawn at most; the others are counted in one
	// line. Together with lineWidth it keeps the block on an ordinary terminal: a line
	// that wraps or a block taller than the screen could not be redrawn in place.
	maxItemBars = 20
	lineWidth   = 79
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
	items    []*Item  // in progress, in the order they started
	pending  []string // lines to print above the bars at the next draw
	drawn    int      // lines of the block drawn last, the cursor on its last one
}

// New starts a report of total units written to w (nil writes nothing). isTerminal
// chooses the redrawn bars over log lines. Work past total is counted; the bar stays
// full.
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
	r.tick(done)
}

// tick reports if the interval has passed; r.mu is held.
func (r *Reporter) tick(done int64) {
	now := r.now()
	if r.finished || now.Sub(r.last) < r.every {
		return
	}
	r.last = now
	r.write(done, now, false)
}

// Println writes a line that stays: above the bars on a terminal (at the next report),
// as it is otherwise. It must not end in a newline.
func (r *Reporter) Println(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.println(line)
}

func (r *Reporter) println(line string) {
	if !r.terminal || r.finished {
		_, _ = io.WriteString(r.w, line+"\n")
		return
	}
	r.pending = append(r.pending, line)
	r.last = time.Time{} // show it at the next report
}

// Done writes the final report. Later calls do nothing.
func (r *Reporter) Done() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return
	}
	r.items = nil
	r.write(r.done.Load(), r.now(), true)
	r.finished = true
}

// Count is the number of units done so far.
func (r *Reporter) Count() int64 { return r.done.Load() }

// Item is a part of the work with a bar of its own above the total on a terminal (a
// page of a backfill), until it finishes. Its total may be an estimate (the bar stays
// full past it, the count goes on) or unknown (0: the bar shows the count and a marker
// that moves while work goes on). Off a terminal items show nothing but the line they
// finish with. A nil *Item does nothing, so callers need not check.
type Item struct {
	r     *Reporter
	name  string
	start time.Time
	// Guarded by r.mu.
	done, total int64
	note        string
}

// Item starts a bar for name with total units (0: unknown).
func (r *Reporter) Item(name string, total int64) *Item {
	r.mu.Lock()
	defer r.mu.Unlock()
	it := &Item{r: r, name: name, start: r.now(), total: max(total, 0)}
	if r.terminal && !r.finished {
		r.items = append(r.items, it)
	}
	return it
}

// Add counts n more units of the item done and, unless note is empty, sets the text
// shown after its counts.
func (it *Item) Add(n int64, note string) {
	it.update(func() {
		it.done += n
		if note != "" {
			it.note = note
		}
	})
}

// update changes the item and reports if the interval has passed. Item changes wait for
// the lock (they are few and cheap) rather than skip like Reporter.Add.
func (it *Item) update(f func()) {
	if it == nil {
		return
	}
	r := it.r
	r.mu.Lock()
	defer r.mu.Unlock()
	f()
	r.tick(r.done.Load())
}

// Finish removes the item's bar and writes line (if not empty) where it stays, as
// Println does.
func (it *Item) Finish(line string) {
	if it == nil {
		return
	}
	r := it.r
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, x := range r.items {
		if x == it {
			r.items = append(r.items[:i], r.items[i+1:]...)
			break
		}
	}
	if line != "" {
		r.println(line)
	}
	r.tick(r.done.Load())
}

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
	if !r.terminal {
		if final {
			fmt.Fprintf(r.w, "progress: done, %d/%d (%.1f%%) in %s, %.0f/s\n", done, r.total, pct, elapsed.Round(time.Millisecond), rate)
		} else {
			fmt.Fprintf(r.w, "progress: %d/%d (%.1f%%), %.0f/s, ETA %s\n", done, r.total, pct, rate, eta)
		}
		return
	}
	var total strings.Builder
	total.WriteString("[")
	total.WriteString(bar(pct, barWidth))
	fmt.Fprintf(&total, "] %5.1f%% %d/%d %.0f/s", pct, done, r.total, rate)
	if final {
		fmt.Fprintf(&total, " in %s", elapsed.Round(time.Millisecond))
	} else {
		fmt.Fprintf(&total, " ETA %s", eta)
	}

	// The block (the item bars and the total bar) is redrawn from its first line: the
	// lines that stay take the place of its top, then the bars, the cursor left on the
	// total bar.
	var block []string
	for i, it := range r.items {
		if i == maxItemBars {
			block = append(block, fmt.Sprintf("  … and %d more", len(r.items)-i))
			break
		}
		block = append(block, it.line(now))
	}
	block = append(block, total.String())
	lines := append(r.pending, block...)
	r.pending = nil
	var b strings.Builder
	b.WriteString("\r")
	if r.drawn > 1 {
		fmt.Fprintf(&b, "\x1b[%dA", r.drawn-1)
	}
	for i, l := range lines {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(clip(l, lineWidth))
		b.WriteString("\x1b[K")
	}
	if r.drawn > len(lines) {
		b.WriteString("\x1b[J") // the old block was taller: clear the rest of it
	}
	if final {
		b.WriteString("\n")
	}
	r.drawn = len(block)
	_, _ = io.WriteString(r.w, b.String()) // progress output is best effort
}

// line is the item's bar: name, bar, share and counts when the total is known; name, a
// moving marker and the count when not; then the note.
func (it *Item) line(now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  %s [", it.name)
	if it.total > 0 {
		pct := min(100, 100*float64(it.done)/float64(it.total))
		b.WriteString(bar(pct, itemBarWidth))
		fmt.Fprintf(&b, "] %3.0f%% %d/%d", pct, it.done, it.total)
	} else {
		pos := int(now.Sub(it.start)/terminalEvery) % (itemBarWidth - 2)
		b.WriteString(strings.Repeat(" ", pos) + "<=>" + strings.Repeat(" ", itemBarWidth-3-pos))
		fmt.Fprintf(&b, "] %d", it.done)
	}
	if it.note != "" {
		b.WriteString(" " + it.note)
	}
	return b.String()
}

// bar is a bar of width cells filled to pct percent.
func bar(pct float64, width int) string {
	fill := int(pct / 100 * float64(width))
	return strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
}

// clip cuts s to n runes, so no line wraps.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
