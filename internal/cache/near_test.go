package cache_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/convsync/convsync/internal/cache"
	"github.com/convsync/convsync/internal/logging"
	"github.com/convsync/convsync/internal/testenv"
)

// nearProcess is one process's cache over a shared Redis, with its housekeeping (the
// marker stream) running, as `convsync api` has it.
type nearProcess struct {
	c   *cache.Cache
	reg *prometheus.Registry
}

func startNear(t *testing.T, rc redis.UniversalClient, prefix string, nearTTL time.Duration) nearProcess {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := cache.Defaults()
	cfg.Prefix, cfg.NearTTL = prefix, nearTTL
	c := cache.New(cache.NewRedis(rc, prefix), cfg, reg, logging.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	p := nearProcess{c, reg}
	p.waitLive(t, true)
	return p
}

func (p nearProcess) metric(name string, labels ...string) float64 {
	mfs, _ := p.reg.Gather()
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func (p nearProcess) waitLive(t *testing.T, live bool) {
	t.Helper()
	want := map[bool]float64{true: 1, false: 0}[live]
	eventually(t, 10*time.Second, "near cache live = "+map[bool]string{true: "1", false: "0"}[live], func() bool {
		return p.metric("convsync_cache_near_live") == want
	})
}

// eventually polls cond (a condition with a deadline, not a timing assertion).
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNearCacheServesHitsInProcess(t *testing.T) {
	rc, prefix := testenv.Redis(t)
	api := startNear(t, rc, prefix, time.Minute)
	ctx := testenv.Context(t, time.Minute)
	k := api.c.Keys()
	key, marker := k.Entry("p1", "conv", "u1"), k.ConversationMarker("p1", "u1")
	if _, _, err := api.c.Load(ctx, key, marker, nil, func(context.Context) (cache.Entry, error) {
		return cache.Entry{Version: 3, Value: []byte("v3")}, nil
	}); err != nil {
		t.Fatal(err)
	}
	// The entry is gone from Redis (evicted, say): a hit now can only come from the near
	// cache, and it is still right (nothing newer was committed).
	if err := rc.Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	e, hit := api.c.Get(ctx, key, marker)
	if !hit || string(e.Value) != "v3" {
		t.Fatalf("Get after the Redis copy went = %q, hit %v; want v3 from the near cache", e.Value, hit)
	}
	if n := api.metric("convsync_cache_near_requests_total", "result", "hit"); n != 1 {
		t.Errorf("near hits = %v, want 1", n)
	}
}

func TestNearCacheFollowsOtherProcessesMarkers(t *testing.T) {
	rc, prefix := testenv.Redis(t)
	api := startNear(t, rc, prefix, time.Minute) // a long TTL: only the marker stream can end the entry
	projector := cache.New(cache.NewRedis(rc, prefix), cache.Config{TTL: time.Minute, Prefix: prefix}, prometheus.NewRegistry(), logging.Discard())
	ctx := testenv.Context(t, time.Minute)
	k := api.c.Keys()
	key, marker := k.Entry("p1", "conv", "u1"), k.ConversationMarker("p1", "u1")
	api.c.Set(ctx, key, marker, cache.Entry{Version: 5, Value: []byte("v5")})
	if _, hit := api.c.Get(ctx, key, marker); !hit {
		t.Fatal("Get after Set = miss")
	}
	projector.Invalidate(ctx, []cache.Mark{{Key: marker, Version: 6}})
	eventually(t, 2*time.Second, "the API process stops serving v5 after another process raised the marker to 6", func() bool {
		_, hit := api.c.Get(ctx, key, marker)
		return !hit
	})
	// A reader that loaded v5 before the commit cannot put it back, in either tier.
	api.c.Set(ctx, key, marker, cache.Entry{Version: 5, Value: []byte("v5")})
	if e, hit := api.c.Get(ctx, key, marker); hit {
		t.Fatalf("stale v5 write served back: %q", e.Value)
	}
}

func TestNearCacheEmptiesWhenTheStreamBreaks(t *testing.T) {
	t.Parallel()
	srv := testenv.PrivateRedis(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr(), ReadTimeout: 250 * time.Millisecond, MaxRetries: -1})
	defer rc.Close()
	prefix := "near:"
	api := startNear(t, rc, prefix, time.Minute)
	ctx := testenv.Context(t, time.Minute)
	k := api.c.Keys()
	key, marker := k.Entry("p1", "page"), k.PageMarker("p1")
	api.c.Set(ctx, key, marker, cache.Entry{Version: 1, Value: []byte("v1")})

	// A marker raised while the stream was down is never announced: here, written
	// straight into Redis. The near cache cannot know, and still serves v1...
	if err := rc.Set(ctx, marker, 2, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if _, hit := api.c.Get(ctx, key, marker); !hit {
		t.Fatal("near cache did not hold v1 (the test needs it to)")
	}
	// ...until its subscription breaks: then it must empty itself, and after it
	// subscribes again the read goes to Redis, whose marker rules v1 out.
	resets := api.metric("convsync_cache_near_resets_total", "reason", "lost")
	if err := rc.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the near cache resets after its subscription was killed", func() bool {
		return api.metric("convsync_cache_near_resets_total", "reason", "lost") > resets
	})
	api.waitLive(t, true)
	if e, hit := api.c.Get(ctx, key, marker); hit {
		t.Fatalf("v1 served after the stream broke and came back: %q (marker is 2)", e.Value)
	}

	// Redis stopped answering: the near cache stops serving within its heartbeat.
	api.c.Set(ctx, key, marker, cache.Entry{Version: 2, Value: []byte("v2")})
	srv.Pause()
	defer srv.Resume()
	api.waitLive(t, false)
	if _, hit := api.c.Get(ctx, key, marker); hit {
		t.Fatal("near cache served while Redis did not answer")
	}
}

