package deltas

import (
	"encoding/json"
	"time"
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
