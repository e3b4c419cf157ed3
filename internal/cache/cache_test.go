package cache_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/convsync/convsync/internal/cache"
	"github.com/convsync/convsync/internal/logging"
	"github.com/convsync/convsync/internal/testenv"
)

// contract runs the version rules every store must keep.
func contract(t *testing.T, s cache.Store, keys cache.Keys) {
	ctx := testenv.Context(t, time.Minute)
	page := "104400000000001"
	key, marker := keys.Entry(page, "conv", "u1"), keys.ConversationMarker(page, "u1")
	ttl := time.Minute

	if _, ok, err := s.Get(ctx, key, marker); ok || err != nil {
		t.Fatalf("%s: Get(empty) = hit %v, err %v; want a miss", s.Kind(), ok, err)
	}
	if ok, err := s.Set(ctx, key, marker, cache.Entry{Version: 5, Value: []byte("v5")}, ttl); !ok || err != nil {
		t.Fatalf("%s: Set(v5) on empty = %v, %v; want stored", s.Kind(), ok, err)
	}
	if e, ok, _ := s.Get(ctx, key, marker); !ok || e.Version != 5 || string(e.Value) != "v5" {
		t.Fatalf("%s: Get after Set(v5) = %+v, %v; want the v5 entry", s.Kind(), e, ok)
	}
	if ok, _ := s.Set(ctx, key, marker, cache.Entry{Version: 4, Value: []byte("v4")}, ttl); ok {
		t.Errorf("%s: Set(v4) over v5 stored; an older entry must never replace a newer one", s.Kind())
	}
	// The stale-write race: a reader loaded rows at v6, the projector commits v7 and
	// raises the marker, then the slow reader writes v6. The v6 write must not land and
	// the entry before the marker must not be served.
	if err := s.Mark(ctx, []cache.Mark{{Key: marker, Version: 7}}, ttl); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Get(ctx, key, marker); ok {
		t.Errorf("%s: entry v5 served after the marker rose to 7; want a miss", s.Kind())
	}
	if ok, _ := s.Set(ctx, key, marker, cache.Entry{Version: 6, Value: []byte("v6")}, ttl); ok {
		t.Errorf("%s: slow reader's v6 stored after the projector marked v7", s.Kind())
	}
	if ok, _ := s.Set(ctx, key, marker, cache.Entry{Version: 7, Value: []byte("v7")}, ttl); !ok {
		t.Errorf("%s: Set(v7) at the marker's version not stored", s.Kind())
	}
	if e, ok, _ := s.Get(ctx, key, marker); !ok || string(e.Value) != "v7" {
		t.Errorf("%s: Get = %+v, %v; want v7", s.Kind(), e, ok)
	}
	// Markers only rise.
	if err := s.Mark(ctx, []cache.Mark{{Key: marker, Version: 3}}, ttl); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Set(ctx, key, marker, cache.Entry{Version: 6, Value: []byte("v6")}, ttl); ok {
		t.Errorf("%s: a lower Mark(3) lowered the marker from 7", s.Kind())
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Get(ctx, key, marker); ok {
		t.Errorf("%s: entry served after Flush", s.Kind())
	}
}

func TestMemoryStoreKeepsTheVersionRules(t *testing.T) {
	contract(t, cache.NewMemory(100), cache.Keys{Prefix: "t:"})
}

func TestRedisStoreKeepsTheVersionRules(t *testing.T) {
	t.Parallel()
	rc, prefix := testenv.Redis(t)
	contract(t, cache.NewRedis(rc, prefix), cache.Keys{Prefix: prefix})
}

func TestRedisClusterKeepsTheVersionRules(t *testing.T) {
	t.Parallel()
	addrs := testenv.RedisCluster(t)
	opts, err := cache.RedisOptions("redis://" + strings.Join(addrs, ","))
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewUniversalClient(opts)
	defer rc.Close()
	if _, ok := rc.(*redis.ClusterClient); !ok {
		t.Fatalf("REDIS_URL with three addresses gave a %T, want a *redis.ClusterClient", rc)
	}
	s := cache.NewRedis(rc, "c:")
	contract(t, s, cache.Keys{Prefix: "c:"})
	// Markers of many pages land on every master in one pipelined Mark.
	ctx := testenv.Context(t, time.Minute)
	keys := cache.Keys{Prefix: "c:"}
	var marks []cache.Mark
	for i := range 50 {
		marks = append(marks, cache.Mark{Key: keys.PageMarker("p" + string(rune('a'+i%26)) + string(rune('a'+i/26))), Version: 9})
	}
	if err := s.Mark(ctx, marks, time.Minute); err != nil {
		t.Fatalf("Mark across cluster slots: %v", err)
	}

	// The near cache follows markers published from another client of the Cluster.
	api := startNear(t, rc, "cn:", time.Minute)
	other := redis.NewUniversalClient(opts)
	defer other.Close()
	projector := cache.New(cache.NewRedis(other, "cn:"), cache.Config{TTL: time.Minute, Prefix: "cn:"}, prometheus.NewRegistry(), logging.Discard())
	for i := range 20 { // pages on several masters
		page := "q" + string(rune('a'+i))
		key, marker := api.c.Keys().Entry(page, "page"), api.c.Keys().PageMarker(page)
		api.c.Set(ctx, key, marker, cache.Entry{Version: 1, Value: []byte("v1")})
		if _, hit := api.c.Get(ctx, key, marker); !hit {
			t.Fatalf("page %s: Get after Set = miss", page)
		}
		projector.Invalidate(ctx, []cache.Mark{{Key: marker, Version: 2}})
		eventually(t, 2*time.Second, "page "+page+": v1 no longer served after the marker rose on the Cluster", func() bool {
			_, hit := api.c.Get(ctx, key, marker)
			return !hit
		})
	}
}

func TestMemoryHonoursItsBoundAndTTL(t *testing.T) {
	m := cache.NewMemory(3)
	ctx := context.Background()
	for i, k := range []string{"a", "b", "c", "d"} {
		if ok, _ := m.Set(ctx, k, "m", cache.Entry{Version: int64(i + 1)}, time.Minute); !ok {
			t.Fatalf("Set(%s) not stored", k)
		}
	}
	if m.Len() != 3 {
		t.Errorf("memory cache with bound 3 holds %d keys", m.Len())
	}
	if _, ok, _ := m.Get(ctx, "a", "m"); ok {
		t.Errorf("least recently used key a still served after a fourth key; want it evicted")
	}
	if ok, _ := m.Set(ctx, "short", "m", cache.Entry{Version: 1}, 30*time.Millisecond); !ok {
		t.Fatal("Set(short) not stored")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, ok, _ := m.Get(ctx, "short", "m")
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("entry with a 30ms TTL still served after 5s")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
	if n := m.Cleanup(); n != 0 && m.Len() > 3 {
		t.Errorf("cleanup left %d keys", m.Len())
	}
}

func TestLoadCoalescesConcurrentMisses(t *testing.T) {
	c := cache.New(cache.NewMemory(100), cache.Defaults(), prometheus.NewRegistry(), logging.Discard())
	var calls atomic.Int32
	release := make(chan struct{})
	load := func(context.Context) (cache.Entry, error) {
		calls.Add(1)
		<-release
		return cache.Entry{Version: 1, Value: []byte("rows")}, nil
	}
	var wg sync.WaitGroup
	started := make(chan struct{}, 50)
	for range 50 {
		wg.Go(func() {
			started <- struct{}{}
			e, _, err := c.Load(context.Background(), "k", "m", nil, load)
			if err != nil || string(e.Value) != "rows" {
				t.Errorf("Load = %q, %v; want rows", e.Value, err)
			}
		})
	}
	for range 50 {
		<-started
	}
	// Give the goroutines a moment to reach the shared call, then let the load finish.
	deadline := time.Now().Add(2 * time.Second)
	for calls.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polling a condition with a deadline
	}
	close(release)
	wg.Wait()
	if n := calls.Load(); n > 2 {
		t.Errorf("50 concurrent loads of one key ran the loader %d times, want 1 (coalesced)", n)
	}
	if _, hit, _ := c.Load(context.Background(), "k", "m", nil, load); !hit {
		t.Errorf("Load after the first load = miss, want a hit")
	}
}

// A Redis outage degrades reads to the loader (Postgres), never to errors. An
// invalidation that fails meanwhile is lost (nothing piles up in memory, however long the
// outage), so when Redis returns with the old entry and without the marker, the check
// against the database stops it: the v1 entry is never served again, and hits come back.
func TestRedisOutageDegradesToLoaderAndRecovers(t *testing.T) {
	t.Parallel()
	srv := testenv.PrivateRedis(t)
	reg := prometheus.NewRegistry()
	cfg := cache.Defaults()
	cfg.URL = "redis://" + srv.Addr()
	c, closeFn, err := cache.Open(context.Background(), cfg, reg, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	if c.Kind() != "redis" {
		t.Fatalf("Open with a live Redis gave a %s cache", c.Kind())
	}
	ctx := testenv.Context(t, time.Minute)
	k := c.Keys()
	key, marker := k.Entry("p1", "page"), k.PageMarker("p1")
	var version atomic.Int64 // the rows' version in the database
	version.Store(1)
	current := func(context.Context) (int64, error) { return version.Load(), nil }
	load := func(context.Context) (cache.Entry, error) {
		v := version.Load()
		return cache.Entry{Version: v, Value: []byte{byte('0' + v)}}, nil
	}
	if _, _, err := c.Load(ctx, key, marker, current, load); err != nil {
		t.Fatal(err)
	}
	if _, hit, _ := c.Load(ctx, key, marker, current, load); !hit {
		t.Fatal("second Load = miss, want hit")
	}

	srv.Pause()      // a partition: Redis keeps the v1 entry but does not answer
	version.Store(2) // the projector commits while Redis is away; its invalidations fail
	for i := range 200 {
		marks := make([]cache.Mark, 1000)
		for j := range marks {
			marks[j] = cache.Mark{Key: k.PageMarker("p" + strconv.Itoa(i*1000+j)), Version: 2}
		}
		marks[0] = cache.Mark{Key: marker, Version: 2}
		c.Invalidate(ctx, marks)
	}
	e, hit, err := c.Load(ctx, key, marker, current, load)
	if err != nil || hit || e.Version != 2 {
		t.Fatalf("Load with Redis down = %+v, hit %v, err %v; want v2 from the loader, no error", e, hit, err)
	}
	if got := testutil.ToFloat64(requests(reg, "error")) + testutil.ToFloat64(requests(reg, "miss")); got < 1 {
		t.Errorf("reads during the outage counted %v misses and errors, want them counted", got)
	}

	srv.Resume()
	// After Redis returns, the old v1 entry, still there, must never be served again.
	deadline := time.Now().Add(10 * time.Second)
	for {
		e, hit, err := c.Load(ctx, key, marker, current, load)
		if err != nil {
			t.Fatal(err)
		}
		if hit && e.Version == 1 {
			t.Fatal("stale v1 entry served after the outage")
		}
		if hit && e.Version == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("cache not used again within 10s of Redis returning")
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}
}

// A process started while Redis is down (a split deployment's API during a Redis
// restart) must not keep a memory cache of its own for good: it uses Redis once Redis
// answers, so it shares entries and markers with the other processes.
func TestOpenWithRedisDownUsesRedisOnceItAnswers(t *testing.T) {
	t.Parallel()
	srv := testenv.PrivateRedis(t)
	srv.Stop()
	cfg := cache.Defaults()
	cfg.URL = "redis://" + srv.Addr()
	c, closeFn, err := cache.Open(context.Background(), cfg, prometheus.NewRegistry(), logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	if c.Kind() != "redis" {
		t.Fatalf("Open with Redis down gave a %s cache, want redis (used once it answers)", c.Kind())
	}
	ctx := testenv.Context(t, time.Minute)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	defer func() { cancel(); <-done }()
	if err := c.Ping(ctx); err == nil {
		t.Fatal("Ping with Redis down = nil, want an error (readiness says so)")
	}
	srv.Start()
	k := c.Keys()
	key, marker := k.Entry("p1", "page"), k.PageMarker("p1")
	load := func(context.Context) (cache.Entry, error) { return cache.Entry{Version: 1, Value: []byte("v1")}, nil }
	eventually(t, 10*time.Second, "the cache serves from Redis once it answers", func() bool {
		_, hit, err := c.Load(ctx, key, marker, nil, load)
		return err == nil && hit
	})
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rc.Close()
	if n, err := rc.Exists(ctx, key).Result(); err != nil || n != 1 {
		t.Errorf("the entry is not in Redis (exists %d, %v): the process did not share the store", n, err)
	}
}

func requests(reg *prometheus.Registry, result string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x", Help: "x"})
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "convsync_cache_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == result {
				g.Set(m.GetCounter().GetValue())
			}
		}
	}
	return g
}

