package schemas

import (
	"encoding/json"
	"time"
)

// Event types, version 1. The type names the schema file (json/<type>.json); a new
// version is a new constant, a new file and an upcaster from the old one.
const (
	TypeMessage             = "convsync.messenger.message.v1"              // inbound message (user -> page)
	TypeEcho                = "convsync.messenger.echo.v1"                 // page-sent message echo
	TypeDelivery            = "convsync.messenger.delivery.v1"             // delivery watermark
	TypeRead                = "convsync.messenger.read.v1"                 // read watermark
	TypeReaction            = "convsync.messenger.reaction.v1"             // reaction added or removed
	TypeEdit                = "convsync.messenger.edit.v1"                 // message text edited
	TypePostback            = "convsync.messenger.postback.v1"             // button tapped
	TypeReferral            = "convsync.messenger.referral.v1"             // thread entered via link or ad
	TypeOptin               = "convsync.messenger.optin.v1"                // opt-in
	TypeConversationChanged = "convsync.messenger.conversation_changed.v1" // changes[] field "conversations"
	TypeUnknown             = "convsync.messenger.unknown.v1"              // an event kind we do not know: raw JSON kept

	TypeConversationObserved = "convsync.graph.conversation_observed.v1" // a Graph API conversation snapshot (backfill)
	TypeMessageObserved      = "convsync.graph.message_observed.v1"      // a message read from the Graph API (backfill)
	TypePageSynced           = "convsync.graph.page_synced.v1"           // backfill finished a page; moves last_synced_at
)

// Envelope attribute values convsync writes.
const (
	SpecVersion     = "1.0"
	DataContentType = "application/json"

	SourceWebhook  = "/convsync/ingest/webhook"
	SourceBackfill = "/convsync/backfill"
)

// Types returns every event type Decode returns, in a fixed order.
func Types() []string {
	return []string{
		TypeMessage, TypeEcho, TypeDelivery, TypeRead, TypeReaction, TypeEdit,
		TypePostback, TypeReferral, TypeOptin, TypeConversationChanged, TypeUnknown,
		TypeConversationObserved, TypeMessageObserved, TypePageSynced,
	}
}

// Envelope is a CloudEvents 1.0 event in structured JSON mode: the value of one record
// of convsync.events.v1.
type Envelope struct {
	SpecVersion string `json:"specversion"` // always "1.0"
	ID          string `json:"id"`          // deterministic, see ID
	Source      string `json:"source"`      // URI-reference, e.g. SourceWebhook
	Type        string `json:"type"`        // one of the Type* constants
	// Time is when the fact happened (Meta's timestamp), written as RFC 3339 with ms.
	Time            time.Time `json:"time"`
	Subject         string    `json:"subject,omitempty"` // "pages/{page_id}/users/{psid}" or "pages/{page_id}"
	DataContentType string    `json:"datacontenttype"`   // "application/json"
	// PageID is an extension attribute: the Facebook Page id, also the record key.
	PageID string `json:"pageid"`
	// ReceivedAt is an extension attribute: when convsync (or the producer) received
	// the fact; freshness metrics measure from it.
	ReceivedAt time.Time       `json:"receivedat"`
	Data       json.RawMessage `json:"data"`
}

// envelopeTime is the layout of the envelope's times: RFC 3339 with milliseconds.
const envelopeTime = "2006-01-02T15:04:05.000Z07:00"

// MarshalJSON writes the envelope in the attribute order above, times as RFC 3339 UTC
// with milliseconds. Data is written as it is (nil as null).
func (e Envelope) MarshalJSON() ([]byte, error) {
	return e.appendJSON(make([]byte, 0, envelopeSize+len(e.Data))), nil
}

// envelopeSize is about what the envelope takes without its data.
const envelopeSize = 384

// appendJSON is the encoder's hot path: no reflection, and data is not compacted or
// checked again after json.Marshal produced it.
func (e Envelope) appendJSON(b []byte) []byte {
	b = append(b, `{"specversion":`...)
	b = appendString(b, e.SpecVersion)
	b = append(b, `,"id":`...)
	b = appendString(b, e.ID)
	b = append(b, `,"source":`...)
	b = appendString(b, e.Source)
	b = append(b, `,"type":`...)
	b = appendString(b, e.Type)
	b = append(b, `,"time":"`...)
	b = e.Time.UTC().AppendFormat(b, envelopeTime)
	b = append(b, '"')
	if e.Subject != "" {
		b = append(b, `,"subject":`...)
		b = appendString(b, e.Subject)
	}
	b = append(b, `,"datacontenttype":`...)
	b = appendString(b, e.DataContentType)
	b = append(b, `,"pageid":`...)
	b = appendString(b, e.PageID)
	b = append(b, `,"receivedat":"`...)
	b = e.ReceivedAt.UTC().AppendFormat(b, envelopeTime)
	b = append(b, `","data":`...)
	if len(e.Data) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, e.Data...)
	}
	return append(b, '}')
}

// appendString appends s as a JSON string. Envelope attributes are nearly always plain
// ASCII; anything else goes through encoding/json so the escaping matches it exactly.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
