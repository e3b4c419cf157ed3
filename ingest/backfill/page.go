package backfill

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/convsync/convsync/ingest/graph"
	progressbar "github.com/convsync/convsync/internal/progress"
	"github.com/convsync/convsync/schemas"
)

// chunkThreads is how many threads are gathered before their names are looked up and
// their records appended: one Profiles batch and one Append per chunk.
const chunkThreads = 50

// appendsInFlight is how many chunks of a Page may be on their way to Kafka while its
// listings go on: the next Graph call does not wait for the broker, and a Page holds no
// more than that many chunks besides the ones its listings are filling. One is enough:
// with 200 threads a call the inbox's chunks all come from its first answer, and more
// at once only made 50 Pages encode together while the simulator's answers waited for
// the CPU (2, 4: 1.9-2.1 s and more memory; 1: 1.6-1.7 s, BenchmarkLoadBackfillBinary).
const appendsInFlight = 1

// thread is a conversation read from Graph with its newest messages.
type thread struct {
	conv graph.Conversation
	psid graph.Party
	msgs []graph.Message
}

// messageFields are the fields of a message the events need: the sender's id tells the
// direction in a thread of two, so "to" and the sender's name and email are left out
// (with times as Unix seconds, which the graph client asks for, an answer of 25 threads
// is 77 kB instead of 118).
var messageFields = []string{"id", "created_time", "from{id}", "message", "attachments"}

type pageResult struct {
	conversations, messages int
}

// page backfills one Page: its threads updated since last_synced_at in each folder
// (the default listing holds the inbox alone: threads moved to other, page_done or spam
// are only in theirs) in chunks, then a PageSynced once every chunk is acknowledged.
//
// The inbox (by far the largest folder: one call for up to PageSize threads) is listed
// on one lane and the other folders, one after another, on a second, both at once: the
// Page's window lets two calls go together, and the small folders' calls do not wait
// behind the appends of the inbox's chunks, so the Page's second window follows the
// inbox's answer by one window instead of following small calls made only after those
// appends. A batch would not help: each operation counts as a call. A chunk is appended
// while the listings go on (appendsInFlight); a failed append stops them.
//
// item (nil off a terminal) shows the threads read, the messages and the folder.
func (j *Job) page(ctx context.Context, p pageRow, start time.Time, item *progressbar.Item) (pageResult, error) {
	var (
		mu   sync.Mutex // guards res, name and read
		res  pageResult
		name = p.name
		read int // messages read, for item
	)
	since := j.since(p)
	fields := append(slices.Clone(graph.ConversationFields),
		"messages.limit("+strconv.Itoa(j.cfg.Messages)+"){"+strings.Join(messageFields, ",")+"}")

	appends, actx := errgroup.WithContext(ctx) // actx ends when an append fails
	appends.SetLimit(appendsInFlight)
	flush := func(chunk []thread) {
		if len(chunk) == 0 {
			return
		}
		appends.Go(func() error { // waits while appendsInFlight chunks are on their way
			n, m, err := j.flush(actx, p, chunk, start)
			mu.Lock()
			res.conversations += n
			res.messages += m
			mu.Unlock()
			return err
		})
	}
	// list reads folders one after another, flushing a chunk each chunkThreads threads.
	list := func(ctx context.Context, folders []graph.Folder) error {
		chunk := make([]thread, 0, chunkThreads)
		for _, folder := range folders {
			mu.Lock()
			item.Add(0, fmt.Sprintf("%d messages, %s", read, folder))
			mu.Unlock()
			for conv, err := range j.gc.Conversations(ctx, p.id, p.token, folder, since, fields) {
				if err != nil {
					return err
				}
				user, ok := conv.PSID(p.id)
				if !ok {
					j.log.WarnContext(ctx, "thread without a user skipped", "page_id", p.id, "thread_id", conv.ID)
					continue
				}
				msgs := conv.Messages
				if !conv.Expanded { // Graph left the expansion out: ask for the edge
					var err error
					if msgs, err = j.messages(ctx, conv.ID, p.token); err != nil {
						return err
					}
				}
				if len(msgs) > j.cfg.Messages {
					msgs = msgs[:j.cfg.Messages]
				}
				mu.Lock()
				for _, pt := range conv.Participants {
					if pt.ID == p.id && pt.Name != "" {
						name = pt.Name
					}
				}
				read += len(msgs)
				item.Add(1, fmt.Sprintf("%d messages, %s", read, folder))
				mu.Unlock()
				chunk = append(chunk, thread{conv: conv, psid: user, msgs: msgs})
				if len(chunk) >= chunkThreads {
					flush(chunk)
					chunk = make([]thread, 0, chunkThreads)
				}
			}
		}
		flush(chunk)
		return nil
	}
	folders := graph.Folders() // the inbox first
	lanes, lctx := errgroup.WithContext(actx)
	lanes.Go(func() error { return list(lctx, folders[:1]) })
	lanes.Go(func() error { return list(lctx, folders[1:]) })
	err := lanes.Wait()
	if aerr := appends.Wait(); aerr != nil {
		err = aerr // the cause: a failed append ends the listings with actx's error
	}
	if err != nil {
		return res, err
	}
	rec, err := j.record(schemas.PageSynced{PageID: p.id, Name: name, SyncedAt: start})
	if err != nil {
		return res, err
	}
	if err := j.app.Append(ctx, []*kgo.Record{rec}); err != nil {
		return res, fmt.Errorf("append page synced of page %s: %w", p.id, err)
	}
	j.metrics.events.WithLabelValues("page_synced").Inc()
	return res, nil
}

