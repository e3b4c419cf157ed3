package progress

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a manual clock for the reporter.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newAt(c *clock, w *strings.Builder, total int64, terminal bool) *Reporter {
	r := New(w, total, terminal)
	r.now = c.now
	r.start, r.last = c.t, c.t
	return r
}

func TestLogLinesComeEveryIntervalWithRateAndETA(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	var out strings.Builder
	r := newAt(c, &out, 1000, false)

	c.advance(time.Second)
	r.Add(100)
	if out.Len() != 0 {
		t.Fatalf("Add before the interval wrote %q, want nothing", out.String())
	}
	c.advance(4 * time.Second)
	r.Add(150) // 250 in 5s: 50/s, 750 left: 15s
	want := "progress: 250/1000 (25.0%), 50/s, ETA 15s\n"
	if out.String() != want {
		t.Fatalf("log line = %q, want %q", out.String(), want)
	}
	c.advance(time.Second)
	r.Add(1000) // past the total: the percentage stays at 100
	r.Done()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines %q, want the interval line and the final one", len(lines), out.String())
	}
	if want := "progress: done, 1250/1000 (100.0%) in 6s, 208/s"; lines[1] != want {
		t.Errorf("final line = %q, want %q", lines[1], want)
	}
	r.Done()
	if got := strings.Count(out.String(), "\n"); got != 2 {
		t.Errorf("a second Done wrote more: %d lines, want 2", got)
	}
}

func TestTerminalBarRedrawsInPlace(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	var out strings.Builder
	r := newAt(c, &out, 200, true)
	c.advance(time.Second)
	r.Add(100)
	got := out.String()
	if !strings.HasPrefix(got, "\r[") || strings.Contains(got, "\n") {
		t.Fatalf("bar = %q, want a carriage return and no newline", got)
	}
	if !strings.Contains(got, " 50.0% 100/200 100/s ETA 1s") {
		t.Errorf("bar = %q, want 50%%, the counts, the rate and the ETA", got)
	}
	if fill := strings.Count(got, "="); fill != barWidth/2 {
		t.Errorf("bar has %d of %d cells filled, want half", fill, barWidth)
	}
	r.Done()
	if !strings.HasSuffix(out.String(), "\n") {
		t.Errorf("Done left the bar without a newline: %q", out.String())
	}
}

func TestConcurrentAddsAreAllCounted(t *testing.T) {
	r := New(nil, 0, false)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				r.Add(1)
			}
		})
	}
	wg.Wait()
	r.Done()
	if got := r.Count(); got != 8000 {
		t.Errorf("Count() = %d after 8000 concurrent Adds, want 8000", got)
	}
}
