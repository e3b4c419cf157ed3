// Package backfill reads Facebook Pages' Messenger threads from the Graph API and
// appends them to the event log, so the read model holds what happened before the
// webhooks were subscribed, or while they were down.
//
// In: the Pages and Page access tokens of the facebook_pages table, and the Graph API
// through an ingest/graph client. Out: records on the events topic keyed by page id:
// one ConversationObserved per thread, one MessageObserved per recent message (at most
// Config.Messages, the ones Graph lets an app read), then one PageSynced per Page that
// moves facebook_pages.last_synced_at once the projector applies it.
//
// Guarantees:
//   - Pages are independent: a Page whose token was rejected, or whose backfill failed
//     otherwise, is reported in Summary.Failed and the others go on.
//   - A Page's PageSynced goes out only after every other record of that Page was
//     acknowledged, so last_synced_at never moves past data that is not in the log.
//   - Event ids are deterministic: a message seen by both a webhook and a backfill is
//     one message in the read model, and running a backfill twice changes nothing.
//   - Every folder is listed (inbox, other, page_done, spam: threads moved to Done,
//     Other or Spam are not in the default listing), so at least four Graph requests
//     per Page. Without Config.Full only threads updated since last_synced_at (less a
//     safety overlap) are read in each, and messages come with the conversations
//     listing through field expansion: one Graph request per GRAPH_API_PAGE_SIZE
//     threads of a folder (200).
//   - Access tokens are never logged nor put in errors, the Summary or progress lines.
package backfill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/convsync/convsync/ingest"
	"github.com/convsync/convsync/ingest/graph"
	"github.com/convsync/convsync/internal/logging"
	progressbar "github.com/convsync/convsync/internal/progress"
)

// readableMessages is how many of a thread's newest messages Graph returns in detail.
const readableMessages = 20

// overlap is read again before last_synced_at: a thread updated while the previous run
// was listing may have been passed over. Re-reading it is harmless (deterministic ids).
const overlap = 5 * time.Minute

// ErrPagesFailed is returned by Run, wrapped, when some Pages could not be backfilled;
// the Summary names them.
var ErrPagesFailed = errors.New("some pages failed")

// DefaultConcurrency is Config.Concurrency when nothing is set. Meta limits each Page
// token on its own (2 calls per second, and a rolling budget), so Pages do not slow each
// other down and a run takes as long as its slowest Page only when they all go at once:
// 50 Pages at 8 at a time took 31 s against a 4 s bound, all 50 at once 11 s on the same
// loaded machine (BENCH.md). The cap bounds memory (about 7 MB a Page in progress: an
// answer of up to 200 threads with their messages, and a chunk of records on its way to
// Kafka; 380 MB at most for 50 Pages of 200 threads) and the calls of the app as a whole,
// which Meta also limits (X-App-Usage); graph.Defaults lets two requests a Page be in
// flight.
const DefaultConcurrency = 64

// Config is the backfill job's configuration.
type Config struct {
	Concurrency int  // BACKFILL_CONCURRENCY: Pages backfilled in parallel
	Messages    int  // BACKFILL_MESSAGES: newest messages read per thread (Graph: 20 readable)
	Full        bool // BACKFILL_FULL: read every thread, ignoring last_synced_at
}

// Defaults returns the configuration used when nothing is set.
func Defaults() Config {
	return Config{Concurrency: DefaultConcurrency, Messages: readableMessages}
}

// Validate reports the first invalid value, naming its variable.
func (c Config) Validate() error {
	switch {
	case c.Concurrency < 1:
		return fmt.Errorf("BACKFILL_CONCURRENCY must be at least 1, got %d", c.Concurrency)
	case c.Messages < 1 || c.Messages > readableMessages:
		return fmt.Errorf("BACKFILL_MESSAGES must be between 1 and %d (Graph only returns the %d newest messages of a thread), got %d",
			readableMessages, readableMessages, c.Messages)
	}
	return nil
}

// Summary says what a Run did.
type Summary struct {
	Duration      time.Duration
	Pages         int // Pages backfilled completely
	Conversations int // ConversationObserved appended
	Messages      int // MessageObserved appended
	// GraphRequests and ThrottleWaits are the increase of the graph client's
	// convsync_graph_requests_total and convsync_graph_throttle_waits_total during the
	// run, when the registerer given to New is also a prometheus.Gatherer holding them
	// (the graph client registered there); otherwise 0.
	GraphRequests int64
	ThrottleWaits int64
	// Failed maps a Page id to why it was not backfilled. It never holds a token.
	Failed map[string]string
}

