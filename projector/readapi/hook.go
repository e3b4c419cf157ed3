package readapi

import (
	"context"

	"github.com/convsync/convsync/internal/cache"
	"github.com/convsync/convsync/projector"
)

// Hook is the projector's cache maintenance: after each commit it raises the markers of
// the pages and conversations the batch touched to their new versions, in one pipelined
// round trip, so no reader is served, or can store, anything older.
func Hook(c *cache.Cache) projector.Hook {
	return func(ctx context.Context, t projector.Touched) {
		k := c.Keys()
		marks := make([]cache.Mark, 0, len(t.Pages)+len(t.Conversations))
		for _, p := range t.Pages {
			marks = append(marks, cache.Mark{Key: k.PageMarker(p.PageID), Version: p.Version})
		}
		for _, cv := range t.Conversations {
			marks = append(marks, cache.Mark{Key: k.ConversationMarker(cv.PageID, cv.PSID), Version: cv.Version})
		}
		c.Invalidate(ctx, marks)
	}
}
