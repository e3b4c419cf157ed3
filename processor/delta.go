package processor

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"
	"time"

	"github.com/convsync/convsync/schemas"
)

// Content sources, in increasing priority: a message's content (direction, text,
// attachments, time) comes from the best source that saw it, so a webhook and a backfill
// of one message agree whatever their order.
const (
	SourceNone    = 0 // only edits or reactions seen so far
	SourceGraph   = 1 // a Graph API backfill (message_observed)
	SourceWebhook = 2 // a webhook (message, echo)
)

// Delta is the compacted effect of a batch of events on one page: the value of one
// record of convsync.deltas.v1, keyed by page id. Every field merges as a join
// (idempotent, commutative, associative), so deltas can be applied in any order, any
// number of times, and give the same rows; the projector's SQL applies the same rules.
type Delta struct {
	PageID string `json:"page_id"`
	// PageName is the name of the page-synced event with the latest NameAt.
	PageName     string    `json:"page_name,omitempty"`
	PageNameAt   time.Time `json:"page_name_at,omitzero"`
	LastSyncedAt time.Time `json:"last_synced_at,omitzero"` // running maximum
	// Conversations and Messages are sorted by key, one entry per key.
	Conversations []ConversationDelta `json:"conversations,omitempty"`
	// Others are events that are not messages (postbacks, referrals, opt-ins, thread
	// changes, unknown kinds): stored, never counted as messages. Sorted by id, unique.
	Others []Other `json:"others,omitempty"`
	// Events is the number of events folded in; ReceivedMS holds each one's arrival time
	// (Unix ms) for the freshness histogram.
	Events     int     `json:"events"`
	ReceivedMS []int64 `json:"received_ms,omitempty"`
}

// ConversationDelta is the effect on one conversation (page, psid).
type ConversationDelta struct {
	PSID              string    `json:"psid"`
	ReadWatermark     time.Time `json:"read_watermark,omitzero"`     // running maximum
	DeliveryWatermark time.Time `json:"delivery_watermark,omitzero"` // running maximum
	// LastAt, LastMID, LastDirection: the latest message by (time, mid).
	LastAt        time.Time `json:"last_at,omitzero"`
	LastMID       string    `json:"last_mid,omitempty"`
	LastDirection string    `json:"last_direction,omitempty"`
	// LastOutboundAt is the latest page-sent message: replying implies the page read.
	LastOutboundAt time.Time `json:"last_outbound_at,omitzero"`
	// Snapshot is the Graph snapshot with the latest updated time: an older snapshot
	// never overwrites a newer one.
	Snapshot *Snapshot `json:"snapshot,omitempty"`
	// ParticipantName is the name of the latest snapshot that had one.
	ParticipantName   string         `json:"participant_name,omitempty"`
	ParticipantNameAt time.Time      `json:"participant_name_at,omitzero"`
	ThreadID          string         `json:"thread_id,omitempty"` // the greatest seen (they agree)
	Messages          []MessageDelta `json:"messages,omitempty"`
}

// Snapshot is a Graph API view of a conversation.
type Snapshot struct {
	UpdatedTime  time.Time `json:"updated_time"`
	MessageCount int       `json:"message_count"`
	UnreadCount  int       `json:"unread_count"`
	Snippet      string    `json:"snippet,omitempty"`
}

// MessageDelta is the state of one message (page, mid) as far as the batch knows it.
type MessageDelta struct {
	MID string `json:"mid"`
	// ContentSource says where Direction, Text (when not edited), Attachments, SentAt,
	// AppID and ReplyToMID came from; SourceNone when the batch saw only edits or
	// reactions.
	ContentSource int             `json:"content_source"`
	Direction     string          `json:"direction,omitempty"`
	SentAt        time.Time       `json:"sent_at,omitzero"`
	Attachments   json.RawMessage `json:"attachments,omitempty"`
	// AttachmentsKey orders two attachment lists of one source (a Graph re-fetch signs
	// its URLs anew): the greater key wins, whatever the order. AttachmentsKeyOf.
	AttachmentsKey string `json:"attachments_key,omitempty"`
	AppID          string `json:"app_id,omitempty"`
	ReplyToMID     string `json:"reply_to_mid,omitempty"`
	// Text is the effective text: the text of the highest edit when EditCount > 0, else
	// the content's.
	Text      string `json:"text,omitempty"`
	EditCount int    `json:"edit_count"`
	// Reactions is the reaction state per reacting user: the latest (time, action,
	// reaction) wins; an unreact stays as a tombstone so a late, older react cannot
	// resurrect it.
	Reactions map[string]Reaction `json:"reactions,omitempty"`
}