// Job backfills Pages. Build it with New; it is safe to Run once at a time.
type Job struct {
	cfg     Config
	gc      *graph.Client
	pool    *pgxpool.Pool
	app     ingest.Appender
	topic   string
	gather  prometheus.Gatherer // nil: no request counts in the Summary
	metrics *metrics
	log     *slog.Logger
	now     func() time.Time
	// isTerminal says whether Run's progress writer is a terminal (bars) or not (lines).
	isTerminal func(io.Writer) bool
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && logging.IsTerminal(f)
}

// New validates cfg and builds a job; it makes no call. reg and log may be nil.
func New(cfg Config, gc *graph.Client, pool *pgxpool.Pool, app ingest.Appender, topic string,
	reg prometheus.Registerer, log *slog.Logger) (*Job, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case gc == nil:
		return nil, errors.New("backfill: nil graph client")
	case pool == nil:
		return nil, errors.New("backfill: nil postgres pool")
	case app == nil:
		return nil, errors.New("backfill: nil appender")
	case topic == "":
		return nil, errors.New("backfill: empty events topic (KAFKA_EVENTS_TOPIC)")
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	g, _ := reg.(prometheus.Gatherer)
	return &Job{cfg: cfg, gc: gc, pool: pool, app: app, topic: topic, gather: g, metrics: m, log: log, now: time.Now,
		isTerminal: isTerminal}, nil
}

// pageRow is a facebook_pages row. The token stays in here and goes to the graph client
// only.
type pageRow struct {
	id, name, token string
	lastSynced      *time.Time
}

// Run backfills pageIDs (none: every Page with a token), at most Concurrency at a time,
// writing a line per finished Page and a final line to progress (nil: none). The error
// is ctx's when the run was cancelled, wraps ErrPagesFailed when some Pages failed (the
// Summary says which and why), or is about reading facebook_pages.
func (j *Job) Run(ctx context.Context, pageIDs []string, progress io.Writer) (Summary, error) {
	if progress == nil {
		progress = io.Discard
	}
	start := j.now().UTC().Truncate(time.Microsecond) // Postgres keeps microseconds
	reqs0, waits0 := j.graphCounts()
	sum := Summary{Failed: map[string]string{}}

	pages, missing, err := j.pages(ctx, pageIDs)
	if err != nil {
		return sum, err
	}
	maps.Copy(sum.Failed, missing)

	// On a terminal, a bar of the pages done, with a bar for each page in progress above
	// it, replaces the line per successful page.
	var bar *progressbar.Reporter
	if j.isTerminal(progress) {
		bar = progressbar.New(progress, int64(len(pages)), true)
	}

	var mu sync.Mutex // guards sum and progress
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(j.cfg.Concurrency)
	for _, p := range pages {
		g.Go(func() error {
			t0 := time.Now()
			var item *progressbar.Item // nil off a terminal: its methods do nothing
			if bar != nil {
				item = bar.Item(p.id, j.expected(gctx, p))
			}
			res, err := j.page(gctx, p, start, item)
			d := time.Since(t0)
			j.metrics.pageSeconds.Observe(d.Seconds())
			mu.Lock()
			defer mu.Unlock()
			sum.Conversations += res.conversations
			sum.Messages += res.messages
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				reason := failReason(err)
				sum.Failed[p.id] = reason
				j.metrics.pages.WithLabelValues(outcomeOf(err)).Inc()
				j.log.WarnContext(ctx, "backfill of page failed", "page_id", p.id, "error", reason)
				line := fmt.Sprintf("page %s: failed after %s: %s", p.id, d.Round(time.Millisecond), reason)
				if bar != nil {
					item.Finish(line)
					bar.Add(1)
					return nil
				}
				fmt.Fprintln(progress, line)
				return nil
			}
			sum.Pages++
			j.metrics.pages.WithLabelValues("ok").Inc()
			j.log.InfoContext(ctx, "page backfilled", "page_id", p.id,
				"conversations", res.conversations, "messages", res.messages, "duration", d)
			if bar != nil {
				item.Finish("")
				bar.Add(1)
				return nil
			}
			fmt.Fprintf(progress, "page %s: %d conversations, %d messages in %s\n",
				p.id, res.conversations, res.messages, d.Round(time.Millisecond))
			return nil
		})
	}
	err = g.Wait()
	if bar != nil {
		bar.Done()
	}
	reqs1, waits1 := j.graphCounts()
	sum.GraphRequests, sum.ThrottleWaits = reqs1-reqs0, waits1-waits0
	sum.Duration = j.now().Sub(start)
	fmt.Fprintf(progress, "backfill: %d pages synced, %d failed, %d conversations, %d messages, %d graph requests, %d throttle waits in %s\n",
		sum.Pages, len(sum.Failed), sum.Conversations, sum.Messages, sum.GraphRequests, sum.ThrottleWaits, sum.Duration.Round(time.Millisecond))
	if err != nil {
		return sum, fmt.Errorf("backfill cancelled: %w", err)
	}
	if len(sum.Failed) > 0 {
		ids := make([]string, 0, len(sum.Failed))
		for id := range sum.Failed {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		return sum, fmt.Errorf("backfill: %d of %d pages failed (%v): %w", len(ids), len(pages)+len(missing), ids, ErrPagesFailed)
	}
	return sum, nil
}