// messages reads a thread's newest messages through its messages edge.
func (j *Job) messages(ctx context.Context, threadID, token string) ([]graph.Message, error) {
	var out []graph.Message
	for m, err := range j.gc.Messages(ctx, threadID, token, j.cfg.Messages, messageFields) {
		if err != nil {
			return nil, err
		}
		out = append(out, m)
		if len(out) == j.cfg.Messages {
			break
		}
	}
	return out, nil
}

// flush resolves the names Graph left out of the participants, then appends the chunk's
// conversations and messages in one Append.
func (j *Job) flush(ctx context.Context, p pageRow, chunk []thread, start time.Time) (convs, msgs int, err error) {
	var unnamed []string
	for _, t := range chunk {
		if t.psid.Name == "" {
			unnamed = append(unnamed, t.psid.ID)
		}
	}
	var names map[string]string
	if len(unnamed) > 0 {
		names, err = j.gc.Profiles(ctx, p.token, unnamed)
		if err != nil {
			if graph.IsTokenError(err) {
				return 0, 0, fmt.Errorf("look up names of page %s: %w", p.id, err)
			}
			// A name is a nicety: the thread goes without it.
			j.log.WarnContext(ctx, "some user names not found", "page_id", p.id, "error", err)
		}
	}
	var recs []*kgo.Record
	for _, t := range chunk {
		pname := t.psid.Name
		if pname == "" {
			pname = names[t.psid.ID]
		}
		rec, err := j.record(schemas.ConversationObserved{
			PageID: p.id, PSID: t.psid.ID, ThreadID: t.conv.ID, ParticipantName: pname,
			Snippet: t.conv.Snippet, UpdatedTime: t.conv.UpdatedTime, MessageCount: t.conv.MessageCount,
			UnreadCount: t.conv.UnreadCount, ObservedAt: start,
		})
		if err != nil {
			return 0, 0, err
		}
		recs = append(recs, rec)
		for _, m := range t.msgs {
			rec, err := j.record(observed(p.id, t.psid.ID, m))
			if err != nil {
				return 0, 0, err
			}
			recs = append(recs, rec)
		}
		msgs += len(t.msgs)
	}
	if err := j.app.Append(ctx, recs); err != nil {
		return 0, 0, fmt.Errorf("append %d records of page %s: %w", len(recs), p.id, err)
	}
	j.metrics.events.WithLabelValues("conversation").Add(float64(len(chunk)))
	j.metrics.events.WithLabelValues("message").Add(float64(msgs))
	return len(chunk), msgs, nil
}

// observed maps a Graph message of a thread between pageID and psid.
func observed(pageID, psid string, m graph.Message) schemas.MessageObserved {
	dir := schemas.Inbound
	if m.From.ID == pageID {
		dir = schemas.Outbound
	}
	out := schemas.MessageObserved{PageID: pageID, PSID: psid, MID: m.ID, Direction: dir, Text: m.Text, SentAt: m.CreatedTime}
	for _, a := range m.Attachments {
		out.Attachments = append(out.Attachments, attachment(a))
	}
	return out
}

// record encodes d as an events record keyed by its Page.
func (j *Job) record(d schemas.Data) (*kgo.Record, error) {
	b, env, err := schemas.Encode(schemas.SourceBackfill, j.now(), d)
	if err != nil {
		return nil, fmt.Errorf("encode %s of page %s: %w", d.EventType(), d.EventPageID(), err)
	}
	return &kgo.Record{
		Topic: j.topic,
		Key:   []byte(env.PageID),
		Value: b,
		Headers: []kgo.RecordHeader{
			{Key: "content-type", Value: []byte("application/cloudevents+json")},
			{Key: "ce_type", Value: []byte(env.Type)},
			{Key: "ce_id", Value: []byte(env.ID)},
		},
	}, nil
}
