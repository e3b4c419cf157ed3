package backfill

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/ingest"
	"github.com/convsync/convsync/ingest/graph"
	"github.com/convsync/convsync/internal/graphsim"
	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/logging"
	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/projector"
	"github.com/convsync/convsync/schemas"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string // a variable the error names; "" for valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"full", func(c *Config) { c.Full = true }, ""},
		{"no concurrency", func(c *Config) { c.Concurrency = 0 }, "BACKFILL_CONCURRENCY"},
		{"no messages", func(c *Config) { c.Messages = 0 }, "BACKFILL_MESSAGES"},
		{"unreadable messages", func(c *Config) { c.Messages = 21 }, "BACKFILL_MESSAGES"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Defaults()
			tt.edit(&c)
			err := c.Validate()
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Validate(%+v) = %v, want an error naming %q", c, err, tt.want)
			}
		})
	}
}

// fixture is a simulator, a graph client on it, a Postgres schema with the simulator's
// Pages and tokens, test topics, and a processor and projector applying them.
type fixture struct {
	sim  *graphsim.Sim
	pool *pgxpool.Pool
	kc   kafka.Config
	app  *ingest.KafkaAppender
	job  *Job
	ctx  context.Context
}

func newFixture(t *testing.T, scfg graphsim.Config, pageSize int, cfg Config) *fixture {
	t.Helper()
	kc := testenv.Kafka(t, 4)
	pool, _ := testenv.Postgres(t)
	ctx := testenv.Context(t, 3*time.Minute)

	scfg.Until = time.Now().Add(-24 * time.Hour) // all generated data is older than a run
	sim, err := graphsim.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)

	gcfg := graph.Defaults()
	gcfg.BaseURL, gcfg.Version, gcfg.PageSize = srv.URL, sim.Version(), pageSize
	gcfg.PageRate = 10_000
	gcfg.MaxRetries, gcfg.BackoffBase, gcfg.BackoffMax = 2, time.Millisecond, 10*time.Millisecond
	gcfg.UsagePause = 2 * time.Second // the slow-down at full usage, short for tests
	reg := prometheus.NewRegistry()
	gc, err := graph.New(gcfg, srv.Client(), reg, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}

	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(kc.Brokers...)}, ingest.ProducerOpts()...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	app := ingest.NewKafkaAppender(cl)

	for _, p := range sim.Pages() {
		if _, err := pool.Exec(ctx, `INSERT INTO facebook_pages (page_id, access_token) VALUES ($1, $2)`, p.ID, p.AccessToken); err != nil {
			t.Fatalf("insert page %s: %v", p.ID, err)
		}
	}

	job, err := New(cfg, gc, pool, app, kc.EventsTopic, reg, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithCancel(ctx)
	wait := StartPipeline(t, pctx, kc, pool)
	t.Cleanup(func() { cancel(); wait() })
	return &fixture{sim: sim, pool: pool, kc: kc, app: app, job: job, ctx: ctx}
}

// waitFor polls the read model until cond holds or a minute passes, and returns the
// last dump.
func (f *fixture) waitFor(t *testing.T, what string, cond func(projector.Rows) bool) projector.Rows {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		rows, err := projector.Dump(f.ctx, f.pool)
		if err != nil {
			t.Fatalf("Dump() error = %v", err)
		}
		if cond(rows) {
			return rows
		}
		if time.Now().After(deadline) {
			t.Fatalf("read model never showed %s; last dump has %d pages, %d conversations, %d messages",
				what, len(rows.Pages), len(rows.Conversations), len(rows.Messages))
		}
		select {
		case <-tick.C:
		case <-f.ctx.Done():
			t.Fatalf("waiting for %s: %v", what, f.ctx.Err())
		}
	}
}

// synced reports whether every page of ids has a last_synced_at after t.
func synced(rows projector.Rows, after time.Time, ids ...string) bool {
	at := map[string]*time.Time{}
	for _, p := range rows.Pages {
		at[p.PageID] = p.LastSyncedAt
	}
	for _, id := range ids {
		if at[id] == nil || !at[id].After(after) {
			return false
		}
	}
	return true
}

type convKey struct {
	PageID, PSID, ThreadID, Name string
	MessageCount                 int
}

