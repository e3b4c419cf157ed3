package schemas

import (
	"encoding/json"
	"slices"
	"time"
)

// Data is the payload of one event: one struct per event type. The set is closed (the
// unexported methods), so a type switch over the types below is exhaustive.
type Data interface {
	// EventType is the Type* constant the data is sent as.
	EventType() string
	// EventPageID is the Facebook Page the fact belongs to: the envelope's pageid and
	// the Kafka record key.
	EventPageID() string
	// EventSubject is the envelope's subject: "pages/{page_id}/users/{psid}", or
	// "pages/{page_id}" when no user is known.
	EventSubject() string
	// EventTime is when the fact happened (Meta's timestamp): the envelope's time.
	EventTime() time.Time

	// idKey is the text hashed into the deterministic id (see ids.go).
	idKey() string
	// normalize returns the data as it goes on the wire: UTC times, normalised mids,
	// the direction its type implies, sorted delivery mids.
	normalize() Data
}

// Direction tells who sent a message, seen from the Page.
type Direction string

// Directions.
const (
	Inbound  Direction = "inbound"  // user -> page
	Outbound Direction = "outbound" // page -> user
)

// ReactionAction is the action of a reaction event.
type ReactionAction string

// Reaction actions.
const (
	React   ReactionAction = "react"
	Unreact ReactionAction = "unreact"
)

// Channel is where in a webhook an [Unknown] event was found.
type Channel string

// Channels.
const (
	ChannelMessaging Channel = "messaging" // entry.messaging[]
	ChannelStandby   Channel = "standby"   // entry.standby[]
	ChannelChanges   Channel = "changes"   // entry.changes[]
	ChannelEntry     Channel = "entry"     // the entry itself (no known list in it)
)

// Attachment is one attachment of a message.
type Attachment struct {
	Type      string `json:"type"`
	URL       string `json:"url,omitempty"`
	Title     string `json:"title,omitempty"`
	StickerID string `json:"sticker_id,omitempty"`
	// Payload is the payload object exactly as Meta sent it (it may be null).
	Payload json.RawMessage `json:"payload,omitempty"`
}

// Message is a message sent by a user to the Page (TypeMessage). [Echo] and
// [MessageObserved] have the same fields; convert between them with a conversion,
// e.g. Message(echo).
type Message struct {
	PageID string `json:"page_id"`
	// PSID is the user's page-scoped id: the sender of an inbound message, the
	// recipient of an outbound one.
	PSID string `json:"psid"`
	// MID is normalised (NormalizeMID); RawMID keeps the original when it differed.
	MID    string `json:"mid"`
	RawMID string `json:"raw_mid,omitempty"`
	// Direction is implied by the type for Message and Echo and set by New.
	Direction         Direction    `json:"direction"`
	Text              string       `json:"text,omitempty"`
	Attachments       []Attachment `json:"attachments,omitempty"`
	QuickReplyPayload string       `json:"quick_reply_payload,omitempty"`
	ReplyToMID        string       `json:"reply_to_mid,omitempty"`
	// Referral is the referral object (ads, Shops) as Meta sent it.
	Referral json.RawMessage `json:"referral,omitempty"`
	// AppID is the app that sent an echo, as a string even when Meta sent a number.
	AppID    string `json:"app_id,omitempty"`
	Metadata string `json:"metadata,omitempty"`
	// Standby is set when the event came in entry.standby[] (another app owns the thread).
	Standby bool      `json:"standby,omitempty"`
	SentAt  time.Time `json:"sent_at"`
}

// Echo is a message the Page sent, reported back by the message_echoes webhook
// (TypeEcho). Its direction is always outbound.
type Echo Message

// MessageObserved is a message read from the Graph API by a backfill
// (TypeMessageObserved). Direction is outbound when Graph's from.id is the Page.
type MessageObserved Message

// Delivery says that every Page-sent message up to Watermark reached the user.
type Delivery struct {
	PageID string `json:"page_id"`
	PSID   string `json:"psid"`
	// MIDs are normalised and sorted; Meta may leave them out.
	MIDs      []string  `json:"mids,omitempty"`
	Watermark time.Time `json:"watermark"`
}

// Read says that the user read every Page-sent message up to Watermark.
type Read struct {
	PageID    string    `json:"page_id"`
	PSID      string    `json:"psid"`
	Watermark time.Time `json:"watermark"`
}

