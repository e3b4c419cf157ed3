package cache

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
)

// Config is the cache's configuration.
type Config struct {
	URL           string        // REDIS_URL: empty means memory; several addresses a Cluster
	TTL           time.Duration // CACHE_TTL
	Prefix        string        // CACHE_PREFIX
	MemoryMaxKeys int           // CACHE_MEMORY_MAX_KEYS: the in-memory store's bound
	// NearTTL (CACHE_NEAR_TTL) is how long the near cache, an in-process copy of hot
	// Redis entries kept current by Redis pub/sub, may keep an entry; 0 turns it off.
	NearTTL     time.Duration
	NearMaxKeys int // CACHE_NEAR_MAX_KEYS: the near cache's bound
	// MaxStaleness (CACHE_MAX_STALENESS) bounds how long an entry can outlive the rows it
	// was built from when its marker was lost (check.go).
	MaxStaleness time.Duration
	// WarmKeys (API_CACHE_REFRESH_MAX, set where the read API runs) bounds the entries read
	// lately that are rebuilt when their marker rises (warm.go); 0 keeps none warm.
	WarmKeys int
	// WarmFor is how long after its last read an entry is kept warm.
	WarmFor time.Duration
	// WarmHold bounds how long a commit's marker over an entry read lately waits for the
	// entry's rebuild (warm.go).
	WarmHold time.Duration
}

// Defaults returns the configuration used when nothing is set.
func Defaults() Config {
	return Config{TTL: 5 * time.Minute, Prefix: "convsync:", MemoryMaxKeys: 100_000, NearTTL: 2 * time.Second, NearMaxKeys: 20_000,
		MaxStaleness: 2 * time.Second, WarmFor: time.Minute, WarmHold: 250 * time.Millisecond}
}

// Validate reports the first invalid value, naming its variable.
func (c Config) Validate() error {
	switch {
	case c.TTL < time.Second:
		return fmt.Errorf("CACHE_TTL must be at least 1s, got %s", c.TTL)
	case c.MemoryMaxKeys < 1:
		return fmt.Errorf("CACHE_MEMORY_MAX_KEYS must be at least 1, got %d", c.MemoryMaxKeys)
	case c.NearTTL < 0:
		return fmt.Errorf("CACHE_NEAR_TTL must not be negative (0 turns the near cache off), got %s", c.NearTTL)
	case c.NearTTL > 0 && c.NearMaxKeys < 1:
		return fmt.Errorf("CACHE_NEAR_MAX_KEYS must be at least 1 when CACHE_NEAR_TTL is set, got %d", c.NearMaxKeys)
	case c.MaxStaleness < 100*time.Millisecond:
		return fmt.Errorf("CACHE_MAX_STALENESS must be at least 100ms, got %s", c.MaxStaleness)
	case c.WarmKeys < 0:
		return fmt.Errorf("API_CACHE_REFRESH_MAX must not be negative, got %d", c.WarmKeys)
	}
	if c.URL != "" {
		if _, err := RedisOptions(c.URL); err != nil {
			return fmt.Errorf("REDIS_URL: %w", err)
		}
	}
	return nil
}

// RedisOptions parses REDIS_URL: redis[s]://[user:password@]host:port[,host:port...][/db]
// [?master=name]. One address is a single node, several a Cluster, master= Sentinel.
func RedisOptions(raw string) (*redis.UniversalOptions, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("not a URL (want redis://host:port)") // the error would repeat the password
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("scheme %q, want redis or rediss", u.Scheme)
	}
	o := &redis.UniversalOptions{Addrs: strings.Split(u.Host, ",")}
	if u.User != nil {
		o.Username = u.User.Username()
		o.Password, _ = u.User.Password()
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		if o.DB, err = strconv.Atoi(p); err != nil {
			return nil, fmt.Errorf("database %q is not a number", p)
		}
	}
	o.MasterName = u.Query().Get("master")
	// A cache answers fast or not at all: when Redis is away a read must fall back to
	// Postgres in milliseconds, not after seconds of dial retries.
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = 500*time.Millisecond, 250*time.Millisecond, 250*time.Millisecond
	o.DialerRetries, o.MaxRetries = 1, 1
	o.ContextTimeoutEnabled = true
	for _, a := range o.Addrs {
		if !strings.Contains(a, ":") {
			return nil, fmt.Errorf("address %q has no port", a)
		}
	}
	return o, nil
}

