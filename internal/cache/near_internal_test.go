package cache

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A read from Redis that straddles a reset must not put its entry back afterwards: the
// reset happened because markers may have been missed, and the entry may be older.
func TestNearPutAfterResetIsDropped(t *testing.T) {
	n := newNear(10, time.Minute, prometheus.NewRegistry())
	n.reset("subscribed", true)
	ctx := context.Background()
	gen := n.gen.Load() // a reader starts reading from Redis
	n.reset("lost", true)
	n.put(ctx, gen, "k", "m", Entry{Version: 1, Value: []byte("v1")})
	if _, ok := n.get(ctx, "k", "m"); ok {
		t.Fatal("an entry read before a reset was kept after it")
	}
	n.put(ctx, n.gen.Load(), "k", "m", Entry{Version: 1, Value: []byte("v1")})
	if _, ok := n.get(ctx, "k", "m"); !ok {
		t.Fatal("an entry read after the reset was not kept")
	}
	n.reset("lost", false)
	n.put(ctx, n.gen.Load(), "k", "m", Entry{Version: 1, Value: []byte("v1")})
	if _, ok := n.get(ctx, "k", "m"); ok {
		t.Fatal("the near cache served while its stream was down")
	}
}

func TestMarksMessageRoundTrip(t *testing.T) {
	in := []Mark{{Key: "convsync:{1}:m", Version: 7}, {Key: "convsync:{1}:m:u 2\n3", Version: 9}}
	out, ok := decodeMarks(encodeMarks(in))
	if !ok || len(out) != 2 || out[0] != in[0] || out[1] != in[1] {
		t.Fatalf("decode(encode(%v)) = %v, %v", in, out, ok)
	}
	for _, bad := range []string{flushMessage, "", "[]", "x key", `[{"k":"","v":1}]`, `{"k":"a"}`} {
		if _, ok := decodeMarks(bad); ok {
			t.Errorf("decodeMarks(%q) ok; want a reset", bad)
		}
	}
}

// A burst of markers larger than the near cache's bound must not push out the marker
// that rules an older entry out: markers are not evicted by count.
func TestNearMarkersSurviveABurst(t *testing.T) {
	n := newNear(10, time.Minute, prometheus.NewRegistry())
	n.reset("subscribed", true)
	ctx := context.Background()
	gen := n.gen.Load() // a reader fetched v5 from Redis just before the commit of v6
	burst := []Mark{{Key: "m", Version: 6}}
	for i := range 100 {
		burst = append(burst, Mark{Key: "other" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Version: 6})
	}
	n.mark(burst)
	n.put(ctx, gen, "k", "m", Entry{Version: 5, Value: []byte("v5")})
	if e, ok := n.get(ctx, "k", "m"); ok {
		t.Fatalf("v5 served after its marker rose to 6 in a burst of %d markers: %q", len(burst), e.Value)
	}
	n.put(ctx, n.gen.Load(), "k", "m", Entry{Version: 6, Value: []byte("v6")})
	if _, ok := n.get(ctx, "k", "m"); !ok {
		t.Fatal("v6 not served")
	}
}