// Reaction is one user's reaction state on a message.
type Reaction struct {
	Action   string    `json:"action"`
	Reaction string    `json:"reaction,omitempty"`
	Emoji    string    `json:"emoji,omitempty"`
	At       time.Time `json:"at"`
}

// Other is an event kept as it is: not a message, never counted as one.
type Other struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	PSID       string          `json:"psid,omitempty"`
	OccurredAt time.Time       `json:"occurred_at"`
	Data       json.RawMessage `json:"data"`
}

// Event is one decoded event of the log.
type Event struct {
	Env  schemas.Envelope
	Data schemas.Data
}

// Fold compacts a batch of events into one delta per page, sorted by page id. It is pure:
// no I/O, no clock. Folding is order-insensitive: any permutation of events, with any
// duplicates, gives the same deltas (but for ReceivedMS, kept in input order).
func Fold(events []Event) []Delta {
	pages := map[string]*pageAcc{}
	var order []string
	for _, e := range events {
		page := e.Data.EventPageID()
		p := pages[page]
		if p == nil {
			p = &pageAcc{d: Delta{PageID: page}, convs: map[string]*convAcc{}, others: map[string]Other{}}
			pages[page] = p
			order = append(order, page)
		}
		p.add(e)
	}
	sort.Strings(order)
	out := make([]Delta, 0, len(order))
	for _, page := range order {
		out = append(out, pages[page].finish())
	}
	return out
}

type pageAcc struct {
	d      Delta
	convs  map[string]*convAcc
	others map[string]Other
}

type convAcc struct {
	c    ConversationDelta
	msgs map[string]*MessageDelta
}

func (p *pageAcc) conv(psid string) *convAcc {
	c := p.convs[psid]
	if c == nil {
		c = &convAcc{c: ConversationDelta{PSID: psid}, msgs: map[string]*MessageDelta{}}
		p.convs[psid] = c
	}
	return c
}

func (c *convAcc) msg(mid string) *MessageDelta {
	m := c.msgs[mid]
	if m == nil {
		m = &MessageDelta{MID: mid}
		c.msgs[mid] = m
	}
	return m
}

func (p *pageAcc) add(e Event) {
	p.d.Events++
	if !e.Env.ReceivedAt.IsZero() {
		p.d.ReceivedMS = append(p.d.ReceivedMS, e.Env.ReceivedAt.UnixMilli())
	}
	switch d := e.Data.(type) {
	case schemas.Message:
		p.content(schemas.Message(d), SourceWebhook)
	case schemas.Echo:
		p.content(schemas.Message(d), SourceWebhook)
	case schemas.MessageObserved:
		p.content(schemas.Message(d), SourceGraph)
	case schemas.Delivery:
		c := p.conv(d.PSID)
		c.c.DeliveryWatermark = maxTime(c.c.DeliveryWatermark, d.Watermark)
	case schemas.Read:
		c := p.conv(d.PSID)
		c.c.ReadWatermark = maxTime(c.c.ReadWatermark, d.Watermark)
	case schemas.Reaction:
		m := p.conv(d.PSID).msg(d.MID)
		MergeReactions(&m.Reactions, map[string]Reaction{d.PSID: {Action: string(d.Action), Reaction: d.Reaction, Emoji: d.Emoji, At: d.ReactedAt.UTC()}})
	case schemas.Edit:
		m := p.conv(d.PSID).msg(d.MID)
		MergeMessage(m, MessageDelta{MID: d.MID, Text: d.Text, EditCount: d.NumEdit})
	case schemas.ConversationObserved:
		c := p.conv(d.PSID)
		MergeConversation(&c.c, ConversationDelta{
			PSID:            d.PSID,
			ThreadID:        d.ThreadID,
			Snapshot:        &Snapshot{UpdatedTime: d.UpdatedTime.UTC(), MessageCount: d.MessageCount, UnreadCount: d.UnreadCount, Snippet: d.Snippet},
			ParticipantName: d.ParticipantName, ParticipantNameAt: nameAt(d.ParticipantName, d.UpdatedTime),
		})
	case schemas.PageSynced:
		p.d.LastSyncedAt = maxTime(p.d.LastSyncedAt, d.SyncedAt.UTC())
		if d.Name != "" && later(d.SyncedAt.UTC(), d.Name, p.d.PageNameAt, p.d.PageName) {
			p.d.PageName, p.d.PageNameAt = d.Name, d.SyncedAt.UTC()
		}
	default: // postback, referral, optin, conversation_changed, unknown
		o := Other{ID: e.Env.ID, Type: e.Env.Type, OccurredAt: e.Env.Time.UTC(), Data: e.Env.Data}
		if psid := psidOf(e.Data); psid != "" {
			o.PSID = psid
			p.conv(psid) // the conversation exists once its user did anything
		}
		p.others[o.ID] = o
	}
}