type msgKey struct {
	PageID, MID, PSID, Text, Direction string
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// simModel is the simulator's data of pages as read-model keys.
func simModel(sim *graphsim.Sim, pages ...string) ([]convKey, []msgKey) {
	var cs []convKey
	var ms []msgKey
	for _, p := range pages {
		for _, c := range sim.Conversations(p) {
			cs = append(cs, convKey{p, c.User.PSID, c.ID, c.User.Name, c.MessageCount})
			for _, m := range sim.Messages(c.ID) {
				dir := schemas.Outbound
				if m.Inbound {
					dir = schemas.Inbound
				}
				ms = append(ms, msgKey{p, m.ID, m.PSID, m.Text, string(dir)})
			}
		}
	}
	return cs, ms
}

// readModel is the read model's rows of pages as keys.
func readModel(rows projector.Rows, pages ...string) ([]convKey, []msgKey) {
	want := map[string]bool{}
	for _, p := range pages {
		want[p] = true
	}
	var cs []convKey
	var ms []msgKey
	for _, c := range rows.Conversations {
		if want[c.PageID] {
			cs = append(cs, convKey{c.PageID, c.PSID, deref(c.ThreadID), deref(c.ParticipantName), c.MessageCount})
		}
	}
	for _, m := range rows.Messages {
		if want[m.PageID] {
			ms = append(ms, msgKey{m.PageID, m.MID, m.PSID, deref(m.Text), deref(m.Direction)})
		}
	}
	return cs, ms
}

var sortKeys = []cmp.Option{
	cmp.Transformer("sortConvs", func(in []convKey) []convKey {
		out := append([]convKey(nil), in...)
		slices.SortFunc(out, func(a, b convKey) int { return strings.Compare(a.PageID+"|"+a.PSID, b.PageID+"|"+b.PSID) })
		return out
	}),
	cmp.Transformer("sortMsgs", func(in []msgKey) []msgKey {
		out := append([]msgKey(nil), in...)
		slices.SortFunc(out, func(a, b msgKey) int { return strings.Compare(a.PageID+"|"+a.MID, b.PageID+"|"+b.MID) })
		return out
	}),
}

func pageIDs(sim *graphsim.Sim) []string {
	var ids []string
	for _, p := range sim.Pages() {
		ids = append(ids, p.ID)
	}
	return ids
}

// inFolders counts the simulator's threads of pages outside the inbox.
func inFolders(sim *graphsim.Sim, pages ...string) int {
	n := 0
	for _, p := range pages {
		for _, c := range sim.Conversations(p) {
			if c.Folder != graphsim.FolderInbox {
				n++
			}
		}
	}
	return n
}

// The read model ends up with all of the simulator's data, the threads moved out of the
// inbox (to other, page_done, spam) included, with one listing per folder.
func TestFullBackfillMatchesSimulator(t *testing.T) {
	t.Parallel()
	cfg := Defaults()
	cfg.Full = true
	// Of each page's 6 threads, one in each of other, page_done and spam.
	f := newFixture(t, graphsim.Config{Pages: 3, Conversations: 6, Messages: 5, Seed: 7, FolderShare: 1.0 / 6}, 25, cfg)
	ids := pageIDs(f.sim)
	if n := inFolders(f.sim, ids...); n != 9 {
		t.Fatalf("the simulator has %d threads outside the inbox, want 9", n)
	}
	var progress strings.Builder
	before := time.Now().Add(-time.Second)
	sum, err := f.job.Run(f.ctx, nil, &progress)
	if err != nil {
		t.Fatalf("Run() error = %v; progress:\n%s", err, progress.String())
	}
	if sum.Pages != 3 || sum.Conversations != 18 || sum.Messages != 90 || len(sum.Failed) != 0 {
		t.Errorf("Run() = %+v, want 3 pages, 18 conversations, 90 messages, none failed", sum)
	}
	if got := f.sim.Requests(); got.ByKind[graphsim.KindMessages] != 0 || got.ByKind[graphsim.KindConversations] != 12 {
		t.Errorf("Run() made %v calls by kind, want 12 conversations calls (one per folder of each page) and no messages call (field expansion)", got.ByKind)
	}
	if sum.GraphRequests != 12 {
		t.Errorf("Run() GraphRequests = %d, want 12", sum.GraphRequests)
	}
	if n := strings.Count(progress.String(), "\n"); n != 4 {
		t.Errorf("progress has %d lines, want 4 (3 pages and a summary):\n%s", n, progress.String())
	}

	rows := f.waitFor(t, "every page synced", func(r projector.Rows) bool { return synced(r, before, ids...) })
	wantC, wantM := simModel(f.sim, ids...)
	gotC, gotM := readModel(rows, ids...)
	if diff := cmp.Diff(wantC, gotC, sortKeys...); diff != "" {
		t.Errorf("conversations differ from the simulator's (-sim +read model):\n%s", diff)
	}
	if diff := cmp.Diff(wantM, gotM, sortKeys...); diff != "" {
		t.Errorf("messages differ from the simulator's (-sim +read model):\n%s", diff)
	}
	for _, p := range rows.Pages {
		sp, _ := f.sim.Page(p.PageID)
		if deref(p.Name) != sp.Name {
			t.Errorf("page %s name = %q, want %q from PageSynced", p.PageID, deref(p.Name), sp.Name)
		}
	}
}

func TestIncrementalReadsOnlyWhatChanged(t *testing.T) {
	t.Parallel()
	f := newFixture(t, graphsim.Config{Pages: 3, Conversations: 30, Messages: 5, Seed: 11}, 5, Defaults())
	ids := pageIDs(f.sim)
	start1 := time.Now().Add(-time.Second)
	sum1, err := f.job.Run(f.ctx, nil, nil)
	if err != nil {
		t.Fatalf("first Run() error = %v", err)
	}
	calls1 := f.sim.Requests().Calls
	rows := f.waitFor(t, "every page synced after run 1", func(r projector.Rows) bool { return synced(r, start1, ids...) })
	synced1 := map[string]time.Time{}
	for _, p := range rows.Pages {
		synced1[p.PageID] = *p.LastSyncedAt
	}

	f.sim.ResetRequests()
	// A new message in an inbox thread and one in a thread marked done.
	page := ids[1]
	var changed []graphsim.Conversation
	var added []graphsim.Message
	for _, folder := range []string{graphsim.FolderInbox, graphsim.FolderDone} {
		var conv graphsim.Conversation
		for _, c := range f.sim.Conversations(page) {
			if c.Folder == folder {
				conv = c // the folder's oldest
			}
		}
		m, err := f.sim.AddMessage(page, conv.User.PSID, "is it still for sale?", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		changed, added = append(changed, conv), append(added, m)
	}
	sum2, err := f.job.Run(f.ctx, nil, nil)
	if err != nil {
		t.Fatalf("second Run() error = %v", err)
	}
	// Each folder's walk stops on its first page: one call per folder and page.
	calls2 := f.sim.Requests()
	if calls2.ByKind[graphsim.KindConversations] != 3*4 || calls2.Calls != 3*4 || 2*calls2.Calls > calls1 {
		t.Errorf("second Run() made %d Graph calls (%v), first %d: want 12, one per folder of each page", calls2.Calls, calls2.ByKind, calls1)
	}
	if sum2.Conversations != 2 || sum2.Messages != 12 || sum2.GraphRequests >= sum1.GraphRequests {
		t.Errorf("second Run() = %+v, want 2 conversations, 12 messages and fewer requests than %d", sum2, sum1.GraphRequests)
	}

	rows = f.waitFor(t, "the new messages and every page synced again", func(r projector.Rows) bool {
		for _, p := range r.Pages {
			if p.LastSyncedAt == nil || !p.LastSyncedAt.After(synced1[p.PageID]) {
				return false
			}
		}
		found := 0
		for _, m := range r.Messages {
			if m.PageID == page && (m.MID == added[0].ID || m.MID == added[1].ID) {
				found++
			}
		}
		return found == 2
	})
	for _, conv := range changed {
		for _, c := range rows.Conversations {
			if c.PageID == page && c.PSID == conv.User.PSID && c.MessageCount != conv.MessageCount+1 {
				t.Errorf("conversation %s (%s) message_count = %d, want %d", conv.ID, conv.Folder, c.MessageCount, conv.MessageCount+1)
			}
		}
	}
}

func TestExpiredTokenFailsOnlyItsPage(t *testing.T) {
	t.Parallel()
	cfg := Defaults()
	cfg.Full = true
	f := newFixture(t, graphsim.Config{Pages: 3, Conversations: 4, Messages: 3, Seed: 3}, 25, cfg)
	pages := f.sim.Pages()
	bad := pages[0]
	if err := f.sim.ExpireToken(bad.ID); err != nil {
		t.Fatal(err)
	}
	var progress strings.Builder
	before := time.Now().Add(-time.Second)
	sum, err := f.job.Run(f.ctx, nil, &progress)
	if !errors.Is(err, ErrPagesFailed) {
		t.Errorf("Run() error = %v, want ErrPagesFailed", err)
	}
	if len(sum.Failed) != 1 || !strings.Contains(sum.Failed[bad.ID], "token") || sum.Pages != 2 {
		t.Errorf("Run() = %+v, want page %s failed for its token and 2 pages synced", sum, bad.ID)
	}
	for _, p := range pages {
		if strings.Contains(sum.Failed[bad.ID], p.AccessToken) || strings.Contains(progress.String(), p.AccessToken) ||
			(err != nil && strings.Contains(err.Error(), p.AccessToken)) {
			t.Errorf("a token of page %s appears in the summary, the error or the progress", p.ID)
		}
	}
	if !strings.Contains(progress.String(), bad.ID+": failed") {
		t.Errorf("progress does not say page %s failed:\n%s", bad.ID, progress.String())
	}
	good := []string{pages[1].ID, pages[2].ID}
	rows := f.waitFor(t, "the good pages synced", func(r projector.Rows) bool { return synced(r, before, good...) })
	wantC, _ := simModel(f.sim, good...)
	gotC, _ := readModel(rows, good...)
	if diff := cmp.Diff(wantC, gotC, sortKeys...); diff != "" {
		t.Errorf("conversations of the good pages differ (-sim +read model):\n%s", diff)
	}
	if c, _ := readModel(rows, bad.ID); len(c) != 0 || synced(rows, before, bad.ID) {
		t.Errorf("page %s with an expired token has %d conversations or a last_synced_at, want none", bad.ID, len(c))
	}
}

func TestWebhookAndBackfillGiveNoDuplicates(t *testing.T) {
	t.Parallel()
	cfg := Defaults()
	cfg.Full = true
	f := newFixture(t, graphsim.Config{Pages: 1, Conversations: 3, Messages: 6, Seed: 5}, 25, cfg)
	page := f.sim.Pages()[0].ID
	conv := f.sim.Conversations(page)[0]
	var m graphsim.Message
	for _, x := range f.sim.Messages(conv.ID) {
		if x.Inbound {
			m = x
			break
		}
	}
	b, _, err := schemas.Encode(schemas.SourceWebhook, time.Now(), schemas.Message{PageID: page, PSID: m.PSID, MID: m.ID,
		Text: m.Text, SentAt: m.CreatedTime})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.app.Append(f.ctx, []*kgo.Record{{Topic: f.kc.EventsTopic, Key: []byte(page), Value: b}}); err != nil {
		t.Fatalf("append webhook message: %v", err)
	}
	before := time.Now().Add(-time.Second)
	if _, err := f.job.Run(f.ctx, []string{page}, nil); err != nil {
		t.Fatalf("Run() error = %v", err)
	}
	rows := f.waitFor(t, "the page synced", func(r projector.Rows) bool { return synced(r, before, page) })
	wantC, wantM := simModel(f.sim, page)
	gotC, gotM := readModel(rows, page)
	if diff := cmp.Diff(wantC, gotC, sortKeys...); diff != "" {
		t.Errorf("conversations differ (-sim +read model):\n%s", diff)
	}
	if diff := cmp.Diff(wantM, gotM, sortKeys...); diff != "" {
		t.Errorf("messages differ (-sim +read model):\n%s", diff)
	}
}

// A rate-limit storm (every page blocked for a while) slows the job, but it completes with
// every page and nothing failed.
func TestRateLimitStormSlowsButCompletes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, graphsim.Config{Pages: 3, Conversations: 6, Messages: 3, Seed: 21}, 25, Defaults())
	f.sim.Storm(1500 * time.Millisecond)
	sum, err := f.job.Run(f.ctx, nil, nil)
	if err != nil {
		t.Fatalf("Run() during a storm = %v, want it to wait and complete", err)
	}
	if sum.Pages != 3 || len(sum.Failed) != 0 || sum.Conversations != 18 {
		t.Errorf("Run() during a storm = %+v, want 3 pages and 18 conversations, none failed", sum)
	}
	if got := f.sim.Requests().Throttled; got == 0 {
		t.Errorf("the simulator throttled %d calls, want the storm to have blocked some", got)
	}
	if sum.Duration < time.Second {
		t.Errorf("Run() took %s during a 1.5s storm, want it slowed down", sum.Duration)
	}
}

