package cache

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Watcher is a shared store (Redis) that streams the markers every process raises, so a
// process can keep a near cache: a small in-process copy of hot entries in front of the
// shared store, which a hit serves without a network round trip.
type Watcher interface {
	// Watch calls h as markers are raised anywhere until ctx ends. Ready comes each time
	// the stream (re)starts; Lost when it breaks (what was raised meanwhile is unknown);
	// Reset when every entry must go (a Flush, or a message it cannot read).
	Watch(ctx context.Context, h WatchHandler) error
}

// WatchHandler receives a Watcher's stream.
type WatchHandler struct {
	Ready func()
	Lost  func(err error)
	Marks func([]Mark)
	Reset func()
}

// near is the near cache: a Memory store of entries under the same version rules, and
// markers the watch stream raises. It serves only while the stream is live, and it is
// emptied whenever the stream (re)starts or breaks, since markers raised meanwhile were
// missed. An entry goes in only if no reset happened since it was read from the shared
// store (gen), so a read that straddles a reset cannot bring back what the reset
// removed. Markers are kept apart from the entries, by time and not by count: a burst of
// markers must never push out the very marker that rules an old entry out (entries live
// CACHE_NEAR_TTL, markers twice that). The TTL is the bound on staleness even if the
// stream failed silently, which Watch's heartbeat also guards against.
type near struct {
	mem  *Memory // entries only
	ttl  time.Duration
	mu   sync.RWMutex // write-held while resetting; read-held while an entry goes in
	gen  atomic.Uint64
	live atomic.Bool
	m    nearMetrics

	mmu       sync.Mutex
	marks     map[string]nearMark
	lastSweep time.Time
	warned    bool // a stream that never came up was logged once
}

type nearMark struct {
	version int64
	expires time.Time
}

type nearMetrics struct {
	hit, miss prometheus.Counter
	resets    *prometheus.CounterVec
	live      prometheus.Gauge
}

func newNear(maxKeys int, ttl time.Duration, reg prometheus.Registerer) *near {
	req := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "convsync_cache_near_requests_total",
		Help: "Reads of the in-process near cache in front of Redis, by result: hit, miss (then Redis is read).",
	}, []string{"result"})
	n := &near{mem: NewMemory(maxKeys), ttl: ttl, marks: map[string]nearMark{}, m: nearMetrics{
		hit: req.WithLabelValues("hit"), miss: req.WithLabelValues("miss"),
		resets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "convsync_cache_near_resets_total",
			Help: "Times the near cache was emptied, by reason: subscribed, lost (the marker stream broke), flush.",
		}, []string{"reason"}),
		live: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "convsync_cache_near_live",
			Help: "1 while the near cache serves (its marker stream from Redis is live), else 0.",
		}),
	}}
	reg.MustRegister(req, n.m.resets, n.m.live)
	for _, r := range []string{"subscribed", "lost", "flush"} {
		n.m.resets.WithLabelValues(r) // every reason from the start, at 0
	}
	return n
}

// marker is the newest version raised for key (0: none known).
func (n *near) marker(key string) int64 {
	n.mmu.Lock()
	defer n.mmu.Unlock()
	if m, ok := n.marks[key]; ok && time.Now().Before(m.expires) {
		return m.version
	}
	return 0
}

// get serves a fresh entry while the stream is live.
func (n *near) get(ctx context.Context, key, marker string) (Entry, bool) {
	if !n.live.Load() {
		return Entry{}, false
	}
	e, ok, _ := n.mem.Get(ctx, key, "")
	if ok && e.Version < n.marker(marker) {
		ok = false
	}
	if ok {
		n.m.hit.Inc()
	} else {
		n.m.miss.Inc()
	}
	return e, ok
}

// put keeps e, read from the shared store when the generation was gen (get checks the
// marker again, so a marker raised after this check still rules e out).
func (n *near) put(ctx context.Context, gen uint64, key, marker string, e Entry) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.live.Load() && n.gen.Load() == gen && e.Version >= n.marker(marker) {
		_, _ = n.mem.Set(ctx, key, "", e, n.ttl)
	}
}

// mark raises markers: what other processes (or this one) committed.
func (n *near) mark(marks []Mark) {
	now := time.Now()
	expires := now.Add(2 * n.ttl)
	n.mmu.Lock()
	defer n.mmu.Unlock()
	for _, m := range marks {
		if cur, ok := n.marks[m.Key]; !ok || m.Version >= cur.version || !now.Before(cur.expires) {
			n.marks[m.Key] = nearMark{version: max(m.Version, cur.version), expires: expires}
		}
	}
	if now.Sub(n.lastSweep) > n.ttl {
		n.lastSweep = now
		for k, m := range n.marks {
			if !now.Before(m.expires) {
				delete(n.marks, k)
			}
		}
	}
}

// empty drops every entry and marker and starts a new generation; callers hold mu.
func (n *near) empty() {
	n.gen.Add(1)
	_ = n.mem.Flush(context.Background())
	n.mmu.Lock()
	n.marks = map[string]nearMark{}
	n.mmu.Unlock()
}

// reset empties the near cache and says whether it serves from now on.
func (n *near) reset(reason string, live bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.live.Store(false)
	n.empty()
	n.m.resets.WithLabelValues(reason).Inc()
	if live {
		n.live.Store(true)
		n.m.live.Set(1)
	} else {
		n.m.live.Set(0)
	}
}

// flush empties the near cache and leaves it serving, or not, as it was.
func (n *near) flush() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.empty()
	n.m.resets.WithLabelValues("flush").Inc()
}

func (n *near) handler(c *Cache) WatchHandler {
	return WatchHandler{
		Ready: func() { n.reset("subscribed", true) },
		Lost: func(err error) {
			n.mmu.Lock()
			first := !n.warned
			n.warned = true
			n.mmu.Unlock()
			if n.live.Load() || first {
				c.log.Warn("near cache off: no marker stream from redis", "error", err)
			}
			n.reset("lost", false)
		},
		Marks: n.mark,
		Reset: n.flush,
	}
}

// The marker stream's messages: the markers as JSON, or "*" for a flush.
const flushMessage = "*"

type markJSON struct {
	K string `json:"k"`
	V int64  `json:"v"`
}

func encodeMarks(marks []Mark) string {
	out := make([]markJSON, len(marks))
	for i, m := range marks {
		out[i] = markJSON{m.Key, m.Version}
	}
	b, _ := json.Marshal(out) // strings and numbers: cannot fail
	return string(b)
}

// decodeMarks reads a message; ok is false for a flush or a message it cannot read
// (either way the receiver resets: safe).
func decodeMarks(msg string) (marks []Mark, ok bool) {
	var in []markJSON
	if msg == flushMessage || json.Unmarshal([]byte(msg), &in) != nil || len(in) == 0 {
		return nil, false
	}
	marks = make([]Mark, len(in))
	for i, m := range in {
		if m.K == "" {
			return nil, false
		}
		marks[i] = Mark{Key: m.K, Version: m.V}
	}
	return marks, true
}
