package cache_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/convsync/convsync/internal/cache"
	"github.com/convsync/convsync/internal/logging"
	"github.com/convsync/convsync/internal/testenv"
)

// rows stands for the database: the version of one conversation's rows, and how often a
// loader read them.
type rows struct {
	version atomic.Int64
	loads   atomic.Int64
}

func (r *rows) loader() cache.Loader {
	return func(context.Context) (cache.Entry, error) {
		r.loads.Add(1)
		v := r.version.Load()
		return cache.Entry{Version: v, Value: []byte("v" + strconv.FormatInt(v, 10))}, nil
	}
}

// startWarm is a read API process's cache over Redis keeping warmKeys entries warm.
func startWarm(t *testing.T, rc redis.UniversalClient, prefix string, warmKeys int, nearTTL time.Duration) nearProcess {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := cache.Defaults()
	cfg.Prefix, cfg.NearTTL, cfg.WarmKeys = prefix, nearTTL, warmKeys
	c := cache.New(cache.NewRedis(rc, prefix), cfg, reg, logging.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return nearProcess{c, reg}
}

// The read API and the projector in separate processes: a commit in the projector's
// process rebuilds, in the API's process, the entry the API served, so the next reader
// hits the new version; no reader loaded it.
func TestReadEntriesAreRebuiltWhenAnotherProcessCommits(t *testing.T) {
	for _, tc := range []struct {
		name    string
		nearTTL time.Duration
	}{{"near cache on", 2 * time.Second}, {"near cache off", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			rc, prefix := testenv.Redis(t)
			api := startWarm(t, rc, prefix, 100, tc.nearTTL)
			projector := cache.New(cache.NewRedis(rc, prefix), cache.Config{TTL: time.Minute, Prefix: prefix}, prometheus.NewRegistry(), logging.Discard())
			ctx := testenv.Context(t, time.Minute)
			k := api.c.Keys()
			key, marker := k.Entry("p1", "conv", "u1"), k.ConversationMarker("p1", "u1")
			var db rows
			db.version.Store(5)
			// The stream must be up before the commit, or the API process never hears of it.
			eventually(t, 10*time.Second, "the marker stream is subscribed", func() bool {
				return rc.PubSubNumSub(ctx, prefix+"marks").Val()[prefix+"marks"] > 0
			})
			if e, hit, err := api.c.Load(ctx, key, marker, nil, db.loader()); err != nil || hit || e.Version != 5 {
				t.Fatalf("first Load = %+v, hit %v, %v; want a miss loading v5", e, hit, err)
			}
			db.version.Store(6)
			projector.Invalidate(ctx, []cache.Mark{{Key: marker, Version: 6}})
			eventually(t, 5*time.Second, "the entry the API read is rebuilt at v6 and counted", func() bool {
				e, hit := api.c.Get(ctx, key, marker)
				return hit && e.Version == 6 && api.metric("convsync_cache_warm_refreshes_total", "result", "stored") == 1
			})
			if n := db.loads.Load(); n != 2 {
				t.Errorf("loads = %d, want 2 (the reader's miss and one rebuild)", n)
			}
		})
	}
}

// startInProcess is `convsync all`'s cache, in memory, keeping 10 entries warm and
// holding markers over them for hold at most, with its housekeeping running until the
// test ends.
func startInProcess(t *testing.T, hold time.Duration) (nearProcess, context.Context) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := cache.Defaults()
	cfg.WarmKeys, cfg.WarmHold = 10, hold
	c := cache.New(cache.NewMemory(100), cfg, reg, logging.Discard())
	ctx, cancel := context.WithCancel(testenv.Context(t, time.Minute))
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return nearProcess{c, reg}, ctx
}

// `convsync all`: the projector's hook and the read API share one cache (memory here);
// the commit's own Invalidate rebuilds what was read, and a rebuild that reads rows older
// than the marker (a lagging replica) never replaces the newer entry nor is served.
func TestReadEntriesAreRebuiltInProcessAndNeverGoBack(t *testing.T) {
	p, ctx := startInProcess(t, cache.Defaults().WarmHold)
	c := p.c
	k := c.Keys()
	key, marker := k.Entry("p1", "list", "25", ""), k.PageMarker("p1")
	var db rows
	db.version.Store(10)
	if _, _, err := c.Load(ctx, key, marker, nil, db.loader()); err != nil {
		t.Fatal(err)
	}
	db.version.Store(11)
	c.Invalidate(ctx, []cache.Mark{{Key: marker, Version: 11}})
	eventually(t, 5*time.Second, "rebuilt at v11", func() bool {
		e, hit := c.Get(ctx, key, marker)
		return hit && e.Version == 11
	})

	// The database answers with v11 still while the marker says 12: loaded twice (a load
	// under way may predate the marker), then given up; v11 is not served under marker 12.
	c.Invalidate(ctx, []cache.Mark{{Key: marker, Version: 12}})
	eventually(t, 5*time.Second, "the rebuild gives up on rows older than the marker", func() bool {
		return p.metric("convsync_cache_warm_refreshes_total", "result", "older") == 1
	})
	if e, hit := c.Get(ctx, key, marker); hit {
		t.Fatalf("v%d served under marker 12", e.Version)
	}
	if n := db.loads.Load(); n != 4 {
		t.Errorf("loads = %d, want 4 (miss, rebuild, two tries at v12)", n)
	}
}

