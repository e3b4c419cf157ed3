package cache

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func queued(w *warm) []string {
	var out []string
	for {
		select {
		case h := <-w.queue:
			out = append(out, h.key)
			w.take(h)
		default:
			return out
		}
	}
}

// Which marks queue a rebuild: only of entries read within hotFor, only past the version
// already there, once however many marks come before it runs, and at most max entries.
func TestWarmQueuesOnlyEntriesReadLatelyAndBehindTheirMarker(t *testing.T) {
	w := newWarm(2, time.Minute, time.Second, prometheus.NewRegistry())
	t0 := time.Unix(1_700_000_000, 0)
	load := func(context.Context) (Entry, error) { return Entry{}, nil }
	w.touch("a", "m1", 5, load, t0)
	w.touch("b", "m1", 5, load, t0.Add(-2*time.Minute)) // read long ago
	w.touch("c", "m2", 5, load, t0)                     // past max: not kept
	if len(w.keys) != 2 {
		t.Fatalf("kept %d entries, want 2 (max)", len(w.keys))
	}
	w.touch("b", "m1", 5, load, t0.Add(-2*time.Minute))

	w.marked([]Mark{{Key: "m1", Version: 5}}, t0) // not past the entries' version
	if got := queued(w); len(got) != 0 {
		t.Fatalf("mark at the entries' version queued %v", got)
	}
	w.marked([]Mark{{Key: "m1", Version: 6}, {Key: "m1", Version: 7}, {Key: "m2", Version: 9}}, t0.Add(time.Second))
	got := queued(w)
	if len(got) != 1 || got[0] != "a" {
		t.Fatalf("queued %v, want [a] once (b not read lately, c not kept)", got)
	}
	if w.keys["a"].want != 7 {
		t.Errorf("want = %d, the newest marker is 7", w.keys["a"].want)
	}
	w.stored(w.keys["a"], 7)
	w.marked([]Mark{{Key: "m1", Version: 7}}, t0.Add(time.Second)) // the stream's echo of a local mark
	if got := queued(w); len(got) != 0 {
		t.Errorf("an echoed mark already rebuilt queued %v", got)
	}
	w.expire(t0.Add(-time.Minute))
	if _, ok := w.keys["b"]; ok || len(w.byMarker["m1"]) != 1 {
		t.Errorf("expire kept b (keys %v, m1 %v)", w.keys, w.byMarker["m1"])
	}
}