func nameAt(name string, at time.Time) time.Time {
	if name == "" {
		return time.Time{}
	}
	return at.UTC()
}

func psidOf(d schemas.Data) string {
	switch d := d.(type) {
	case schemas.Postback:
		return d.PSID
	case schemas.Referral:
		return d.PSID
	case schemas.Optin:
		return d.PSID
	}
	return ""
}

// content folds a message's content (inbound, echo or observed).
func (p *pageAcc) content(m schemas.Message, source int) {
	c := p.conv(m.PSID)
	var atts json.RawMessage
	if len(m.Attachments) > 0 {
		atts, _ = json.Marshal(m.Attachments) // plain structs: cannot fail
	}
	MergeMessage(c.msg(m.MID), MessageDelta{
		MID: m.MID, ContentSource: source, Direction: string(m.Direction), SentAt: m.SentAt.UTC(),
		Attachments: atts, AttachmentsKey: AttachmentsKeyOf(atts), AppID: m.AppID, ReplyToMID: m.ReplyToMID, Text: m.Text,
	})
	MergeConversation(&c.c, ConversationDelta{PSID: m.PSID, LastAt: m.SentAt.UTC(), LastMID: m.MID,
		LastDirection: string(m.Direction), LastOutboundAt: outboundAt(m)})
}

// AttachmentsKeyOf is the tie-break key of an attachment list: the hex SHA-256 of its
// JSON as the fold writes it; empty for none.
func AttachmentsKeyOf(atts json.RawMessage) string {
	if len(atts) == 0 {
		return ""
	}
	sum := sha256.Sum256(atts)
	return hex.EncodeToString(sum[:])
}

func outboundAt(m schemas.Message) time.Time {
	if m.Direction == schemas.Outbound {
		return m.SentAt.UTC()
	}
	return time.Time{}
}

func (p *pageAcc) finish() Delta {
	d := p.d
	psids := make([]string, 0, len(p.convs))
	for k := range p.convs {
		psids = append(psids, k)
	}
	sort.Strings(psids)
	for _, k := range psids {
		c := p.convs[k]
		mids := make([]string, 0, len(c.msgs))
		for mid := range c.msgs {
			mids = append(mids, mid)
		}
		sort.Strings(mids)
		for _, mid := range mids {
			c.c.Messages = append(c.c.Messages, *c.msgs[mid])
		}
		d.Conversations = append(d.Conversations, c.c)
	}
	ids := make([]string, 0, len(p.others))
	for id := range p.others {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		d.Others = append(d.Others, p.others[id])
	}
	return d
}

