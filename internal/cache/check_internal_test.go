package cache

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/convsync/convsync/internal/logging"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeClock) add(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
}

// The bound itself, on a clock of the test's own: rows committed with no marker raised
// (the marker lost) are served stale no longer than MaxStaleness after the last check,
// whatever the readers do; a failed invalidation voids every check at once.
func TestStalenessBound(t *testing.T) {
	cfg := Defaults()
	c := New(NewMemory(100), cfg, prometheus.NewRegistry(), logging.Discard())
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c.now = clock.now
	ctx := context.Background()
	var mu sync.Mutex
	version, checks := int64(1), 0
	current := func(context.Context) (int64, error) {
		mu.Lock()
		defer mu.Unlock()
		checks++
		return version, nil
	}
	load := func(context.Context) (Entry, error) {
		mu.Lock()
		defer mu.Unlock()
		return Entry{Version: version, Value: []byte{byte('0' + version)}}, nil
	}
	read := func() (int64, bool) {
		e, hit, err := c.Load(ctx, "k", "m", current, load)
		if err != nil {
			t.Fatal(err)
		}
		c.checking.Do("k", func() (any, error) { return nil, nil }) // let a background check finish
		return e.Version, hit
	}
	read() // miss: stored
	if v, hit := read(); !hit || v != 1 {
		t.Fatalf("second read = v%d hit %v, want a v1 hit", v, hit)
	}
	mu.Lock()
	version = 2 // committed; the marker is lost
	n := checks
	mu.Unlock()
	clock.add(cfg.MaxStaleness/2 - time.Millisecond)
	if v, hit := read(); !hit || v != 1 {
		t.Fatalf("read within half the bound = v%d hit %v, want the v1 hit served without a check", v, hit)
	}
	if checks != n {
		t.Errorf("a read within half the bound made %d checks, want none", checks-n)
	}
	clock.add(cfg.MaxStaleness/2 - time.Millisecond) // past half: served, checked in the background
	read()
	clock.add(time.Millisecond)
	for range 3 {
		if v, _ := read(); v != 2 {
			t.Fatalf("read after the background check = v%d, want v2", v)
		}
	}

	// Without background reads, a check older than the bound is never trusted.
	mu.Lock()
	version = 3
	mu.Unlock()
	clock.add(cfg.MaxStaleness)
	if v, _ := read(); v != 3 {
		t.Fatalf("read a full bound after the last check = v%d, want v3", v)
	}

	// A failed invalidation voids every check: the next read checks again.
	if v, hit := read(); !hit || v != 3 {
		t.Fatalf("read = v%d hit %v, want a v3 hit", v, hit)
	}
	mu.Lock()
	version = 4
	mu.Unlock()
	c.store = failingMarks{c.store}
	c.Invalidate(ctx, []Mark{{Key: "m", Version: 4}})
	if v, _ := read(); v != 4 {
		t.Fatalf("read right after a failed invalidation = v%d, want v4", v)
	}
}

// failingMarks is a store whose markers cannot be raised.
type failingMarks struct{ Store }

func (failingMarks) Mark(context.Context, []Mark, time.Duration) error {
	return context.DeadlineExceeded
}
