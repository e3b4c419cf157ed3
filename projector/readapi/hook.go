package readapi

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/convsync/convsync/internal/cache"
	"github.com/convsync/convsync/projector"
)

// Hook is the projector's cache maintenance: after each commit it raises the markers of
// the pages and conversations the batch touched to their new versions, in one pipelined
// round trip, so no reader is served, or can store, anything older. It rebuilds nothing:
// the read API rebuilds the entries it served lately when their marker rises
// (cache.Config.WarmKeys).
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

// entryOf is the cache entry of a view: its JSON, as the API serves it.
func entryOf(v any, version int64) (cache.Entry, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return cache.Entry{}, fmt.Errorf("encode view: %w", err)
	}
	return cache.Entry{Version: version, Value: b}, nil
}
