package cache

import (
	"context"
	"sync"
	"time"
)

// Current returns the version that the rows an entry stands for (its marker's page or
// conversation) have now in the database the entry was read from. The cache checks hit
// entries against it, so that an entry no marker stopped still ends within MaxStaleness.
type Current func(ctx context.Context) (int64, error)

// Markers stop an entry at once after a commit, but a marker can be lost: a projector
// killed between COMMIT and raising it, a COMMIT whose answer was lost (the retry finds
// the batch applied and touches nothing), a Redis failover or eviction, an outage of the
// store while markers were to be raised. Checks bound what such a loss can cost: an entry
// is served only while a check against the database, made at most MaxStaleness ago in
// this process and since its last failed invalidation, found it current. A check costs
// one primary-key lookup; a hot entry is checked again in the background from half the
// bound on, so readers of hot keys never wait for one.

// checked is what the last check of an entry found.
type checked struct {
	version int64     // the entry's version, found current
	at      time.Time // when the check began: it vouches for the rows committed before
	gen     uint64    // the cache's generation then
}

// checks remembers the last check of each entry read lately, bounded.
type checks struct {
	mu  sync.Mutex
	m   map[string]checked
	max int
}

func (s *checks) get(key string) (checked, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.m[key]
	return c, ok
}

func (s *checks) put(key string, c checked) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil || len(s.m) >= s.max {
		s.m = make(map[string]checked) // a burst of keys: forget them all, they are checked again
	}
	s.m[key] = c
}

// expire forgets checks older than before.
func (s *checks) expire(before time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, c := range s.m {
		if c.at.Before(before) {
			delete(s.m, k)
		}
	}
}

// fresh reports whether the hit e at key may be served: checked recently enough, or
// checked now. A check that finds newer rows raises the marker (every process then stops
// serving the entry, and a failover's lost marker is back) and reports false.
func (c *Cache) fresh(ctx context.Context, key, marker string, e Entry, current Current) bool {
	gen := c.gen.Load()
	if ch, ok := c.checks.get(key); ok && ch.gen == gen && ch.version == e.Version {
		switch age := c.now().Sub(ch.at); {
		case age < c.staleness/2:
			return true
		case age < c.staleness:
			c.recheck(key, marker, e, current)
			return true
		}
	}
	return c.check(ctx, key, marker, e, current, gen)
}

// recheck checks key in the background, once however many readers ask.
func (c *Cache) recheck(key, marker string, e Entry, current Current) {
	c.checking.DoChan(key, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), c.staleness)
		defer cancel()
		c.check(ctx, key, marker, e, current, c.gen.Load())
		return nil, nil
	})
}

func (c *Cache) check(ctx context.Context, key, marker string, e Entry, current Current, gen uint64) bool {
	at := c.now()
	v, err := current(ctx)
	switch {
	case err != nil:
		c.m.checks.WithLabelValues("error").Inc()
		return false // nothing vouches for the entry: the reader goes to the database
	case v > e.Version:
		c.m.checks.WithLabelValues("stale").Inc()
		c.raise(ctx, []Mark{{Key: marker, Version: v}}) // a lost marker: raised at once, never held
		return false
	}
	c.m.checks.WithLabelValues("current").Inc()
	c.checks.put(key, checked{version: e.Version, at: at, gen: gen})
	return true
}
