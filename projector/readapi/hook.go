package readapi

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/convsync/convsync/internal/cache"
	"github.com/convsync/convsync/projector"
)

// Hook is the projector's cache maintenance when nothing refreshes: after each commit it
// raises the markers of the pages and conversations the batch touched to their new
// versions, in one pipelined round trip, so no reader is served, or can store, anything
// older.
func Hook(c *cache.Cache) projector.Hook {
	return func(ctx context.Context, t projector.Touched) { c.Invalidate(ctx, marks(c.Keys(), t)) }
}

func marks(k cache.Keys, t projector.Touched) []cache.Mark {
	out := make([]cache.Mark, 0, len(t.Pages)+len(t.Conversations))
	for _, p := range t.Pages {
		out = append(out, cache.Mark{Key: k.PageMarker(p.PageID), Version: p.Version})
	}
	for _, cv := range t.Conversations {
		out = append(out, cache.Mark{Key: k.ConversationMarker(cv.PageID, cv.PSID), Version: cv.Version})
	}
	return out
}

// Refresher keeps the hottest entries warm: after raising the markers it rebuilds, from
// the primary, the default view (first page, default limit) of every conversation and
// page a batch touched, and stores them with their versions. Readers then hit instead of
// missing once after every write; a refresh that loses a race to a newer one is
// rejected by the version rule like any other write.
type Refresher struct {
	db    store
	c     *cache.Cache
	limit int
	max   int
	log   *slog.Logger
	queue chan projector.Touched
}

// NewRefresher reads through pool (the primary: it must see the commit), builds views of
// limit items, and refreshes at most max conversations per batch (the rest are only
// invalidated).
func NewRefresher(pool *pgxpool.Pool, c *cache.Cache, limit, max int, log *slog.Logger) *Refresher {
	return &Refresher{db: store{pool}, c: c, limit: limit, max: max, log: log, queue: make(chan projector.Touched, 64)}
}

// Hook is the projector hook: it raises the markers at once (in the commit's path) and
// queues the refresh for Run, so rebuilding views never holds the projector back. When
// the queue is full the refresh is skipped: the entries are invalidated all the same.
func (r *Refresher) Hook() projector.Hook {
	return func(ctx context.Context, t projector.Touched) {
		r.c.Invalidate(ctx, marks(r.c.Keys(), t))
		select {
		case r.queue <- t:
		default:
		}
	}
}

// Run rebuilds the queued views until ctx ends.
func (r *Refresher) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case t := <-r.queue:
			r.refresh(ctx, t)
		}
	}
}

// refreshConcurrency is how many views a refresh rebuilds at once: the window between a
// marker rising and its view landing again is when readers miss, so it is kept short,
// without taking more of the primary's pool than the projector can spare.
const refreshConcurrency = 4

func (r *Refresher) refresh(ctx context.Context, t projector.Touched) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	k := r.c.Keys()
	lim := strconv.Itoa(r.limit)
	var g errgroup.Group
	g.SetLimit(refreshConcurrency)
	for i, cv := range t.Conversations {
		if i == r.max {
			break
		}
		g.Go(func() error {
			if ctx.Err() != nil {
				return nil
			}
			d, err := r.db.conversation(ctx, cv.PageID, cv.PSID, nil, r.limit)
			if err != nil {
				r.log.Debug("cache refresh", "page_id", cv.PageID, "error", err)
				return nil
			}
			r.set(ctx, k.Entry(cv.PageID, "conv", cv.PSID, lim, ""), k.ConversationMarker(cv.PageID, cv.PSID), d, d.Conversation.Version)
			return nil
		})
	}
	for _, pv := range t.Pages {
		g.Go(func() error {
			if ctx.Err() != nil {
				return nil
			}
			if p, err := r.db.page(ctx, pv.PageID); err == nil {
				r.set(ctx, k.Entry(pv.PageID, "page"), k.PageMarker(pv.PageID), p, p.Version)
			}
			if l, version, err := r.db.conversations(ctx, pv.PageID, nil, r.limit); err == nil {
				r.set(ctx, k.Entry(pv.PageID, "list", lim, ""), k.PageMarker(pv.PageID), l, version)
			}
			return nil
		})
	}
	_ = g.Wait()
}

func (r *Refresher) set(ctx context.Context, key, marker string, v any, version int64) {
	e, err := entryOf(v, version)
	if err != nil {
		r.log.Debug("cache refresh", "error", err)
		return
	}
	r.c.Set(ctx, key, marker, e)
}

// entryOf is the cache entry of a view: its JSON, as the API serves it.
func entryOf(v any, version int64) (cache.Entry, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return cache.Entry{}, fmt.Errorf("encode view: %w", err)
	}
	return cache.Entry{Version: version, Value: b}, nil
}