// On a terminal each page in progress has a bar above the bar of pages done, scaled by
// what the read model already holds for it.
func TestTerminalShowsABarPerPage(t *testing.T) {
	t.Parallel()
	cfg := Defaults()
	cfg.Full = true
	// 300 ms a call, 4 folders: the pages are in progress long enough to be drawn.
	f := newFixture(t, graphsim.Config{Pages: 2, Conversations: 6, Messages: 3, Seed: 13, FolderShare: 1.0 / 6,
		Latency: 300 * time.Millisecond}, 25, cfg)
	ids := pageIDs(f.sim)
	before := time.Now().Add(-time.Second)
	if _, err := f.job.Run(f.ctx, nil, nil); err != nil {
		t.Fatalf("first Run() error = %v", err)
	}
	f.waitFor(t, "both pages synced", func(r projector.Rows) bool { return synced(r, before, ids...) })

	f.job.isTerminal = func(io.Writer) bool { return true }
	var out strings.Builder
	if _, err := f.job.Run(f.ctx, nil, &out); err != nil {
		t.Fatalf("second Run() error = %v", err)
	}
	for _, id := range ids {
		// "  104400000000000 [====…    ]  50% 3/6 …": 6 threads known from the first run.
		re := regexp.MustCompile(`  ` + id + ` \[[= ]{20}\] +\d+% \d/6 \d+ messages, (inbox|other|page_done|spam)`)
		if !re.MatchString(out.String()) {
			t.Errorf("the terminal output has no bar for page %s out of the 6 threads the read model holds:\n%q", id, out.String())
		}
	}
	if !strings.Contains(out.String(), "100.0% 2/2") {
		t.Errorf("the terminal output has no full bar of pages done:\n%q", out.String())
	}
}