// In the projector's own process a commit's marker over an entry read lately rises only
// once the entry is rebuilt: readers hit the entry from before the commit meanwhile, then
// the new one, and never miss.
func TestMarkersOverReadEntriesRiseAfterTheirRebuild(t *testing.T) {
	p, ctx := startInProcess(t, time.Minute) // only the rebuild raises the marker here
	c := p.c
	k := c.Keys()
	key, marker := k.Entry("p1", "conv", "u1"), k.ConversationMarker("p1", "u1")
	gate := make(chan struct{})
	load := gatedLoader(1, gate)
	if _, _, err := c.Load(ctx, key, marker, nil, load.loader()); err != nil {
		t.Fatal(err)
	}
	misses := func() float64 { return p.metric("convsync_cache_requests_total", "result", "miss") }
	before := misses()

	load.version.Store(2)
	c.Invalidate(ctx, []cache.Mark{{Key: marker, Version: 2}})
	if e, hit := c.Get(ctx, key, marker); !hit || e.Version != 1 {
		t.Fatalf("Get while the rebuild runs = v%d, hit %v; want the entry from before the commit", e.Version, hit)
	}
	close(gate)
	eventually(t, 5*time.Second, "the rebuilt entry is served", func() bool {
		e, hit := c.Get(ctx, key, marker)
		return hit && e.Version == 2
	})
	if n := misses() - before; n != 0 {
		t.Errorf("%v misses across the commit, want none", n)
	}
}

// A rebuild that never finishes holds the marker back WarmHold at most: then it rises and
// the entry from before the commit is no longer served. A Flush drops what is held: the
// rows it stood for are gone.
func TestHeldMarkersRiseAfterWarmHoldWhateverTheRebuild(t *testing.T) {
	const hold = 300 * time.Millisecond
	p, ctx := startInProcess(t, hold)
	c := p.c
	k := c.Keys()
	key, marker := k.Entry("p1", "conv", "u1"), k.ConversationMarker("p1", "u1")
	load := gatedLoader(1, make(chan struct{})) // never opened: every rebuild hangs
	if _, _, err := c.Load(ctx, key, marker, nil, load.loader()); err != nil {
		t.Fatal(err)
	}
	load.version.Store(2)
	start := time.Now()
	c.Invalidate(ctx, []cache.Mark{{Key: marker, Version: 2}})
	eventually(t, 5*time.Second, "the held marker rises", func() bool {
		_, hit := c.Get(ctx, key, marker)
		return !hit
	})
	if waited := time.Since(start); waited < hold/2 {
		t.Errorf("the marker rose after %s; a rebuild under way holds it for about %s", waited, hold)
	}

	// Held across a Flush: never raised after it.
	other, otherMarker := k.Entry("p2", "conv", "u2"), k.ConversationMarker("p2", "u2")
	load2 := gatedLoader(1, make(chan struct{}))
	if _, _, err := c.Load(ctx, other, otherMarker, nil, load2.loader()); err != nil {
		t.Fatal(err)
	}
	c.Invalidate(ctx, []cache.Mark{{Key: otherMarker, Version: 9}})
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	c.Set(ctx, other, otherMarker, cache.Entry{Version: 1, Value: []byte("rebuilt tables, v1")})
	time.Sleep(2 * hold) // past the hold: a raise would have come by now
	if e, hit := c.Get(ctx, other, otherMarker); !hit || e.Version != 1 {
		t.Errorf("after a Flush, an entry of the rebuilt tables = v%d, hit %v: a marker held from before the Flush was raised", e.Version, hit)
	}
}

// gated is a loader of one row whose loads after the first wait for gate.
type gated struct {
	version atomic.Int64
	gate    chan struct{}
}

func gatedLoader(v int64, gate chan struct{}) *gated {
	g := &gated{gate: gate}
	g.version.Store(v)
	return g
}

func (g *gated) loader() cache.Loader {
	first := atomic.Bool{}
	first.Store(true)
	return func(ctx context.Context) (cache.Entry, error) {
		v := g.version.Load()
		if !first.Swap(false) {
			select {
			case <-g.gate:
			case <-ctx.Done():
				return cache.Entry{}, ctx.Err()
			}
		}
		return cache.Entry{Version: v, Value: []byte("v" + strconv.FormatInt(v, 10))}, nil
	}
}

// A load that several callers share runs on a context of its own: the caller that started
// it giving up (a reader gone, a rebuild past its deadline) fails only its own wait.
func TestASharedLoadOutlivesTheCallerThatStartedIt(t *testing.T) {
	c := cache.New(cache.NewMemory(100), cache.Defaults(), prometheus.NewRegistry(), logging.Discard())
	k := c.Keys()
	key, marker := k.Entry("p1", "page"), k.PageMarker("p1")
	started, release := make(chan struct{}), make(chan struct{})
	load := func(ctx context.Context) (cache.Entry, error) {
		close(started)
		select {
		case <-release:
			return cache.Entry{Version: 1, Value: []byte("v1")}, nil
		case <-ctx.Done():
			return cache.Entry{}, ctx.Err()
		}
	}
	first, cancelFirst := context.WithCancel(context.Background())
	firstErr := make(chan error, 1)
	go func() { _, _, err := c.Load(first, key, marker, nil, load); firstErr <- err }()
	<-started
	second := make(chan error, 1)
	go func() {
		e, _, err := c.Load(testenv.Context(t, time.Minute), key, marker, nil, load)
		if err == nil && e.Version != 1 {
			err = fmt.Errorf("got v%d", e.Version)
		}
		second <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the second caller join the load under way
	cancelFirst()
	if err := <-firstErr; err == nil {
		t.Error("the caller that gave up got no error")
	}
	close(release)
	if err := <-second; err != nil {
		t.Fatalf("the second caller of a shared load = %v, want v1: the first caller's end failed it", err)
	}
}
