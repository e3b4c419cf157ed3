package readapi_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/convsync/convsync/internal/cache"
	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/pipelinetest"
	"github.com/convsync/convsync/projector"
	"github.com/convsync/convsync/projector/readapi"
)

// Invariant 8: no entry older than the committed rows is served for more than the bound
// (CACHE_MAX_STALENESS, 2 s), whatever failed between the commit and the markers. Each
// case commits a new message and leaves a stale entry served by the cache with no marker
// to stop it; the read API must show the message within the bound (the test allows a few
// seconds on top for a loaded machine; TestStalenessBound checks the bound itself with a
// clock of its own).
func TestStaleEntriesEndWithinTheBoundWhenMarkersAreLost(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// commit applies the new message's rows and does what the fault leaves of the
		// markers.
		commit func(t *testing.T, e *env, rc *redis.Client, prefix, page, psid, mid string)
	}{
		{"killed between COMMIT and the hook, or the COMMIT's answer lost", func(t *testing.T, e *env, _ *redis.Client, _, page, psid, mid string) {
			e.applyNoHook(t, newMessage(page, psid, mid, "fresh "+mid))
		}},
		{"Redis lost the marker and kept the old entry (a failover)", func(t *testing.T, e *env, rc *redis.Client, prefix, page, psid, mid string) {
			k := e.c.Keys()
			key := k.Entry(page, "conv", psid, strconv.Itoa(readapi.Defaults().DefaultLimit), "")
			old, err := rc.Dump(context.Background(), key).Result()
			if err != nil {
				t.Fatalf("the entry %s is not in Redis: %v", key, err)
			}
			e.apply(t, newMessage(page, psid, mid, "fresh "+mid))
			// The replica that took over had neither the new marker nor the new entry.
			rc.Del(context.Background(), k.ConversationMarker(page, psid), k.PageMarker(page))
			if err := rc.RestoreReplace(context.Background(), key, time.Minute, old).Err(); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for i, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rc, prefix := testenv.Redis(t)
			e := setup(t, cache.NewRedis(rc, prefix), prefix)
			page := e.pages[0]
			psid := firstConversation(e.refs, page)
			path := "/v1/pages/" + page + "/conversations/" + psid
			for range 2 {
				if r := e.get(t, path); r.status != 200 {
					t.Fatalf("GET %s = %d", path, r.status)
				}
			}
			if r := e.get(t, path); r.header.Get("X-Cache") != "hit" {
				t.Fatalf("GET %s is a cache %s, want a hit before the fault", path, r.header.Get("X-Cache"))
			}
			mid := "m_stale_" + string(rune('a'+i))
			tt.commit(t, e, rc, prefix, page, psid, mid)
			start := time.Now()
			for {
				r := e.get(t, path)
				if strings.Contains(string(r.body), "fresh "+mid) {
					t.Logf("fresh after %s", time.Since(start))
					break
				}
				if time.Since(start) > 8*time.Second {
					t.Fatalf("GET %s still serves the entry from before the commit after %s, want the new message within the bound (2 s)", path, time.Since(start))
				}
				time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
			}
		})
	}
}

// applyNoHook commits evs and raises no marker: what a projector killed right after
// COMMIT, or one whose COMMIT answer was lost (the retry skips the applied batch), leaves.
func (e *env) applyNoHook(t *testing.T, evs []pipelinetest.Event) {
	t.Helper()
	saved := e.hook
	e.hook = func(context.Context, projector.Touched) {}
	defer func() { e.hook = saved }()
	e.apply(t, evs)
}