// Reaction is a user reacting to a message, or taking a reaction back.
type Reaction struct {
	PageID    string         `json:"page_id"`
	PSID      string         `json:"psid"`
	MID       string         `json:"mid"`
	Action    ReactionAction `json:"action"`
	Reaction  string         `json:"reaction,omitempty"`
	Emoji     string         `json:"emoji,omitempty"`
	ReactedAt time.Time      `json:"reacted_at"`
	// Fingerprint stands in for the time in the event id when the source gave no time of
	// its own (the time is then the arrival, which differs at each redelivery): webhook
	// ingest sets it to the hex SHA-256 of the compacted item. Not part of the record.
	Fingerprint string `json:"-"`
}

// Edit replaces the text of a message; the highest NumEdit wins.
type Edit struct {
	PageID   string    `json:"page_id"`
	PSID     string    `json:"psid"`
	MID      string    `json:"mid"`
	Text     string    `json:"text"`
	NumEdit  int       `json:"num_edit"`
	EditedAt time.Time `json:"edited_at"`
}

// Postback is a tap on a button.
type Postback struct {
	PageID     string          `json:"page_id"`
	PSID       string          `json:"psid"`
	MID        string          `json:"mid,omitempty"`
	Title      string          `json:"title,omitempty"`
	Payload    string          `json:"payload,omitempty"`
	Referral   json.RawMessage `json:"referral,omitempty"`
	OccurredAt time.Time       `json:"occurred_at"`
	// Fingerprint stands in for the time in the event id when the source gave no time of
	// its own (the time is then the arrival, which differs at each redelivery): webhook
	// ingest sets it to the hex SHA-256 of the compacted item. Not part of the record.
	Fingerprint string `json:"-"`
}

// Referral is a user entering an existing thread through a short link or an ad.
type Referral struct {
	PageID     string `json:"page_id"`
	PSID       string `json:"psid"`
	Source     string `json:"source,omitempty"`
	Type       string `json:"type,omitempty"`
	Ref        string `json:"ref,omitempty"`
	AdID       string `json:"ad_id,omitempty"`
	RefererURI string `json:"referer_uri,omitempty"`
	// Raw is the whole referral object as Meta sent it.
	Raw        json.RawMessage `json:"raw"`
	OccurredAt time.Time       `json:"occurred_at"`
	// Fingerprint stands in for the time in the event id when the source gave no time of
	// its own (the time is then the arrival, which differs at each redelivery): webhook
	// ingest sets it to the hex SHA-256 of the compacted item. Not part of the record.
	Fingerprint string `json:"-"`
}

// Optin is a marketing-message or plugin opt-in. One of PSID and UserRef is set.
type Optin struct {
	PageID  string `json:"page_id"`
	PSID    string `json:"psid,omitempty"`
	UserRef string `json:"user_ref,omitempty"`
	Type    string `json:"type,omitempty"`
	Payload string `json:"payload,omitempty"`
	Ref     string `json:"ref,omitempty"`
	// Raw is the whole optin object as Meta sent it.
	Raw        json.RawMessage `json:"raw"`
	OccurredAt time.Time       `json:"occurred_at"`
	// Fingerprint stands in for the time in the event id when the source gave no time of
	// its own (the time is then the arrival, which differs at each redelivery): webhook
	// ingest sets it to the hex SHA-256 of the compacted item. Not part of the record.
	Fingerprint string `json:"-"`
}

// ConversationChanged is a changes[] notification with field "conversations": the
// thread changed and should be fetched again. It carries no content.
type ConversationChanged struct {
	PageID    string    `json:"page_id"`
	ThreadID  string    `json:"thread_id"`
	ThreadKey string    `json:"thread_key,omitempty"`
	ChangedAt time.Time `json:"changed_at"`
}

// Unknown keeps a webhook event of a kind convsync does not know, raw, so it can be
// replayed once it does.
type Unknown struct {
	PageID  string  `json:"page_id"`
	Channel Channel `json:"channel"`
	// Kind is the key that was not recognised, e.g. "policy_enforcement".
	Kind string `json:"kind,omitempty"`
	// Reason says why an event of a known kind was kept as unknown (a message without
	// mid, say); empty for kinds convsync does not know.
	Reason string          `json:"reason,omitempty"`
	Raw    json.RawMessage `json:"raw"`
	// OccurredAt is the event's timestamp, or entry.time when it has none.
	OccurredAt time.Time `json:"occurred_at"`
}