func TestFlushEmptiesEveryNearCache(t *testing.T) {
	rc, prefix := testenv.Redis(t)
	api := startNear(t, rc, prefix, time.Minute)
	replay := cache.New(cache.NewRedis(rc, prefix), cache.Config{TTL: time.Minute, Prefix: prefix}, prometheus.NewRegistry(), logging.Discard())
	ctx := testenv.Context(t, time.Minute)
	k := api.c.Keys()
	key, marker := k.Entry("p1", "page"), k.PageMarker("p1")
	api.c.Set(ctx, key, marker, cache.Entry{Version: 50, Value: []byte("old tables")})
	// A replay swapped in rebuilt tables, whose versions restart lower, and flushed.
	if err := replay.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	replay.Set(ctx, key, marker, cache.Entry{Version: 3, Value: []byte("rebuilt")})
	eventually(t, 2*time.Second, "the API process serves the rebuilt entry after the flush", func() bool {
		e, hit := api.c.Get(ctx, key, marker)
		return hit && string(e.Value) == "rebuilt"
	})
}

func TestNearCacheConfig(t *testing.T) {
	cfg := cache.Defaults()
	cfg.NearTTL = -time.Second
	if err := cfg.Validate(); err == nil {
		t.Error("a negative CACHE_NEAR_TTL accepted")
	}
	cfg = cache.Defaults()
	cfg.TTL = time.Second // under the default near TTL: valid, the near TTL is capped
	if err := cfg.Validate(); err != nil {
		t.Errorf("CACHE_TTL=1s with the default near TTL refused: %v", err)
	}
	cfg = cache.Defaults()
	cfg.NearMaxKeys = 0
	if err := cfg.Validate(); err == nil {
		t.Error("CACHE_NEAR_MAX_KEYS 0 accepted with a near TTL")
	}
	// Off: a Redis cache with CACHE_NEAR_TTL=0 keeps no near copy.
	rc, prefix := testenv.Redis(t)
	reg := prometheus.NewRegistry()
	c := cache.New(cache.NewRedis(rc, prefix), cache.Config{TTL: time.Minute, Prefix: prefix}, reg, logging.Discard())
	ctx := testenv.Context(t, time.Minute)
	key, marker := c.Keys().Entry("p1", "page"), c.Keys().PageMarker("p1")
	c.Set(ctx, key, marker, cache.Entry{Version: 1, Value: []byte("v1")})
	_ = rc.Del(ctx, key)
	if _, hit := c.Get(ctx, key, marker); hit {
		t.Error("hit with the near cache off and the entry gone from Redis")
	}
	if n, _ := testutil.GatherAndCount(reg, "convsync_cache_near_requests_total"); n != 0 {
		t.Errorf("near cache metrics registered with the near cache off: %d", n)
	}
}

// A Redis user that may not publish (Redis 7 gives new ACL users no channels) still
// raises markers: the cache stays trusted, the failure is counted, and the entries
// other processes hold in their near caches end within CACHE_NEAR_TTL.
func TestUnpublishedMarkersKeepTheCacheTrusted(t *testing.T) {
	t.Parallel()
	srv := testenv.PrivateRedis(t)
	ctx := testenv.Context(t, time.Minute)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer admin.Close()
	if err := admin.Do(ctx, "ACL", "SETUSER", "nopublish", "on", ">secret-pw", "~*", "+@all", "resetchannels").Err(); err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "nopublish", Password: "secret-pw"})
	defer rc.Close()
	reg := prometheus.NewRegistry()
	c := cache.New(cache.NewRedis(rc, "np:"), cache.Config{TTL: time.Minute, Prefix: "np:"}, reg, logging.Discard())
	k := c.Keys()
	key, marker := k.Entry("p1", "page"), k.PageMarker("p1")
	c.Set(ctx, key, marker, cache.Entry{Version: 1, Value: []byte("v1")})
	c.Invalidate(ctx, []cache.Mark{{Key: marker, Version: 2}})
	if _, hit := c.Get(ctx, key, marker); hit {
		t.Fatal("v1 served after the marker rose to 2")
	}
	c.Set(ctx, key, marker, cache.Entry{Version: 2, Value: []byte("v2")})
	if e, hit := c.Get(ctx, key, marker); !hit || string(e.Value) != "v2" {
		t.Fatalf("Get after Set(v2) = %q, hit %v: a publish failure must not make the cache distrusted", e.Value, hit)
	}
	p := nearProcess{c, reg}
	if n := p.metric("convsync_cache_invalidations_total", "result", "unpublished"); n != 1 {
		t.Errorf("unpublished invalidations = %v, want 1", n)
	}
}