// pages reads the Pages to backfill. Asked-for ids without a row or a token come back
// in missing with the reason.
func (j *Job) pages(ctx context.Context, ids []string) ([]pageRow, map[string]string, error) {
	const cols = `SELECT page_id, coalesce(name, ''), coalesce(access_token, ''), last_synced_at FROM facebook_pages`
	var rows pgx.Rows
	var err error
	if len(ids) == 0 {
		rows, err = j.pool.Query(ctx, cols+` WHERE coalesce(access_token, '') <> '' ORDER BY page_id`)
	} else {
		rows, err = j.pool.Query(ctx, cols+` WHERE page_id = ANY($1) ORDER BY page_id`, ids)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read facebook_pages: %w", err)
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pageRow, error) {
		var p pageRow
		err := r.Scan(&p.id, &p.name, &p.token, &p.lastSynced)
		return p, err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read facebook_pages: %w", err)
	}
	missing := map[string]string{}
	found := map[string]bool{}
	out := all[:0]
	for _, p := range all {
		found[p.id] = true
		if p.token == "" {
			missing[p.id] = "no access token in facebook_pages"
			continue
		}
		out = append(out, p)
	}
	for _, id := range ids {
		if !found[id] {
			missing[id] = "not in facebook_pages"
		}
	}
	return out, missing, nil
}

// expected estimates the threads a backfill of p reads, for its progress bar: those the
// read model holds for the page in the span the run reads (every one for a full run).
// 0 (unknown) when it holds none, on a first run, or the query fails.
func (j *Job) expected(ctx context.Context, p pageRow) int64 {
	var since *time.Time
	if s := j.since(p); !s.IsZero() {
		since = &s
	}
	var n int64
	if err := j.pool.QueryRow(ctx, `SELECT count(*) FROM conversations WHERE page_id = $1
		AND ($2::timestamptz IS NULL OR last_message_at >= $2)`, p.id, since).Scan(&n); err != nil {
		return 0 // only a bar's scale
	}
	return n
}

// since is the earliest updated_time a backfill of p reads: last_synced_at less the
// overlap, or zero for every thread.
func (j *Job) since(p pageRow) time.Time {
	if j.cfg.Full || p.lastSynced == nil {
		return time.Time{}
	}
	return p.lastSynced.Add(-overlap)
}

// graphCounts sums the graph client's request and throttle-wait counters.
func (j *Job) graphCounts() (requests, waits int64) {
	if j.gather == nil {
		return 0, 0
	}
	mfs, err := j.gather.Gather()
	if err != nil {
		return 0, 0
	}
	for _, mf := range mfs {
		var sum float64
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
		switch mf.GetName() {
		case "convsync_graph_requests_total":
			requests = int64(sum)
		case "convsync_graph_throttle_waits_total":
			waits = int64(sum)
		}
	}
	return requests, waits
}

// failReason says why a Page failed, for the Summary and logs. Graph errors never hold
// the token (the graph client's guarantee), so the error's text is safe.
func failReason(err error) string {
	if graph.IsTokenError(err) {
		return "access token rejected, the page needs a new token: " + err.Error()
	}
	return err.Error()
}