// Cache is the front the projector and the read API use: a Store with metrics, errors
// degraded to misses, hits checked against the database (check.go), and coalesced loads.
type Cache struct {
	store Store
	keys  Keys
	ttl   time.Duration
	m     *metrics
	log   *slog.Logger
	sf    singleflight.Group
	near  *near // nil without a Watcher store or with CACHE_NEAR_TTL=0
	warm  *warm // nil with WarmKeys 0
	// gen rises at every failed invalidation and flush: a check made before then no
	// longer vouches for an entry, which is checked again before it is served.
	gen atomic.Uint64
	// flushes counts Flush calls: what was read or held before one must not be stored or
	// raised after it (a replay's rebuilt rows may have lower versions).
	flushes   atomic.Uint64
	checks    checks
	checking  singleflight.Group
	staleness time.Duration
	now       func() time.Time
	failing   atomic.Bool // the last invalidation failed (logged once per outage)
	mu        sync.Mutex
	// lastPublishWarn limits the warning about unpublished markers to one a minute.
	lastPublishWarn time.Time
}

// New wraps store.
func New(store Store, cfg Config, reg prometheus.Registerer, log *slog.Logger) *Cache {
	c := &Cache{store: store, keys: Keys{Prefix: cfg.Prefix}, ttl: cfg.TTL, m: newMetrics(reg, store.Kind()), log: log,
		checks: checks{max: 200_000}, staleness: cfg.MaxStaleness, now: time.Now}
	if c.staleness <= 0 {
		c.staleness = Defaults().MaxStaleness
	}
	if _, ok := store.(Watcher); ok && cfg.NearTTL > 0 {
		c.near = newNear(cfg.NearMaxKeys, min(cfg.NearTTL, cfg.TTL), reg) // never longer than the shared entries
	}
	if cfg.WarmKeys > 0 {
		d := Defaults()
		c.warm = newWarm(cfg.WarmKeys, cmp.Or(cfg.WarmFor, d.WarmFor), cmp.Or(cfg.WarmHold, d.WarmHold), reg)
	}
	return c
}

// Open builds the cache of cfg: Redis when REDIS_URL is set, else memory (and it says
// so). A Redis that does not answer at start is used all the same once it does: until
// then reads go to Postgres and /readyz says so; processes sharing one Redis never end
// up with caches of their own. close releases the Redis client.
func Open(ctx context.Context, cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Cache, func(), error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	memory := func(reason string) (*Cache, func(), error) {
		log.Warn("cache in memory", "reason", reason, "max_keys", cfg.MemoryMaxKeys)
		return New(NewMemory(cfg.MemoryMaxKeys), cfg, reg, log), func() {}, nil
	}
	if cfg.URL == "" {
		return memory("REDIS_URL is empty")
	}
	opts, _ := RedisOptions(cfg.URL)
	rc := redis.NewUniversalClient(opts)
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := rc.Ping(pctx).Err(); err != nil {
		log.Warn("redis unreachable at start: reads go to Postgres until it answers", "error", err)
	}
	reg.MustRegister(newPoolCollector(rc))
	log.Info("cache in redis", "addrs", len(opts.Addrs), "sentinel", opts.MasterName != "", "near_ttl", cfg.NearTTL)
	return New(NewRedis(rc, cfg.Prefix), cfg, reg, log), func() { _ = rc.Close() }, nil
}

// Keys names the entries and markers.
func (c *Cache) Keys() Keys { return c.keys }

// Kind is the store's kind.
func (c *Cache) Kind() string { return c.store.Kind() }

// Flush deletes every entry and marker under the prefix: after a replay swapped in
// rebuilt tables, whose versions may be lower than what was cached.
// The Redis store tells every process's near cache to empty itself too.
func (c *Cache) Flush(ctx context.Context) error {
	c.gen.Add(1)
	c.flushes.Add(1)
	err := c.store.Flush(ctx)
	if c.near != nil {
		c.near.flush()
	}
	if c.warm != nil {
		c.warm.reset()
	}
	return err
}