func TestOpenWithoutRedisURLUsesMemory(t *testing.T) {
	cfg := cache.Defaults()
	c, closeFn, err := cache.Open(context.Background(), cfg, prometheus.NewRegistry(), logging.Discard())
	if err != nil || c.Kind() != "memory" {
		t.Fatalf("Open with REDIS_URL empty = %v, %v; want a memory cache", c, err)
	}
	closeFn()
}

func TestRedisOptions(t *testing.T) {
	tests := []struct {
		url     string
		addrs   int
		db      int
		master  string
		wantErr bool
	}{
		{"redis://127.0.0.1:6379/0", 1, 0, "", false},
		{"redis://:pw@10.0.0.1:6379/2", 1, 2, "", false},
		{"redis://a:1,b:2,c:3", 3, 0, "", false},
		{"redis://s1:26379,s2:26379?master=mymaster", 2, 0, "mymaster", false},
		{"http://x:1", 0, 0, "", true},
		{"redis://nohost", 0, 0, "", true},
		{"redis://h:1/x", 0, 0, "", true},
	}
	for _, tt := range tests {
		o, err := cache.RedisOptions(tt.url)
		if (err != nil) != tt.wantErr {
			t.Errorf("RedisOptions(%q) error = %v, want error %v", tt.url, err, tt.wantErr)
			continue
		}
		if err == nil && (len(o.Addrs) != tt.addrs || o.DB != tt.db || o.MasterName != tt.master) {
			t.Errorf("RedisOptions(%q) = %d addrs, db %d, master %q; want %d, %d, %q", tt.url, len(o.Addrs), o.DB, o.MasterName, tt.addrs, tt.db, tt.master)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("RedisOptions error %v leaks the password", err)
		}
	}
	if err := (cache.Config{TTL: time.Minute, MemoryMaxKeys: 1, MaxStaleness: time.Second, URL: "redis://h"}).Validate(); err == nil || !strings.Contains(err.Error(), "REDIS_URL") {
		t.Errorf("Validate(bad REDIS_URL) = %v, want an error naming REDIS_URL", err)
	}

}
