// model.go is the test oracle of the pipeline: it generates random conversation
// histories (inbound messages, echoes, deliveries, reads, reactions, edits, Graph
// snapshots and observed messages overlapping webhooks, postbacks, page syncs), delivers
// them with duplicates and reordering, and computes the read model they must produce with
// a plain fold written independently of the processor and projector. Model-based tests
// compare the rows in Postgres with Reference.

package pipelinetest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/convsync/convsync/projector"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/schemas/deltas"
)

// HistoryConfig sizes a history.
type HistoryConfig struct {
	Pages, Users, Facts int
	DuplicateRate       float64 // share of events delivered twice or more
}

// DefaultHistoryConfig is small enough for hundreds of seeds in a test run.
func DefaultHistoryConfig() HistoryConfig {
	return HistoryConfig{Pages: 2, Users: 3, Facts: 40, DuplicateRate: 0.2}
}

// Event is one delivered event with its envelope.
type Event struct {
	Env  schemas.Envelope
	Data schemas.Data
	Raw  []byte // the encoded record value
}

type msgFact struct {
	page, psid, mid string
	dir             schemas.Direction
	at              time.Time
	text            string
}

// lastOf is the index of psid's latest message fact, or -1.
func lastOf(msgs []msgFact, psid string) int {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].psid == psid {
			return i
		}
	}
	return -1
}

