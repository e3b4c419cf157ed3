package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// clock is a manual clock for the reporter.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newAt(c *clock, w io.Writer, total int64, terminal bool) *Reporter {
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

// screen is a fake terminal: it applies what a Reporter writes (text, \r, \n, and the
// escapes ESC[nA cursor up, ESC[K erase to the end of the line, ESC[J erase to the end
// of the screen) to a grid of lines, as a terminal would show them.
type screen struct {
	lines     [][]rune
	row, col  int
	unhandled []string
}

func (s *screen) Write(p []byte) (int, error) {
	rs := []rune(string(p))
	for i := 0; i < len(rs); i++ {
		for s.row >= len(s.lines) {
			s.lines = append(s.lines, nil)
		}
		switch c := rs[i]; c {
		case '\r':
			s.col = 0
		case '\n':
			s.row, s.col = s.row+1, 0 // a terminal's output processing adds the \r
		case 0x1b:
			j := i + 2 // after ESC [
			n := 0
			for j < len(rs) && rs[j] >= '0' && rs[j] <= '9' {
				n = n*10 + int(rs[j]-'0')
				j++
			}
			if i+1 >= len(rs) || rs[i+1] != '[' || j >= len(rs) {
				s.unhandled = append(s.unhandled, string(rs[i:]))
				return len(p), nil
			}
			switch rs[j] {
			case 'A':
				s.row = max(0, s.row-max(n, 1))
			case 'K':
				s.lines[s.row] = s.lines[s.row][:min(s.col, len(s.lines[s.row]))]
			case 'J':
				s.lines[s.row] = s.lines[s.row][:min(s.col, len(s.lines[s.row]))]
				s.lines = s.lines[:s.row+1]
			default:
				s.unhandled = append(s.unhandled, string(rs[i:j+1]))
			}
			i = j
		default:
			line := s.lines[s.row]
			for len(line) < s.col {
				line = append(line, ' ')
			}
			if s.col < len(line) {
				line[s.col] = c
			} else {
				line = append(line, c)
			}
			s.lines[s.row] = line
			s.col++
		}
	}
	return len(p), nil
}

// text is what the screen shows, one string per line, trailing empty lines left out.
func (s *screen) text() []string {
	var out []string
	for _, l := range s.lines {
		out = append(out, string(l))
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

func TestTerminalShowsABarPerItemAboveTheTotal(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	term := &screen{}
	r := newAt(c, term, 4, true)
	a := r.Item("104400000000001", 200)
	b := r.Item("104400000000002", 0) // total unknown
	a.Add(0, "1000 messages, inbox")
	b.Add(7, "")
	if len(term.text()) != 0 {
		t.Fatalf("the terminal shows %q before the first interval passed, want nothing", term.text())
	}
	c.advance(time.Second)
	a.Add(50, "")
	check := func(step string, want []string) {
		t.Helper()
		got := term.text()
		if len(got) != len(want) {
			t.Fatalf("%s: the terminal shows %d lines, want %d:\n%s", step, len(got), len(want), strings.Join(got, "\n"))
		}
		for i := range want {
			if !strings.HasPrefix(got[i], want[i]) {
				t.Errorf("%s: line %d = %q, want it to begin %q", step, i+1, got[i], want[i])
			}
		}
		if len(term.unhandled) > 0 {
			t.Errorf("%s: the reporter wrote escapes a terminal would not handle here: %q", step, term.unhandled)
		}
	}
	check("two pages in progress", []string{
		"  104400000000001 [=====               ]  25% 50/200 1000 messages, inbox",
		"  104400000000002 [",
		"[                              ]   0.0% 0/4",
	})
	if got := term.text()[1]; !strings.Contains(got, "<=>") || !strings.HasSuffix(got, "] 7") {
		t.Errorf("bar of an unknown total = %q, want a moving marker and the count 7", got)
	}

	steps := []struct {
		name   string
		finish func()
		want   []string
	}{
		// A page that finishes leaves a line that stays; its bar goes.
		{"one page failed", func() { b.Finish("page 104400000000002: failed") }, []string{
			"page 104400000000002: failed",
			"  104400000000001 [=====",
			"[=======                       ]  25.0% 1/4",
		}},
		// The block shrinks: nothing of the old bars is left on the screen.
		{"no page in progress", func() { a.Finish("") }, []string{
			"page 104400000000002: failed",
			"[===============               ]  50.0% 2/4",
		}},
	}
	for _, st := range steps {
		st.finish()
		c.advance(time.Second)
		r.Add(1)
		check(st.name, st.want)
	}

	r.Add(2)
	r.Done()
	check("done", []string{
		"page 104400000000002: failed",
		"[==============================] 100.0% 4/4",
	})
	if term.row != 2 || term.col != 0 {
		t.Errorf("after Done the cursor is at line %d column %d, want the start of line 3", term.row+1, term.col)
	}
}

// More items than fit are counted on one line, so the block stays on the screen.
func TestTerminalCountsTheItemsThatDoNotFit(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	term := &screen{}
	r := newAt(c, term, 50, true)
	for i := range maxItemBars + 5 {
		r.Item(fmt.Sprintf("page-%02d", i), 10)
	}
	c.advance(time.Second)
	r.Add(1)
	got := term.text()
	if len(got) != maxItemBars+2 || got[maxItemBars] != "  … and 5 more" {
		t.Fatalf("the terminal shows %d lines, want %d item bars, a line for 5 more and the total:\n%s",
			len(got), maxItemBars, strings.Join(got, "\n"))
	}
	for _, l := range got {
		if n := utf8.RuneCountInString(l); n > lineWidth {
			t.Errorf("line %q is %d runes, want at most %d: it would wrap", l, n, lineWidth)
		}
	}
}

// Off a terminal items draw nothing; the lines they finish with are written as they are.
func TestLogLinesLeaveItemsOut(t *testing.T) {
	var out strings.Builder
	r := New(&out, 2, false)
	it := r.Item("page-1", 10)
	it.Add(5, "")
	it.Finish("page page-1: 10 conversations")
	r.Println("page page-2: failed")
	if want := "page page-1: 10 conversations\npage page-2: failed\n"; out.String() != want {
		t.Errorf("log output = %q, want %q", out.String(), want)
	}
	var nilItem *Item
	nilItem.Add(1, "") // a nil item does nothing
	nilItem.Finish("x")
}