// ConversationObserved is a snapshot of a thread read from the Graph API.
type ConversationObserved struct {
	PageID          string    `json:"page_id"`
	PSID            string    `json:"psid"`
	ThreadID        string    `json:"thread_id"`
	ParticipantName string    `json:"participant_name,omitempty"`
	Snippet         string    `json:"snippet,omitempty"`
	UpdatedTime     time.Time `json:"updated_time"`
	MessageCount    int       `json:"message_count"`
	UnreadCount     int       `json:"unread_count"`
	ObservedAt      time.Time `json:"observed_at"`
}

// PageSynced says a backfill finished a page: it moves facebook_pages.last_synced_at.
type PageSynced struct {
	PageID   string    `json:"page_id"`
	Name     string    `json:"name,omitempty"`
	SyncedAt time.Time `json:"synced_at"`
}

func subject(page, psid string) string {
	if psid == "" {
		return "pages/" + page
	}
	return "pages/" + page + "/users/" + psid
}

// EventType implements Data.
func (Message) EventType() string { return TypeMessage }

// EventPageID implements Data.
func (m Message) EventPageID() string { return m.PageID }

// EventSubject implements Data.
func (m Message) EventSubject() string { return subject(m.PageID, m.PSID) }

// EventTime implements Data.
func (m Message) EventTime() time.Time { return m.SentAt }

func (m Message) normalize() Data { return m.normalized(Inbound) }

// normalized is shared by Message, Echo and MessageObserved; an empty dir keeps the
// direction the caller set.
func (m Message) normalized(dir Direction) Message {
	if mid := NormalizeMID(m.MID); mid != m.MID {
		if m.RawMID == "" {
			m.RawMID = m.MID
		}
		m.MID = mid
	}
	if m.RawMID == m.MID {
		m.RawMID = ""
	}
	m.ReplyToMID = NormalizeMID(m.ReplyToMID)
	if dir != "" {
		m.Direction = dir
	}
	m.SentAt = m.SentAt.UTC()
	return m
}

// EventType implements Data.
func (Echo) EventType() string { return TypeEcho }

// EventPageID implements Data.
func (e Echo) EventPageID() string { return e.PageID }

// EventSubject implements Data.
func (e Echo) EventSubject() string { return subject(e.PageID, e.PSID) }

// EventTime implements Data.
func (e Echo) EventTime() time.Time { return e.SentAt }

func (e Echo) normalize() Data { return Echo(Message(e).normalized(Outbound)) }

// EventType implements Data.
func (MessageObserved) EventType() string { return TypeMessageObserved }

// EventPageID implements Data.
func (m MessageObserved) EventPageID() string { return m.PageID }

// EventSubject implements Data.
func (m MessageObserved) EventSubject() string { return subject(m.PageID, m.PSID) }

// EventTime implements Data.
func (m MessageObserved) EventTime() time.Time { return m.SentAt }

func (m MessageObserved) normalize() Data { return MessageObserved(Message(m).normalized("")) }

// EventType implements Data.
func (Delivery) EventType() string { return TypeDelivery }

// EventPageID implements Data.
func (d Delivery) EventPageID() string { return d.PageID }

// EventSubject implements Data.
func (d Delivery) EventSubject() string { return subject(d.PageID, d.PSID) }

// EventTime implements Data.
func (d Delivery) EventTime() time.Time { return d.Watermark }

func (d Delivery) normalize() Data {
	d.MIDs = normalizeMIDs(d.MIDs)
	d.Watermark = d.Watermark.UTC()
	return d
}

// normalizeMIDs returns the mids normalised and sorted, in a new slice: the caller's
// slice is not touched.
func normalizeMIDs(mids []string) []string {
	if len(mids) == 0 {
		return nil
	}
	out := make([]string, len(mids))
	for i, mid := range mids {
		out[i] = NormalizeMID(mid)
	}
	slices.Sort(out)
	return out
}

// EventType implements Data.
func (Read) EventType() string { return TypeRead }

// EventPageID implements Data.
func (r Read) EventPageID() string { return r.PageID }

// EventSubject implements Data.
func (r Read) EventSubject() string { return subject(r.PageID, r.PSID) }

// EventTime implements Data.
func (r Read) EventTime() time.Time { return r.Watermark }

func (r Read) normalize() Data {
	r.Watermark = r.Watermark.UTC()
	return r
}

// EventType implements Data.
func (Reaction) EventType() string { return TypeReaction }

// EventPageID implements Data.
func (r Reaction) EventPageID() string { return r.PageID }

// EventSubject implements Data.
func (r Reaction) EventSubject() string { return subject(r.PageID, r.PSID) }

// EventTime implements Data.
func (r Reaction) EventTime() time.Time { return r.ReactedAt }