// History generates the facts of a seed and returns them as events in delivery order:
// shuffled, with duplicates. The same seed gives the same events.
func History(seed uint64, cfg HistoryConfig) ([]Event, error) {
	rng := rand.New(rand.NewPCG(seed, seed*7919+1))
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := 0
	tick := func() time.Time { clock += 1 + rng.IntN(5); return base.Add(time.Duration(clock) * time.Second) }
	page := func() string { return fmt.Sprintf("s%d-p%d", seed, rng.IntN(cfg.Pages)) }
	var data []schemas.Data
	var msgs []msgFact
	edits := map[string]int{}
	texts := []string{"hi", "is it in stock?", "yes", "thanks", "bye", ""}

	for range cfg.Facts {
		p := page()
		psid := fmt.Sprintf("%s-u%d", p, rng.IntN(cfg.Users))
		switch r := rng.IntN(100); {
		case r < 30 || len(msgs) == 0: // a message, inbound or echo, maybe also seen by a backfill
			dir := schemas.Inbound
			if rng.IntN(3) == 0 {
				dir = schemas.Outbound
			}
			// Webhook times have milliseconds: a message lands anywhere in its second.
			at := tick().Add(time.Duration(rng.IntN(1000)) * time.Millisecond)
			f := msgFact{page: p, psid: psid, mid: fmt.Sprintf("m_%d_%d", seed, len(msgs)), dir: dir, at: at, text: texts[rng.IntN(len(texts))]}
			msgs = append(msgs, f)
			m := schemas.Message{PageID: p, PSID: psid, MID: f.mid, Direction: dir, Text: f.text, SentAt: f.at}
			if f.text == "" {
				m.Attachments = []schemas.Attachment{{Type: "image", URL: "https://cdn.example/" + f.mid + ".jpg"}}
			}
			webhook, graph := true, rng.IntN(4) == 0
			if rng.IntN(6) == 0 { // only a backfill saw it (a webhook was missed)
				webhook, graph = false, true
			}
			if webhook {
				if dir == schemas.Outbound {
					data = append(data, schemas.Echo(m))
				} else {
					data = append(data, m)
				}
			}
			if graph {
				data = append(data, schemas.MessageObserved(m))
				if len(m.Attachments) > 0 && rng.IntN(2) == 0 {
					// A second backfill re-signs the attachment URLs: same message, same
					// source, other attachments.
					again := m
					again.Attachments = []schemas.Attachment{{Type: "image", URL: m.Attachments[0].URL + "?sig=2"}}
					data = append(data, schemas.MessageObserved(again))
				}
			}
		case r < 42:
			data = append(data, schemas.Delivery{PageID: p, PSID: psid, Watermark: tick()})
		case r < 54:
			data = append(data, schemas.Read{PageID: p, PSID: psid, Watermark: tick()})
		case r < 66: // a reaction by the conversation's user on one of its messages
			f := msgs[rng.IntN(len(msgs))]
			a := schemas.Reaction{PageID: f.page, PSID: f.psid, MID: f.mid, Action: schemas.React,
				Reaction: []string{"love", "like", "wow"}[rng.IntN(3)], Emoji: "*", ReactedAt: tick()}
			if rng.IntN(3) == 0 {
				a.Action, a.Reaction, a.Emoji = schemas.Unreact, "", ""
			}
			data = append(data, a)
		case r < 74: // an edit, numbered per message
			f := msgs[rng.IntN(len(msgs))]
			edits[f.mid]++
			data = append(data, schemas.Edit{PageID: f.page, PSID: f.psid, MID: f.mid,
				Text: fmt.Sprintf("%s (edit %d)", f.text, edits[f.mid]), NumEdit: edits[f.mid], EditedAt: tick()})
		case r < 86: // a Graph snapshot of the conversation
			// Graph's updated_time has whole seconds; half the snapshots are updated in the
			// second of the conversation's latest message, as a backfill right after it is.
			updated := tick()
			if i := lastOf(msgs, psid); i >= 0 && rng.IntN(2) == 0 {
				updated = msgs[i].at.Truncate(time.Second)
			}
			data = append(data, schemas.ConversationObserved{PageID: p, PSID: psid, ThreadID: "t_" + psid,
				ParticipantName: []string{"", "Ada", "Ada K."}[rng.IntN(3)], Snippet: texts[rng.IntN(len(texts))],
				UpdatedTime: updated, MessageCount: rng.IntN(30), UnreadCount: rng.IntN(3), ObservedAt: base})
		case r < 92:
			data = append(data, schemas.PageSynced{PageID: p, Name: []string{"", "Blue Shop", "Blue Shop GmbH"}[rng.IntN(3)], SyncedAt: tick()})
		default:
			data = append(data, schemas.Postback{PageID: p, PSID: psid, MID: fmt.Sprintf("m_pb_%d_%d", seed, clock), Title: "Start", OccurredAt: tick()})
		}
	}

	// Deliver: every event once, some several times, in random order.
	var out []Event
	received := base.Add(time.Hour)
	for _, d := range data {
		n := 1
		for rng.Float64() < cfg.DuplicateRate && n < 4 {
			n++
		}
		for range n {
			raw, env, err := schemas.Encode(schemas.SourceWebhook, received, d)
			if err != nil {
				return nil, fmt.Errorf("encode %T: %w", d, err)
			}
			out = append(out, Event{Env: env, Data: d, Raw: raw})
		}
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out, nil
}

// Reference computes the read model a set of events must produce, plainly: each column
// from its definition over the whole set, with no incremental merging.
func Reference(events []Event) projector.Rows {
	type msg struct {
		psid                 string
		source               int
		content              *schemas.Message
		editN                int
		editText             string
		reactions            map[string]projector.Reaction
		hasEdits, hasContent bool
	}
	type conv struct {
		read, delivery, lastOutbound time.Time
		snap                         *schemas.ConversationObserved
		name                         string
		nameAt                       time.Time
		thread                       string
	}
	pages := map[string]*projector.PageRow{}
	pageNameAt := map[string]time.Time{}
	msgs := map[[2]string]*msg{}
	convs := map[[2]string]*conv{}
	others := map[[2]string]string{}

	seen := map[string]bool{}
	getConv := func(p, u string) *conv {
		c := convs[[2]string{p, u}]
		if c == nil {
			c = &conv{}
			convs[[2]string{p, u}] = c
		}
		return c
	}
	getMsg := func(p, mid, psid string) *msg {
		m := msgs[[2]string{p, mid}]
		if m == nil {
			m = &msg{psid: psid}
			msgs[[2]string{p, mid}] = m
		}
		getConv(p, psid)
		return m
	}
	for _, e := range events {
		// A redelivery is the same record; two observations of one fact may differ (a
		// re-signed URL) and share the event id, so only identical records are duplicates.
		if seen[string(e.Raw)] {
			continue
		}
		seen[string(e.Raw)] = true
		p := e.Data.EventPageID()
		if pages[p] == nil {
			pages[p] = &projector.PageRow{PageID: p}
		}
		content := func(m schemas.Message, source int) {
			x := getMsg(p, m.MID, m.PSID)
			if source > x.source || source == x.source && attKey(m) > attKey(*x.content) {
				x.source, x.content = source, &m
			}
		}
		switch d := e.Data.(type) {
		case schemas.Message:
			m := schemas.Message(d)
			m.Direction = schemas.Inbound
			content(m, 2)
		case schemas.Echo:
			m := schemas.Message(d)
			m.Direction = schemas.Outbound
			content(m, 2)
		case schemas.MessageObserved:
			content(schemas.Message(d), 1)
		case schemas.Delivery:
			c := getConv(p, d.PSID)
			if d.Watermark.After(c.delivery) {
				c.delivery = d.Watermark
			}
		case schemas.Read:
			c := getConv(p, d.PSID)
			if d.Watermark.After(c.read) {
				c.read = d.Watermark
			}
		case schemas.Reaction:
			x := getMsg(p, d.MID, d.PSID)
			r := projector.Reaction{Action: string(d.Action), Reaction: d.Reaction, Emoji: d.Emoji, At: d.ReactedAt}
			if x.reactions == nil {
				x.reactions = map[string]projector.Reaction{}
			}
			cur, ok := x.reactions[d.PSID]
			if !ok || cur.At.Before(r.At) || cur.At.Equal(r.At) && (cur.Action < r.Action || cur.Action == r.Action && cur.Reaction < r.Reaction) {
				x.reactions[d.PSID] = r
			}
		case schemas.Edit:
			x := getMsg(p, d.MID, d.PSID)
			if d.NumEdit > x.editN || d.NumEdit == x.editN && d.Text > x.editText {
				x.editN, x.editText = d.NumEdit, d.Text
			}
		case schemas.ConversationObserved:
			c := getConv(p, d.PSID)
			if c.snap == nil || snapLess(*c.snap, d) {
				s := d
				c.snap = &s
			}
			if d.ParticipantName != "" && (d.UpdatedTime.After(c.nameAt) || d.UpdatedTime.Equal(c.nameAt) && d.ParticipantName > c.name) {
				c.name, c.nameAt = d.ParticipantName, d.UpdatedTime
			}
			if d.ThreadID > c.thread {
				c.thread = d.ThreadID
			}
		case schemas.PageSynced:
			pr := pages[p]
			if pr.LastSyncedAt == nil || d.SyncedAt.After(*pr.LastSyncedAt) {
				t := d.SyncedAt
				pr.LastSyncedAt = &t
			}
			if d.Name != "" && (pr.Name == nil || d.SyncedAt.After(pageNameAt[p]) || d.SyncedAt.Equal(pageNameAt[p]) && d.Name > *pr.Name) {
				n := d.Name
				pr.Name, pageNameAt[p] = &n, d.SyncedAt
			}
		case schemas.Postback:
			getConv(p, d.PSID)
			others[[2]string{p, e.Env.ID}] = e.Env.Type
		default:
			others[[2]string{p, e.Env.ID}] = e.Env.Type
		}
	}

	var out projector.Rows
	for _, k := range sortedKeys(pages) {
		out.Pages = append(out.Pages, *pages[k])
	}
	// messages
	type lastMsg struct {
		at  time.Time
		mid string
	}
	perConv := map[[2]string][]string{} // mids with content
	mkeys := make([][2]string, 0, len(msgs))
	for k := range msgs {
		mkeys = append(mkeys, k)
	}
	sort.Slice(mkeys, func(i, j int) bool { return less2(mkeys[i], mkeys[j]) })
	byMID := map[[2]string]projector.MessageRow{}
	for _, k := range mkeys {
		x := msgs[k]
		row := projector.MessageRow{PageID: k[0], MID: k[1], PSID: x.psid, EditCount: x.editN, Attachments: json.RawMessage("[]")}
		if len(x.reactions) > 0 {
			row.Reactions = x.reactions
		}
		if c := x.content; c != nil {
			dir, at := string(c.Direction), c.SentAt
			row.Direction, row.SentAt = &dir, &at
			if c.Text != "" {
				t := c.Text
				row.Text = &t
			}
			if len(c.Attachments) > 0 {
				row.Attachments, _ = json.Marshal(c.Attachments)
			}
			perConv[[2]string{k[0], x.psid}] = append(perConv[[2]string{k[0], x.psid}], k[1])
			if c.Direction == schemas.Outbound {
				cv := getConv(k[0], x.psid)
				if at.After(cv.lastOutbound) {
					cv.lastOutbound = at
				}
			}
		}
		if x.editN > 0 {
			t := x.editText
			row.Text = &t
		}
		out.Messages = append(out.Messages, row)
		byMID[k] = row
	}
	ckeys := make([][2]string, 0, len(convs))
	for k := range convs {
		ckeys = append(ckeys, k)
	}
	sort.Slice(ckeys, func(i, j int) bool { return less2(ckeys[i], ckeys[j]) })
	for _, k := range ckeys {
		c := convs[k]
		row := projector.ConversationRow{PageID: k[0], PSID: k[1]}
		if !c.read.IsZero() {
			t := c.read
			row.ReadWatermark = &t
		}
		if !c.delivery.IsZero() {
			t := c.delivery
			row.DeliveryWatermark = &t
		}
		if c.thread != "" {
			t := c.thread
			row.ThreadID = &t
		}
		if c.name != "" {
			n := c.name
			row.ParticipantName = &n
		}
		var last *lastMsg
		for _, mid := range perConv[k] {
			m := byMID[[2]string{k[0], mid}]
			if last == nil || m.SentAt.After(last.at) || m.SentAt.Equal(last.at) && mid > last.mid {
				last = &lastMsg{*m.SentAt, mid}
			}
		}
		if last != nil {
			m := byMID[[2]string{k[0], last.mid}]
			at, mid := last.at, last.mid
			row.LastMessageAt, row.LastMessageMID, row.LastMessageDirection = &at, &mid, m.Direction
			row.Snippet = m.Text
			if row.Snippet == nil {
				var atts []schemas.Attachment
				_ = json.Unmarshal(m.Attachments, &atts)
				if len(atts) > 0 {
					s := "[" + atts[0].Type + "]"
					row.Snippet = &s
				}
			}
		}
		row.MessageCount = len(perConv[k])
		since := c.lastOutbound
		if s := c.snap; s != nil {
			row.MessageCount = max(row.MessageCount, s.MessageCount)
			if last == nil || s.UpdatedTime.After(last.at) {
				row.Snippet = nil
				if s.Snippet != "" {
					sn := s.Snippet
					row.Snippet = &sn
				}
			}
			// Graph's updated_time has whole seconds: the snapshot counts every message
			// sent before the end of its second, and is newer than a reply within it.
			end := s.UpdatedTime.Add(time.Second)
			if c.lastOutbound.Before(end) {
				row.UnreadCount = s.UnreadCount
			}
			if end.Add(-time.Microsecond).After(since) {
				since = end.Add(-time.Microsecond)
			}
		}
		for _, mid := range perConv[k] {
			m := byMID[[2]string{k[0], mid}]
			if *m.Direction == string(schemas.Inbound) && m.SentAt.After(since) {
				row.UnreadCount++
			}
		}
		out.Conversations = append(out.Conversations, row)
	}
	okeys := make([][2]string, 0, len(others))
	for k := range others {
		okeys = append(okeys, k)
	}
	sort.Slice(okeys, func(i, j int) bool { return less2(okeys[i], okeys[j]) })
	for _, k := range okeys {
		out.Events = append(out.Events, projector.EventRow{PageID: k[0], EventID: k[1], Type: others[k]})
	}
	return out
}

// attKey is the tie-break of two attachment lists of one source: the greater hash of
// their JSON wins (deltas.AttachmentsKeyOf).
func attKey(m schemas.Message) string {
	if len(m.Attachments) == 0 {
		return ""
	}
	b, _ := json.Marshal(m.Attachments)
	return deltas.AttachmentsKeyOf(b)
}

func snapLess(a, b schemas.ConversationObserved) bool {
	switch {
	case !a.UpdatedTime.Equal(b.UpdatedTime):
		return a.UpdatedTime.Before(b.UpdatedTime)
	case a.MessageCount != b.MessageCount:
		return a.MessageCount < b.MessageCount
	case a.UnreadCount != b.UnreadCount:
		return a.UnreadCount < b.UnreadCount
	}
	return a.Snippet < b.Snippet
}

func less2(a, b [2]string) bool { return a[0] < b[0] || a[0] == b[0] && a[1] < b[1] }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Messages returns the event of one inbound message, encoded as ingest would: for tests
// that add a known message to a read model.
func Messages(page, psid, mid, text string, at time.Time) ([]Event, error) {
	d := schemas.Message{PageID: page, PSID: psid, MID: mid, Text: text, SentAt: at}
	raw, env, err := schemas.Encode(schemas.SourceWebhook, at, d)
	if err != nil {
		return nil, err
	}
	return []Event{{Env: env, Data: d, Raw: raw}}, nil
}
