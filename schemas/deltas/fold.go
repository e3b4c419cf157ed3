package deltas

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"
	"time"

	"github.com/convsync/convsync/schemas"
)

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
