package cache

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
)

// Keeping read entries warm. A commit raises markers and nothing more: the projector
// rebuilds no view, so keeping the cache current costs the ingest→commit path one
// pipelined round trip to the store. The process that reads (the read API) remembers the
// entries it served lately and how it built each. An entry counts as read lately for
// WarmFor after its last read; at most WarmKeys are kept (a key read while the set is
// full is not kept warm). Keys nobody reads cost nothing.
//
// When the projector runs in the same process (`convsync all`), a marker that passes an
// entry read lately is held back: the entry is rebuilt first (in the background, with the
// same loader, stored under the version rule: its version is newer than the entry's and
// at least the marker's old one), and the marker rises after it, or WarmHold after the
// commit whatever happened (a timer of its own: no queue, stuck query or stopped loop
// holds it longer). Readers keep hitting the entry from before the
// commit for those few milliseconds and then hit the new one: no miss in between. It is
// the same as the commit landing that much later for those readers, never older than
// before the commit, and bounded. When the marker was raised elsewhere (heard on the
// store's marker stream), the entry is rebuilt after it; its readers miss until then.

// Loader builds an entry from the database.
type Loader func(ctx context.Context) (Entry, error)

// warmConcurrency is how many entries are rebuilt at once: enough to keep the window
// between a marker and its entry landing again short, little enough to leave the pool to
// the readers.
const warmConcurrency = 2

// warmQueue bounds the entries waiting for a rebuild; past it a rebuild is dropped (the
// entry is rebuilt by its next reader instead). Commits whose markers wait for rebuilds
// are bounded the same way: past it the markers rise at once.
const warmQueue = 1024

// held is a commit's markers waiting for the rebuild of the entries read lately that they
// pass; timer raises them at WarmHold if the rebuild has not by then.
type held struct {
	marks   []Mark
	entries []*hot
	epoch   uint64 // the cache's flushes when the commit raised them
	timer   *time.Timer
}

// hot is an entry read lately.
type hot struct {
	key, marker string
	load        Loader
	read        time.Time // last read
	version     int64     // the newest version this process saw stored or served
	want        int64     // the newest marker raised past version
	queued      bool
}

type warm struct {
	max      int
	hotFor   time.Duration
	hold     time.Duration
	mu       sync.Mutex
	keys     map[string]*hot
	byMarker map[string]map[string]*hot
	queue    chan *hot
	held     chan held
	results  *prometheus.CounterVec
	size     prometheus.Gauge
}

func newWarm(max int, hotFor, hold time.Duration, reg prometheus.Registerer) *warm {
	w := &warm{max: max, hotFor: hotFor, hold: hold, keys: map[string]*hot{}, byMarker: map[string]map[string]*hot{},
		queue: make(chan *hot, warmQueue), held: make(chan held, warmQueue),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "convsync_cache_warm_refreshes_total",
			Help: "Rebuilds of entries read lately after their marker rose, by result: stored, rejected (something newer was there), older (the database gave rows older than the marker: a lagging replica; the next reader loads it), error, dropped (the queue was full).",
		}, []string{"result"}),
		size: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "convsync_cache_warm_keys",
			Help: "Entries read lately that this process keeps warm (at most API_CACHE_REFRESH_MAX).",
		}),
	}
	reg.MustRegister(w.results, w.size)
	for _, r := range []string{"stored", "rejected", "older", "error", "dropped"} {
		w.results.WithLabelValues(r)
	}
	return w
}

// touch notes a read of key, served at version, built by load.
func (w *warm) touch(key, marker string, version int64, load Loader, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	h, ok := w.keys[key]
	if !ok {
		if len(w.keys) >= w.max {
			return
		}
		h = &hot{key: key, marker: marker}
		w.keys[key] = h
		set := w.byMarker[marker]
		if set == nil {
			set = map[string]*hot{}
			w.byMarker[marker] = set
		}
		set[key] = h
	}
	h.load, h.read, h.version = load, now, max(h.version, version)
}

// marked queues a rebuild of every entry read lately that a marker passed.
func (w *warm) marked(marks []Mark, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range marks {
		for _, h := range w.byMarker[m.Key] {
			if m.Version <= h.version || now.Sub(h.read) > w.hotFor {
				continue
			}
			h.want = max(h.want, m.Version)
			if h.queued {
				continue
			}
			select {
			case w.queue <- h:
				h.queued = true
			default:
				w.results.WithLabelValues("dropped").Inc()
			}
		}
	}
}

