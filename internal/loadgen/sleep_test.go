package loadgen

import (
	"context"
	"testing"
	"time"
)

func TestSleepUntilNeverWakesEarlyAndStopsOnCancel(t *testing.T) {
	ctx := context.Background()
	p := newPacer()
	defer p.Close()
	for i := range 200 {
		due := time.Now().Add(time.Duration(i%30) * 100 * time.Microsecond)
		if !p.sleepUntil(ctx, due) {
			t.Fatal("sleepUntil returned false with a live context")
		}
		if now := time.Now(); now.Before(due) {
			t.Fatalf("woke %s before the due time", due.Sub(now))
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if p.sleepUntil(cctx, time.Now().Add(time.Hour)) {
		t.Fatal("sleepUntil returned true after its context ended")
	}
}