// Ping reports whether the store answers (readiness; an outage only degrades reads).
func (c *Cache) Ping(ctx context.Context) error { return c.store.Ping(ctx) }

// Get returns an entry no marker stops, or a miss; a store error is a miss too
// (counted). It does not check the entry against the database: Load does.
func (c *Cache) Get(ctx context.Context, key, marker string) (Entry, bool) {
	var gen uint64
	if c.near != nil {
		if e, ok := c.near.get(ctx, key, marker); ok {
			c.m.hit.Inc()
			return e, true
		}
		gen = c.near.gen.Load()
	}
	e, ok, err := c.store.Get(ctx, key, marker)
	switch {
	case err != nil:
		c.m.errors.Inc()
		c.log.Debug("cache get", "error", err)
		return Entry{}, false
	case ok:
		c.m.hit.Inc()
		if c.near != nil {
			c.near.put(ctx, gen, key, marker, e)
		}
	default:
		c.m.miss.Inc()
	}
	return e, ok
}

// Set stores e unless something newer is there or the marker is newer.
func (c *Cache) Set(ctx context.Context, key, marker string, e Entry) {
	var gen uint64
	if c.near != nil {
		gen = c.near.gen.Load()
	}
	c.set(ctx, gen, key, marker, e)
}

// set is Set of an entry read from Postgres when the near cache's generation was gen.
func (c *Cache) set(ctx context.Context, gen uint64, key, marker string, e Entry) bool {
	stored, err := c.store.Set(ctx, key, marker, e, c.ttl)
	switch {
	case err != nil:
		c.m.writes.WithLabelValues("error").Inc()
	case stored:
		c.m.writes.WithLabelValues("stored").Inc()
		if c.near != nil {
			c.near.put(ctx, gen, key, marker, e)
		}
	default:
		c.m.writes.WithLabelValues("rejected").Inc()
	}
	return stored
}

// Load is cache-aside: a fresh entry if there is one, else load's result, stored for the
// next reader. Concurrent loads of one key share one call (no stampede on Postgres).
// With current, a hit is served only while a check against the database vouches for it
// (check.go): an entry whose marker was lost ends within MaxStaleness all the same. With
// WarmKeys, the entry is rebuilt with load when its marker rises within WarmFor (warm.go).
func (c *Cache) Load(ctx context.Context, key, marker string, current Current, load Loader) (Entry, bool, error) {
	if e, ok := c.Get(ctx, key, marker); ok && (current == nil || c.fresh(ctx, key, marker, e, current)) {
		if c.warm != nil {
			c.warm.touch(key, marker, e.Version, load, c.now())
		}
		return e, true, nil
	}
	e, _, err := c.loadShared(ctx, key, marker, load)
	if err != nil {
		return Entry{}, false, err
	}
	if c.warm != nil {
		c.warm.touch(key, marker, e.Version, load, c.now())
	}
	return e, false, nil
}

// loadShared runs load once for every caller waiting on key, stores its entry, and
// records it as checked: it was read from the database just now. The query runs on a
// context of its own (loadTimeout), so a caller that gives up (a reader gone, a rebuild
// past its deadline) ends only its own wait, not the others'. An entry read before a
// Flush is not stored after it.
func (c *Cache) loadShared(ctx context.Context, key, marker string, load Loader) (Entry, bool, error) {
	type result struct {
		e      Entry
		stored bool
	}
	ch := c.sf.DoChan(key, func() (any, error) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loadTimeout)
		defer cancel()
		var gen uint64
		if c.near != nil {
			gen = c.near.gen.Load()
		}
		cgen, epoch, at := c.gen.Load(), c.flushes.Load(), c.now()
		e, err := load(lctx)
		if err != nil {
			return result{}, err
		}
		if c.flushes.Load() != epoch {
			return result{e, false}, nil
		}
		stored := c.set(lctx, gen, key, marker, e)
		c.checks.put(key, checked{version: e.Version, at: at, gen: cgen})
		return result{e, stored}, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return Entry{}, false, r.Err
		}
		res := r.Val.(result)
		return res.e, res.stored, nil
	case <-ctx.Done():
		return Entry{}, false, ctx.Err()
	}
}