// split sorts a commit's marks: those that pass an entry read lately (hot), with those
// entries, and the rest.
func (w *warm) split(marks []Mark, now time.Time) (passing []Mark, entries []*hot, cold []Mark) {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := map[*hot]bool{}
	for _, m := range marks {
		passes := false
		for _, h := range w.byMarker[m.Key] {
			if m.Version <= h.version || now.Sub(h.read) > w.hotFor {
				continue
			}
			passes = true
			h.want = max(h.want, m.Version)
			if !seen[h] {
				seen[h] = true
				entries = append(entries, h)
			}
		}
		if passes {
			passing = append(passing, m)
		} else {
			cold = append(cold, m)
		}
	}
	return passing, entries, cold
}

// prebuild holds back the marks that pass entries read lately until those are rebuilt
// (runWarm raises them) and returns the marks to raise now.
func (c *Cache) prebuild(marks []Mark) []Mark {
	passing, entries, cold := c.warm.split(marks, c.now())
	if len(passing) == 0 {
		return cold
	}
	epoch := c.flushes.Load()
	hd := held{marks: passing, entries: entries, epoch: epoch,
		timer: time.AfterFunc(c.warm.hold, func() { c.raiseHeld(passing, epoch) })}
	select {
	case c.warm.held <- hd:
		return cold
	default:
		hd.timer.Stop()
		c.warm.results.WithLabelValues("dropped").Add(float64(len(entries)))
		return marks
	}
}

// raiseHeld raises a commit's held marks, unless a Flush came since: the tables they
// stood for are gone, and the rebuilt ones may have lower versions.
func (c *Cache) raiseHeld(marks []Mark, epoch uint64) {
	if c.flushes.Load() != epoch {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.staleness)
	defer cancel()
	c.raise(ctx, marks)
}

// take returns what a queued entry's rebuild needs and clears its place in the queue:
// a marker raised from now on queues it again.
func (w *warm) take(h *hot) (load Loader, want int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	h.queued = false
	return h.load, h.want
}

// stored notes that version of h's entry is in the store.
func (w *warm) stored(h *hot, version int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	h.version = max(h.version, version)
}

// expire forgets the entries not read since before and reports how many remain.
func (w *warm) expire(before time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, h := range w.keys {
		if h.read.Before(before) {
			delete(w.keys, k)
			if set := w.byMarker[h.marker]; set != nil {
				delete(set, k)
				if len(set) == 0 {
					delete(w.byMarker, h.marker)
				}
			}
		}
	}
	w.size.Set(float64(len(w.keys)))
}

// reset forgets every entry (a flush: what was read may not come back).
func (w *warm) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.keys, w.byMarker = map[string]*hot{}, map[string]map[string]*hot{}
	w.size.Set(0)
}

// runWarm rebuilds queued entries until ctx ends.
func (c *Cache) runWarm(ctx context.Context) {
	var wg sync.WaitGroup
	for range warmConcurrency {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case h := <-c.warm.queue:
					c.rebuild(ctx, h)
				case hd := <-c.warm.held:
					c.rebuildThenRaise(ctx, hd)
				}
			}
		})
	}
	wg.Wait()
}

// rebuildThenRaise rebuilds the entries a commit's held marks pass, then raises them,
// unless their timer already has.
func (c *Cache) rebuildThenRaise(ctx context.Context, hd held) {
	var g errgroup.Group
	g.SetLimit(warmConcurrency)
	for _, h := range hd.entries {
		g.Go(func() error {
			c.rebuild(ctx, h)
			return nil
		})
	}
	_ = g.Wait()
	if hd.timer.Stop() {
		c.raiseHeld(hd.marks, hd.epoch)
	}
}

// rebuild loads h's entry again and stores it. A load already under way for a reader
// may have read the rows before the marker rose: then it is loaded once more.
func (c *Cache) rebuild(ctx context.Context, h *hot) {
	load, want := c.warm.take(h)
	ctx, cancel := context.WithTimeout(ctx, 2*c.staleness)
	defer cancel()
	for attempt := 0; ; attempt++ {
		e, stored, err := c.loadShared(ctx, h.key, h.marker, load)
		switch {
		case err != nil:
			c.warm.results.WithLabelValues("error").Inc()
			c.log.Debug("cache warm", "error", err)
			return
		case e.Version < want && attempt == 0:
			c.sf.Forget(h.key)
			continue
		case e.Version < want:
			c.warm.results.WithLabelValues("older").Inc()
			return
		case stored:
			c.warm.results.WithLabelValues("stored").Inc()
		default:
			c.warm.results.WithLabelValues("rejected").Inc()
		}
		c.warm.stored(h, e.Version)
		return
	}
}