func (r Reaction) normalize() Data {
	r.MID = NormalizeMID(r.MID)
	r.ReactedAt = r.ReactedAt.UTC()
	return r
}

// EventType implements Data.
func (Edit) EventType() string { return TypeEdit }

// EventPageID implements Data.
func (e Edit) EventPageID() string { return e.PageID }

// EventSubject implements Data.
func (e Edit) EventSubject() string { return subject(e.PageID, e.PSID) }

// EventTime implements Data.
func (e Edit) EventTime() time.Time { return e.EditedAt }

func (e Edit) normalize() Data {
	e.MID = NormalizeMID(e.MID)
	e.EditedAt = e.EditedAt.UTC()
	return e
}

// EventType implements Data.
func (Postback) EventType() string { return TypePostback }

// EventPageID implements Data.
func (p Postback) EventPageID() string { return p.PageID }

// EventSubject implements Data.
func (p Postback) EventSubject() string { return subject(p.PageID, p.PSID) }

// EventTime implements Data.
func (p Postback) EventTime() time.Time { return p.OccurredAt }

func (p Postback) normalize() Data {
	p.MID = NormalizeMID(p.MID)
	p.OccurredAt = p.OccurredAt.UTC()
	return p
}

// EventType implements Data.
func (Referral) EventType() string { return TypeReferral }

// EventPageID implements Data.
func (r Referral) EventPageID() string { return r.PageID }

// EventSubject implements Data.
func (r Referral) EventSubject() string { return subject(r.PageID, r.PSID) }

// EventTime implements Data.
func (r Referral) EventTime() time.Time { return r.OccurredAt }

func (r Referral) normalize() Data {
	r.OccurredAt = r.OccurredAt.UTC()
	return r
}

// EventType implements Data.
func (Optin) EventType() string { return TypeOptin }

// EventPageID implements Data.
func (o Optin) EventPageID() string { return o.PageID }

// EventSubject implements Data. A plugin opt-in known only by user_ref has no user.
func (o Optin) EventSubject() string { return subject(o.PageID, o.PSID) }

// EventTime implements Data.
func (o Optin) EventTime() time.Time { return o.OccurredAt }

func (o Optin) normalize() Data {
	o.OccurredAt = o.OccurredAt.UTC()
	return o
}

// EventType implements Data.
func (ConversationChanged) EventType() string { return TypeConversationChanged }

// EventPageID implements Data.
func (c ConversationChanged) EventPageID() string { return c.PageID }

// EventSubject implements Data. The notification names a thread, not a user.
func (c ConversationChanged) EventSubject() string { return subject(c.PageID, "") }

// EventTime implements Data.
func (c ConversationChanged) EventTime() time.Time { return c.ChangedAt }

func (c ConversationChanged) normalize() Data {
	c.ChangedAt = c.ChangedAt.UTC()
	return c
}

// EventType implements Data.
func (Unknown) EventType() string { return TypeUnknown }

// EventPageID implements Data.
func (u Unknown) EventPageID() string { return u.PageID }

// EventSubject implements Data.
func (u Unknown) EventSubject() string { return subject(u.PageID, "") }

// EventTime implements Data.
func (u Unknown) EventTime() time.Time { return u.OccurredAt }

func (u Unknown) normalize() Data {
	u.OccurredAt = u.OccurredAt.UTC()
	return u
}

// EventType implements Data.
func (ConversationObserved) EventType() string { return TypeConversationObserved }

// EventPageID implements Data.
func (c ConversationObserved) EventPageID() string { return c.PageID }

// EventSubject implements Data.
func (c ConversationObserved) EventSubject() string { return subject(c.PageID, c.PSID) }

// EventTime implements Data. The snapshot describes the thread as of its updated_time.
func (c ConversationObserved) EventTime() time.Time { return c.UpdatedTime }

func (c ConversationObserved) normalize() Data {
	c.UpdatedTime = c.UpdatedTime.UTC()
	c.ObservedAt = c.ObservedAt.UTC()
	return c
}

// EventType implements Data.
func (PageSynced) EventType() string { return TypePageSynced }

// EventPageID implements Data.
func (p PageSynced) EventPageID() string { return p.PageID }

// EventSubject implements Data.
func (p PageSynced) EventSubject() string { return subject(p.PageID, "") }

// EventTime implements Data.
func (p PageSynced) EventTime() time.Time { return p.SyncedAt }

func (p PageSynced) normalize() Data {
	p.SyncedAt = p.SyncedAt.UTC()
	return p
}
