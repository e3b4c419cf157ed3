package backfill

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/ingest/graph"
	"github.com/convsync/convsync/internal/graphsim"
	"github.com/convsync/convsync/internal/logging"
	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/schemas"
)

// appender is an ingest.Appender in memory: it keeps what it is given, after calling
// hold (nil: none), whose error fails the append.
type appender struct {
	hold func(ctx context.Context, recs []*kgo.Record) error

	mu   sync.Mutex
	recs []*kgo.Record
}

func (a *appender) Append(ctx context.Context, recs []*kgo.Record) error {
	if a.hold != nil {
		if err := a.hold(ctx, recs); err != nil {
			return err
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = append(a.recs, recs...)
	return nil
}

// types returns the ce_type of each record appended for page, in order.
func (a *appender) types(page string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, r := range a.recs {
		if string(r.Key) != page {
			continue
		}
		for _, h := range r.Headers {
			if h.Key == "ce_type" {
				out = append(out, string(h.Value))
			}
		}
	}
	return out
}

// listingServer serves sim and counts each Page's conversations listings; listed(page, n)
// is closed when the page's n-th listing arrives.
type listingServer struct {
	*httptest.Server
	mu      sync.Mutex
	calls   map[string]int
	waiters map[[2]any]chan struct{}
}

func newListingServer(t *testing.T, sim *graphsim.Sim) *listingServer {
	s := &listingServer{calls: map[string]int{}, waiters: map[[2]any]chan struct{}{}}
	h := sim.Handler()
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if parts := strings.Split(r.URL.Path, "/"); len(parts) == 4 && parts[3] == "conversations" {
			s.mu.Lock()
			s.calls[parts[2]]++
			if ch := s.waiters[[2]any{parts[2], s.calls[parts[2]]}]; ch != nil {
				close(ch)
			}
			s.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *listingServer) listed(page string, n int) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan struct{})
	s.waiters[[2]any{page, n}] = ch
	return ch
}

func (s *listingServer) listings(page string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[page]
}

// newPageJob is a job on sim behind srv, conversations listed pageSize at a time, appending
// to app; every Page of sim is in facebook_pages.
func newPageJob(t *testing.T, sim *graphsim.Sim, srv *listingServer, pageSize int, app *appender) (*Job, context.Context) {
	t.Helper()
	pool, _ := testenv.Postgres(t)
	ctx := testenv.Context(t, time.Minute)
	for _, p := range sim.Pages() {
		if _, err := pool.Exec(ctx, `INSERT INTO facebook_pages (page_id, access_token) VALUES ($1, $2)`, p.ID, p.AccessToken); err != nil {
			t.Fatalf("insert page %s: %v", p.ID, err)
		}
	}
	gcfg := graph.Defaults()
	gcfg.BaseURL, gcfg.Version, gcfg.PageSize, gcfg.PageRate = srv.URL, sim.Version(), pageSize, 10_000
	gc, err := graph.New(gcfg, srv.Client(), nil, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	cfg := Defaults()
	cfg.Full = true
	job, err := New(cfg, gc, pool, app, "events", nil, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	return job, ctx
}

// A Page's next Graph call does not wait for Kafka to acknowledge the chunk before it:
// the first append is held until the page's second listing call arrives (before, it
// waited for the append, which timed out). The page synced event still comes last,
// after every other record was acknowledged.
func TestListingGoesOnWhileChunksAppend(t *testing.T) {
	t.Parallel()
	sim, err := graphsim.New(graphsim.Config{Pages: 1, Conversations: 2 * chunkThreads, Messages: 2, Seed: 9,
		FolderShare: -1, Until: time.Now().Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	srv := newListingServer(t, sim)
	page := sim.Pages()[0].ID
	second := srv.listed(page, 2)
	var once sync.Once
	app := &appender{hold: func(ctx context.Context, _ []*kgo.Record) error {
		var err error
		once.Do(func() {
			select {
			case <-second:
			case <-time.After(5 * time.Second):
				err = errors.New("the second listing call never came while the first chunk was appending")
			case <-ctx.Done():
				err = ctx.Err()
			}
		})
		return err
	}}
	job, ctx := newPageJob(t, sim, srv, chunkThreads, app) // one chunk per listing call
	sum, err := job.Run(ctx, nil, nil)
	if err != nil || sum.Pages != 1 || sum.Conversations != 2*chunkThreads || sum.Messages != 4*chunkThreads {
		t.Fatalf("Run() = %+v, %v; want 1 page, %d conversations, %d messages", sum, err, 2*chunkThreads, 4*chunkThreads)
	}
	types := app.types(page)
	if n := len(types); n != 1+6*chunkThreads || types[n-1] != schemas.TypePageSynced {
		t.Errorf("appended %d records ending with %q, want %d ending with the page synced event", n, types[n-1], 1+6*chunkThreads)
	}
}

// An append that fails fails its Page, which stops listing and gets no page synced
// event; the other Pages go on.
func TestFailedAppendFailsOnlyItsPage(t *testing.T) {
	t.Parallel()
	const threads = 20 * chunkThreads // a listing call and a chunk each chunkThreads
	sim, err := graphsim.New(graphsim.Config{Pages: 2, Conversations: threads, Messages: 1, Seed: 10,
		FolderShare: -1, Until: time.Now().Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	srv := newListingServer(t, sim)
	bad, good := sim.Pages()[0].ID, sim.Pages()[1].ID
	app := &appender{hold: func(_ context.Context, recs []*kgo.Record) error {
		if string(recs[0].Key) == bad {
			return errors.New("broker says no")
		}
		return nil
	}}
	job, ctx := newPageJob(t, sim, srv, chunkThreads, app)
	sum, err := job.Run(ctx, nil, nil)
	if !errors.Is(err, ErrPagesFailed) || sum.Pages != 1 || !strings.Contains(sum.Failed[bad], "broker says no") {
		t.Fatalf("Run() = %+v, %v; want page %s failed with the append's error and the other synced", sum, err, bad)
	}
	if types := app.types(bad); len(types) != 0 {
		t.Errorf("page %s appended %d records, want none", bad, len(types))
	}
	// 20 inbox calls and one for each other folder; the inbox's stop a few calls after the
	// first append failed (the calls in flight then, and the chunks appending).
	if n := srv.listings(bad); n >= 10 {
		t.Errorf("page %s made %d listing calls of its 23 after its first append failed, want it stopped", bad, n)
	}
	if types := app.types(good); len(types) != 1+2*threads || types[len(types)-1] != schemas.TypePageSynced {
		t.Errorf("page %s appended %d records, want %d ending with the page synced event", good, len(types), 1+2*threads)
	}
}

// The folders besides the inbox are listed beside it, not after it: every append is held
// until the spam folder's listing call arrives, and the inbox has more chunks than may be
// appending at once. Listed one after another, the folders waited for the inbox's
// appends, which waited for the spam folder's call.
func TestSmallFoldersDoNotWaitForTheInbox(t *testing.T) {
	t.Parallel()
	const inbox = (appendsInFlight + 2) * chunkThreads
	sim, err := graphsim.New(graphsim.Config{Pages: 1, Conversations: inbox + 3, Messages: 1, Seed: 12,
		FolderShare: 1.0 / (inbox + 3), Until: time.Now().Add(-24 * time.Hour)}) // one thread in each other folder
	if err != nil {
		t.Fatal(err)
	}
	page := sim.Pages()[0].ID
	spam := make(chan struct{})
	var once sync.Once
	h := sim.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("folder") == graphsim.FolderSpam {
			once.Do(func() { close(spam) })
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	app := &appender{hold: func(ctx context.Context, _ []*kgo.Record) error {
		select {
		case <-spam:
			return nil
		case <-time.After(5 * time.Second):
			return errors.New("the spam folder was not listed while the inbox's chunks were appending")
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	job, ctx := newPageJob(t, sim, &listingServer{Server: srv}, chunkThreads, app)
	sum, err := job.Run(ctx, nil, nil)
	if err != nil || sum.Conversations != inbox+3 {
		t.Fatalf("Run() = %+v, %v; want %d conversations", sum, err, inbox+3)
	}
	if types := app.types(page); len(types) != 1+2*(inbox+3) {
		t.Errorf("appended %d records, want %d", len(types), 1+2*(inbox+3))
	}
}