// Meta limits each Page token on its own, so by default every Page of a run is read at
// once (up to DefaultConcurrency), with as many Graph requests in flight: a page's first
// listing is held until every page's first listing arrived. With 8 at a time (the old
// default: 31 s for 50 pages against a 4 s bound) the other 12 never arrive while the
// first 8 are held.
func TestDefaultsReadEveryPageAtOnce(t *testing.T) {
	t.Parallel()
	const pages = 20
	sim, err := graphsim.New(graphsim.Config{Pages: pages, Conversations: 2, Messages: 2, Seed: 17,
		Until: time.Now().Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	arrived := map[string]bool{}
	held := 0 // the most pages with a listing held at once
	all := make(chan struct{})
	h := sim.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if parts := strings.Split(r.URL.Path, "/"); len(parts) == 4 && parts[3] == "conversations" {
			mu.Lock()
			if !arrived[parts[2]] {
				arrived[parts[2]] = true
				held = max(held, len(arrived))
				if len(arrived) == pages {
					close(all)
				}
			}
			mu.Unlock()
			select { // hold it until every page has a listing in flight
			case <-all:
			case <-time.After(5 * time.Second):
				mu.Lock()
				clear(arrived) // given up: count those in flight from now on
				mu.Unlock()
			case <-r.Context().Done():
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	gcfg := graph.Defaults()
	gcfg.BaseURL, gcfg.Version = srv.URL, sim.Version()
	gc, err := graph.New(gcfg, nil, nil, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	kc := testenv.Kafka(t, 4)
	pool, _ := testenv.Postgres(t)
	ctx := testenv.Context(t, 3*time.Minute)
	for _, p := range sim.Pages() {
		if _, err := pool.Exec(ctx, `INSERT INTO facebook_pages (page_id, access_token) VALUES ($1, $2)`, p.ID, p.AccessToken); err != nil {
			t.Fatalf("insert page %s: %v", p.ID, err)
		}
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(kc.Brokers...)}, ingest.ProducerOpts()...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	job, err := New(Defaults(), gc, pool, ingest.NewKafkaAppender(cl), kc.EventsTopic, nil, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	sum, err := job.Run(ctx, nil, nil)
	if err != nil || sum.Pages != pages {
		t.Fatalf("Run() = %+v, %v; want %d pages", sum, err, pages)
	}
	mu.Lock()
	defer mu.Unlock()
	if held != pages {
		t.Errorf("with the defaults (BACKFILL_CONCURRENCY %d, GRAPH_API_MAX_CONCURRENCY %d) at most %d of %d pages had a listing in flight at once, want all",
			Defaults().Concurrency, gcfg.MaxConcurrency, held, pages)
	}
}
