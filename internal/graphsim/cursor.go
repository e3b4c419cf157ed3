package graphsim

import (
	"encoding/base64"
	"errors"
	"sort"
	"strconv"
	"strings"
)

// cursorKey is a position in a listing: newest first (t descending), then id ascending.
// Cursors carry the key, not an offset, so a thread that moves to the front while a
// client pages is skipped by that walk (as on Meta) and nothing is listed twice.
type cursorKey struct {
	t  int64
	id string
}

func (a cursorKey) cmp(b cursorKey) int {
	switch {
	case a.t > b.t:
		return -1
	case a.t < b.t:
		return 1
	}
	return strings.Compare(a.id, b.id)
}

var errCursor = errors.New("invalid cursor")

func (a cursorKey) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte("QVFI:" + strconv.FormatInt(a.t, 10) + ":" + a.id))
}

func decodeCursor(s string) (cursorKey, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursorKey{}, errCursor
	}
	parts := strings.SplitN(string(b), ":", 3)
	if len(parts) != 3 || parts[0] != "QVFI" {
		return cursorKey{}, errCursor
	}
	t, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return cursorKey{}, errCursor
	}
	return cursorKey{t: t, id: parts[2]}, nil
}

// window picks the items [lo, hi) of a listing of n items in key order: the first limit
// after the cursor after, or the last limit before the cursor before, or the first limit.
func window(n int, key func(int) cursorKey, limit int, after, before string) (lo, hi int, err error) {
	switch {
	case after != "":
		k, err := decodeCursor(after)
		if err != nil {
			return 0, 0, err
		}
		lo = sort.Search(n, func(i int) bool { return key(i).cmp(k) > 0 })
		return lo, min(n, lo+limit), nil
	case before != "":
		k, err := decodeCursor(before)
		if err != nil {
			return 0, 0, err
		}
		hi = sort.Search(n, func(i int) bool { return key(i).cmp(k) >= 0 })
		return max(0, hi-limit), hi, nil
	}
	return 0, min(n, limit), nil
}

// paging is the paging object of a listing window; link builds the URL of a neighbour
// window from a cursor parameter ("after" or "before") and its value. Empty windows
// have no paging, as on Meta.
func paging(lo, hi, n int, key func(int) cursorKey, link func(param, cursor string) string) map[string]any {
	if lo >= hi {
		return nil
	}
	first, last := key(lo).encode(), key(hi-1).encode()
	p := map[string]any{"cursors": map[string]any{"before": first, "after": last}}
	if hi < n {
		p["next"] = link("after", last)
	}
	if lo > 0 {
		p["previous"] = link("before", first)
	}
	return p
}
