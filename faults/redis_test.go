//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/convsync/convsync/internal/loadgen"
	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/projector"
)

// readers keep reading through the read API (cache-aside) until stopped, in turn the
// inbox of every page and the hot conversations (hot: the load's users are Zipf
// distributed), and count answers that are neither 200 nor 404 (not seen yet).
type readers struct {
	stop   context.CancelFunc
	wg     sync.WaitGroup
	reads  atomic.Int64
	errors atomic.Int64
	last   atomic.Value // string: the last error
}

func startReaders(t *testing.T, api *proc, n int) *readers {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rd := &readers{stop: cancel}
	client := &http.Client{Timeout: 10 * time.Second}
	for w := range n {
		rd.wg.Go(func() {
			for i := w; ctx.Err() == nil; i++ {
				u := fmt.Sprintf("http://%s/v1/pages/%s/conversations", api.Addr, loadgen.PageID(i%12))
				if i%2 == 1 {
					h := hot[i%len(hot)]
					u = fmt.Sprintf("http://%s/v1/pages/%s/conversations/%s", api.Addr, h[0], h[1])
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
				req.Header.Set("Authorization", "Bearer "+apiToken)
				resp, err := client.Do(req)
				if ctx.Err() != nil {
					return
				}
				rd.reads.Add(1)
				if err != nil {
					rd.errors.Add(1)
					rd.last.Store(err.Error())
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
					rd.errors.Add(1)
					rd.last.Store(resp.Status)
				}
			}
		})
	}
	t.Cleanup(rd.halt)
	return rd
}

func (rd *readers) halt() { rd.stop(); rd.wg.Wait() }

// hot are the conversations the readers read: the first users of every page.
var hot = func() (out [][2]string) {
	for p := range 12 {
		for u := range 5 {
			out = append(out, [2]string{loadgen.PageID(p), loadgen.PSID(p, u)})
		}
	}
	return out
}()

// checkFresh waits up to bound for the read API to answer every sampled conversation as
// the table has it: no entry older than the committed rows outlives the bound.
func checkFresh(t *testing.T, api *proc, rows projector.Rows, bound time.Duration) {
	t.Helper()
	var stale []string
	ok := testenv.Poll(bound, func() bool {
		stale = stale[:0]
		isHot := map[[2]string]bool{}
		for _, h := range hot {
			isHot[h] = true
		}
		for i, c := range rows.Conversations {
			if i%5 != 0 && !isHot[[2]string{c.PageID, c.PSID}] {
				continue
			}
			n, err := apiMessageCount(api, c.PageID, c.PSID)
			if err != nil || n != c.MessageCount {
				stale = append(stale, fmt.Sprintf("%s/%s: api %d (%v), table %d", c.PageID, c.PSID, n, err, c.MessageCount))
			}
		}
		return len(stale) == 0
	})
	if !ok {
		t.Errorf("%s after the read model was final, %s still serves %d stale or failing conversations, e.g. %v",
			bound, api.name, len(stale), stale[:min(5, len(stale))])
	}
}

func apiMessageCount(api *proc, page, psid string) (int, error) {
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/v1/pages/%s/conversations/%s", api.Addr, page, psid), nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Conversation struct {
			MessageCount int `json:"message_count"`
		} `json:"conversation"`
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	return body.Conversation.MessageCount, nil
}

// Fault 3 of issue 13: Redis (a private redis-server) is stopped mid-load, stays down
// while webhooks flow and reads go on, and starts again, empty. The projector does not
// stall on it, reads never fail (they fall back to Postgres), and within the 2 s bound
// of invariant 8 the read API serves what the tables hold.
func TestRedisRestartMidLoad(t *testing.T) {
	rs := testenv.PrivateRedis(t)
	kc := testenv.Kafka(t, 4)
	pool, dbURL := testenv.Postgres(t)
	r := newRig(t, kc, dbURL, pool, "REDIS_URL=redis://"+rs.Addr()+"/0", "CACHE_PREFIX=faults:"+testenv.ID()+":")
	r.start("process", "process")
	proj := r.start("project", "project")
	api := r.start("api", "api")
	in := r.start("ingest", "ingest")
	in.waitHTTP("/readyz", time.Minute)
	rd := startReaders(t, api, 4)
	l := startLoad(t, func() string { return "http://" + in.Addr + "/api/webhook" }, 100, 12*time.Second, 7)

	l.waitAcked(t, 300)
	t.Log("redis stopped")
	rs.Stop()
	down := l.acked.Load()
	readsBefore := rd.reads.Load()
	l.waitAcked(t, down+250)
	if !testenv.Poll(30*time.Second, func() bool { return rd.reads.Load() > readsBefore+50 }) {
		t.Errorf("the read API answered %d reads while Redis was down, want reads to go on", rd.reads.Load()-readsBefore)
	}
	t.Log("redis started again, empty")
	rs.Start()

	_, acked := l.wait(t)
	rows := r.verify(acked, time.Minute)
	rd.halt()
	if n := rd.errors.Load(); n > 0 {
		t.Errorf("%d of %d reads through the API failed around the Redis restart (last: %v): a cache outage must degrade to Postgres, not to errors",
			n, rd.reads.Load(), rd.last.Load())
	}
	checkFresh(t, api, rows, 3*time.Second)
	if proj.exited() || api.exited() {
		t.Errorf("a role exited around the Redis restart (projector %v, api %v)", proj.exited(), api.exited())
	}
	t.Logf("reads %d; cache errors counted by the api: %v", rd.reads.Load(), api.metric(`convsync_cache_requests_total{result="error"}`))
}

// The second half of issue 13's fault 3: `convsync api` starts while Redis is down and
// Redis comes up later. The projector (started with Redis up) raises its markers in
// Redis; the API must pick Redis up and serve, within the 2 s bound, what the tables
// hold, not entries of a cache of its own that never hears of the projector's commits.
func TestAPIStartedWhileRedisDown(t *testing.T) {
	rs := testenv.PrivateRedis(t)
	kc := testenv.Kafka(t, 4)
	pool, dbURL := testenv.Postgres(t)
	r := newRig(t, kc, dbURL, pool, "REDIS_URL=redis://"+rs.Addr()+"/0", "CACHE_PREFIX=faults:"+testenv.ID()+":")
	r.start("process", "process")
	r.start("project", "project")
	in := r.start("ingest", "ingest")
	in.waitHTTP("/readyz", time.Minute)
	rs.Stop()
	api := r.start("api", "api")
	rs.Start()
	rd := startReaders(t, api, 4)
	l := startLoad(t, func() string { return "http://" + in.Addr + "/api/webhook" }, 100, 8*time.Second, 8)
	_, acked := l.wait(t)
	rows := r.verify(acked, time.Minute)
	rd.halt()
	if n := rd.errors.Load(); n > 0 {
		t.Errorf("%d of %d reads through the API failed (last: %v)", n, rd.reads.Load(), rd.last.Load())
	}
	checkFresh(t, api, rows, 3*time.Second)
}