// loadTimeout bounds a load shared by several callers, whatever each of them waits.
const loadTimeout = 10 * time.Second

// Invalidate raises markers after a commit: entries older than them are no longer
// served. When the store fails, the markers are lost (nothing is kept: an outage must
// not grow memory) and the generation rises, so this process checks every entry against
// the database again before serving it; other processes' checks end within
// MaxStaleness.
//
// With warm entries, a marker that passes an entry this process read lately rises only
// once that entry is rebuilt (in the background, WarmHold at most): its readers
// keep hitting the entry before the commit meanwhile, and then hit the new one, instead
// of missing in between (warm.go).
func (c *Cache) Invalidate(ctx context.Context, marks []Mark) {
	if len(marks) == 0 {
		return
	}
	if c.warm != nil {
		marks = c.prebuild(marks)
	}
	c.raise(ctx, marks)
}

// raise raises marks now: in this process's near cache and in the store.
func (c *Cache) raise(ctx context.Context, marks []Mark) {
	if len(marks) == 0 {
		return
	}
	if c.near != nil {
		c.near.mark(marks) // this process at once; others through the store's stream
	}
	err := c.store.Mark(ctx, marks, 2*c.ttl)
	if errors.Is(err, ErrPublish) {
		// Raised in Redis; only other processes' near caches did not hear of it (their
		// entries still end within CACHE_NEAR_TTL). Not a reason to distrust the cache.
		c.m.invalidations.WithLabelValues("unpublished").Add(float64(len(marks)))
		c.mu.Lock()
		warn := time.Since(c.lastPublishWarn) > time.Minute
		if warn {
			c.lastPublishWarn = time.Now()
		}
		c.mu.Unlock()
		if warn {
			c.log.Warn("cache markers raised but not published to other processes' near caches", "error", err)
		}
		return
	}
	if err != nil {
		c.gen.Add(1)
		c.m.invalidations.WithLabelValues("error").Add(float64(len(marks)))
		if !c.failing.Swap(true) {
			c.log.Warn("cache invalidation failed: entries are checked against the database before they are served", "error", err)
		}
		return
	}
	if c.failing.Swap(false) {
		c.log.Info("cache invalidations work again")
	}
	c.m.invalidations.WithLabelValues("ok").Add(float64(len(marks)))
}

// Run does the housekeeping until ctx ends: expired entries of the memory store, checks
// too old to vouch for anything, and entries no longer read lately. It rebuilds the
// entries kept warm.
//
// With a near cache or warm entries, it also follows the store's marker stream; the near
// cache serves, and other processes' commits rebuild warm entries, only while this runs.
func (c *Cache) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	if m, ok := c.store.(*Memory); ok {
		wg.Go(func() { _ = m.Run(ctx, 30*time.Second) })
	}
	if w, ok := c.store.(Watcher); ok && (c.near != nil || c.warm != nil) {
		wg.Go(func() { _ = w.Watch(ctx, c.watchHandler()) })
	}
	if c.warm != nil {
		wg.Go(func() { c.runWarm(ctx) })
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			now := c.now()
			c.checks.expire(now.Add(-c.staleness))
			if c.warm != nil {
				c.warm.expire(now.Add(-c.warm.hotFor))
			}
		}
	}
}

// watchHandler routes the marker stream to the near cache and the warm entries.
func (c *Cache) watchHandler() WatchHandler {
	h := WatchHandler{Ready: func() {}, Lost: func(error) {}, Marks: func([]Mark) {}, Reset: func() {}}
	if c.near != nil {
		h = c.near.handler(c)
	}
	if c.warm != nil {
		marks, reset := h.Marks, h.Reset
		h.Marks = func(m []Mark) { marks(m); c.warm.marked(m, c.now()) }
		h.Reset = func() { reset(); c.warm.reset() }
	}
	return h
}
