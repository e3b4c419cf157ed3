package cache

import (
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
}

// Defaults returns the configuration used when nothing is set.
func Defaults() Config {
	return Config{TTL: 5 * time.Minute, Prefix: "convsync:", MemoryMaxKeys: 100_000, NearTTL: 2 * time.Second, NearMaxKeys: 20_000}
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
// degraded to misses, distrust after a failed invalidation, and coalesced loads.
type Cache struct {
	store    Store
	keys     Keys
	ttl      time.Duration
	m        *metrics
	log      *slog.Logger
	sf       singleflight.Group
	near     *near // nil without a Watcher store or with CACHE_NEAR_TTL=0
	distrust atomic.Bool
	mu       sync.Mutex
	pending  map[string]int64 // markers not raised yet because the store failed
	lastTry  time.Time
	// lastPublishWarn limits the warning about unpublished markers to one a minute.
	lastPublishWarn time.Time
}

// New wraps store.
func New(store Store, cfg Config, reg prometheus.Registerer, log *slog.Logger) *Cache {
	c := &Cache{store: store, keys: Keys{Prefix: cfg.Prefix}, ttl: cfg.TTL, m: newMetrics(reg, store.Kind()), log: log}
	if _, ok := store.(Watcher); ok && cfg.NearTTL > 0 {
		c.near = newNear(cfg.NearMaxKeys, min(cfg.NearTTL, cfg.TTL), reg) // never longer than the shared entries
	}
	return c
}

// Open builds the cache of cfg: Redis when REDIS_URL is set and answers at start, else
// memory (and it says so). close releases the Redis client.
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
		_ = rc.Close()
		return memory("redis unreachable at start: " + err.Error())
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
	err := c.store.Flush(ctx)
	if c.near != nil {
		c.near.flush()
	}
	return err
}

// Ping reports whether the store answers (readiness; an outage only degrades reads).
func (c *Cache) Ping(ctx context.Context) error { return c.store.Ping(ctx) }

// Get returns a fresh entry, or a miss; a store error is a miss too (counted).
func (c *Cache) Get(ctx context.Context, key, marker string) (Entry, bool) {
	if !c.trusted(ctx) {
		c.m.miss.Inc()
		return Entry{}, false
	}
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
func (c *Cache) set(ctx context.Context, gen uint64, key, marker string, e Entry) {
	if c.distrust.Load() {
		return
	}
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
}

// Load is cache-aside: a fresh entry if there is one, else load's result, stored for the
// next reader. Concurrent loads of one key share one call (no stampede on Postgres).
func (c *Cache) Load(ctx context.Context, key, marker string, load func(ctx context.Context) (Entry, error)) (Entry, bool, error) {
	if e, ok := c.Get(ctx, key, marker); ok {
		return e, true, nil
	}
	v, err, _ := c.sf.Do(key, func() (any, error) {
		var gen uint64
		if c.near != nil {
			gen = c.near.gen.Load()
		}
		e, err := load(ctx)
		if err != nil {
			return Entry{}, err
		}
		c.set(ctx, gen, key, marker, e)
		return e, nil
	})
	if err != nil {
		return Entry{}, false, err
	}
	return v.(Entry), false, nil
}

// Invalidate raises markers after a commit: entries older than them are no longer
// served. When the store fails, the markers are kept and raised again as soon as it
// answers (markers only rise, so late is safe); until then this process does not trust
// the cache.
func (c *Cache) Invalidate(ctx context.Context, marks []Mark) {
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
		c.m.invalidations.WithLabelValues("error").Add(float64(len(marks)))
		c.mu.Lock()
		if c.pending == nil {
			c.pending = map[string]int64{}
		}
		for _, m := range marks {
			c.pending[m.Key] = max(c.pending[m.Key], m.Version)
		}
		c.mu.Unlock()
		if !c.distrust.Swap(true) {
			c.log.Warn("cache invalidation failed: reads bypass the cache until the markers are raised", "error", err)
		}
		return
	}
	c.m.invalidations.WithLabelValues("ok").Add(float64(len(marks)))
}

// trusted reports whether entries may be served; after a failed invalidation it tries,
// at most once a second, to raise the pending markers, and trusts the cache again once
// they are.
func (c *Cache) trusted(ctx context.Context) bool {
	if !c.distrust.Load() {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.distrust.Load() {
		return true
	}
	if time.Since(c.lastTry) < time.Second {
		return false
	}
	c.lastTry = time.Now()
	marks := make([]Mark, 0, len(c.pending))
	for k, v := range c.pending {
		marks = append(marks, Mark{Key: k, Version: v})
	}
	if err := c.store.Mark(ctx, marks, 2*c.ttl); err != nil {
		return false
	}
	c.pending = nil
	c.distrust.Store(false)
	c.log.Info("cache markers raised after an outage: in use again", "markers", len(marks))
	return false
}

// Run does the housekeeping until ctx ends: expired entries of the memory store, and
// markers left pending by an outage (a process that only writes, like the projector,
// never reads, so it raises them here).
//
// With a near cache, it also follows the store's marker stream; the near cache serves
// only while this runs.
func (c *Cache) Run(ctx context.Context) error {
	if m, ok := c.store.(*Memory); ok {
		return m.Run(ctx, 30*time.Second)
	}
	if w, ok := c.store.(Watcher); ok && c.near != nil {
		done := make(chan error, 1)
		go func() { done <- w.Watch(ctx, c.near.handler(c)) }()
		defer func() { <-done }()
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			c.trusted(ctx)
		}
	}
}
