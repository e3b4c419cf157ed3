package graph

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
)

// Profiles returns the names of psids (PSIDs of the token's Page), asking Graph only for
// those it has not seen: GET /{psid}?fields=name operations in batches, in parallel.
// Names found are remembered (ProfileCacheSize of them). A PSID whose lookup failed is
// missing from the map and named in the error; the others are still returned.
func (c *Client) Profiles(ctx context.Context, token string, psids []string) (map[string]string, error) {
	out := make(map[string]string, len(psids))
	var missing []string
	seen := make(map[string]bool, len(psids))
	for _, id := range psids {
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		if name, ok := c.profiles.get(id); ok {
			out[id] = name
		} else {
			missing = append(missing, id)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	ops := make([]Op, len(missing))
	for i, id := range missing {
		ops[i] = Op{RelativeURL: url.PathEscape(id) + "?fields=name"}
	}
	res, err := c.Batch(ctx, token, ops)
	if err != nil {
		return out, fmt.Errorf("look up %d profiles: %w", len(missing), err)
	}
	var errs []error
	for i, r := range res {
		var v struct {
			Name string `json:"name"`
		}
		if err := r.Decode(&v); err != nil {
			errs = append(errs, fmt.Errorf("look up profile %s: %w", missing[i], err))
			continue
		}
		c.profiles.put(missing[i], v.Name)
		out[missing[i]] = v.Name
	}
	return out, errors.Join(errs...)
}

// nameCache is a bounded map of names by PSID; when full, the oldest entry goes.
type nameCache struct {
	mu    sync.Mutex
	max   int
	names map[string]string
	order []string // ring of keys, oldest at next once full
	next  int
}

func newNameCache(n int) *nameCache {
	return &nameCache{max: n, names: map[string]string{}}
}

func (c *nameCache) get(id string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.names[id]
	return v, ok
}

func (c *nameCache) put(id, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.names[id]; ok {
		c.names[id] = name
		return
	}
	if len(c.order) < c.max {
		c.order = append(c.order, id)
	} else {
		delete(c.names, c.order[c.next])
		c.order[c.next] = id
		c.next = (c.next + 1) % c.max
	}
	c.names[id] = name
}