// MergeMessage merges b into a: the rules of the messages table.
//   - content (direction, sent_at, attachments, app_id, reply_to_mid) from the higher
//     ContentSource; on a tie the existing value stays unless it is empty;
//   - text: with edits, the text of the highest edit_count; without, the content's
//     (higher source wins; a tie keeps the greater text, so the order never matters);
//   - reactions per user: MergeReactions.
func MergeMessage(a *MessageDelta, b MessageDelta) {
	switch {
	case b.EditCount > a.EditCount:
		a.Text = b.Text
	case b.EditCount < a.EditCount:
	case a.EditCount > 0:
		a.Text = maxString(a.Text, b.Text)
	case b.ContentSource > a.ContentSource:
		a.Text = b.Text
	case b.ContentSource == a.ContentSource:
		a.Text = maxString(a.Text, b.Text)
	}
	a.EditCount = max(a.EditCount, b.EditCount)
	switch {
	case b.ContentSource > a.ContentSource:
		a.ContentSource, a.Direction, a.SentAt, a.Attachments, a.AttachmentsKey, a.AppID, a.ReplyToMID =
			b.ContentSource, b.Direction, b.SentAt, b.Attachments, b.AttachmentsKey, b.AppID, b.ReplyToMID
	case b.ContentSource == a.ContentSource && b.ContentSource > SourceNone:
		a.Direction = maxString(a.Direction, b.Direction)
		a.SentAt = maxTime(a.SentAt, b.SentAt)
		if b.AttachmentsKey > a.AttachmentsKey {
			a.Attachments, a.AttachmentsKey = b.Attachments, b.AttachmentsKey
		}
		a.AppID = maxString(a.AppID, b.AppID)
		a.ReplyToMID = maxString(a.ReplyToMID, b.ReplyToMID)
	}
	MergeReactions(&a.Reactions, b.Reactions)
}

// MergeReactions merges b into *a per user: the later reaction wins; at the same time,
// the greater (action, reaction) wins.
func MergeReactions(a *map[string]Reaction, b map[string]Reaction) {
	for user, r := range b {
		if *a == nil {
			*a = map[string]Reaction{}
		}
		cur, ok := (*a)[user]
		if !ok || reactionLess(cur, r) {
			(*a)[user] = r
		}
	}
}

func reactionLess(x, y Reaction) bool {
	if !x.At.Equal(y.At) {
		return x.At.Before(y.At)
	}
	if x.Action != y.Action {
		return x.Action < y.Action
	}
	return x.Reaction < y.Reaction
}

// MergeConversation merges b's summary fields into a (not its messages): watermarks and
// last outbound time are running maxima, the latest message is the greatest (time, mid),
// the snapshot is the one with the latest updated time (then the greater counts).
func MergeConversation(a *ConversationDelta, b ConversationDelta) {
	a.ReadWatermark = maxTime(a.ReadWatermark, b.ReadWatermark)
	a.DeliveryWatermark = maxTime(a.DeliveryWatermark, b.DeliveryWatermark)
	a.LastOutboundAt = maxTime(a.LastOutboundAt, b.LastOutboundAt)
	if b.LastMID != "" && later(b.LastAt, b.LastMID, a.LastAt, a.LastMID) {
		a.LastAt, a.LastMID, a.LastDirection = b.LastAt, b.LastMID, b.LastDirection
	}
	if b.Snapshot != nil && (a.Snapshot == nil || snapshotLess(*a.Snapshot, *b.Snapshot)) {
		s := *b.Snapshot
		a.Snapshot = &s
	}
	if b.ParticipantName != "" && later(b.ParticipantNameAt, b.ParticipantName, a.ParticipantNameAt, a.ParticipantName) {
		a.ParticipantName, a.ParticipantNameAt = b.ParticipantName, b.ParticipantNameAt
	}
	a.ThreadID = maxString(a.ThreadID, b.ThreadID)
}

func snapshotLess(x, y Snapshot) bool {
	switch {
	case !x.UpdatedTime.Equal(y.UpdatedTime):
		return x.UpdatedTime.Before(y.UpdatedTime)
	case x.MessageCount != y.MessageCount:
		return x.MessageCount < y.MessageCount
	case x.UnreadCount != y.UnreadCount:
		return x.UnreadCount < y.UnreadCount
	}
	return x.Snippet < y.Snippet
}

// later reports whether (t1, s1) > (t2, s2).
func later(t1 time.Time, s1 string, t2 time.Time, s2 string) bool {
	if !t1.Equal(t2) {
		return t1.After(t2)
	}
	return s1 > s2
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func maxString(a, b string) string {
	if b > a {
		return b
	}
	return a
}
