package ingest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/convsync/convsync/schemas"
)

type party struct {
	ID      flexID `json:"id"`
	UserRef string `json:"user_ref"`
}

type attachmentPayload struct {
	URL       string `json:"url"`
	Title     string `json:"title"`
	StickerID flexID `json:"sticker_id"`
}

type rawAttachment struct {
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
	URL     string          `json:"url"`
	Title   string          `json:"title"`
}

type rawMessage struct {
	MID         string          `json:"mid"`
	Text        string          `json:"text"`
	IsEcho      bool            `json:"is_echo"`
	AppID       flexID          `json:"app_id"`
	Metadata    string          `json:"metadata"`
	Attachments []rawAttachment `json:"attachments"`
	QuickReply  *struct {
		Payload string `json:"payload"`
	} `json:"quick_reply"`
	ReplyTo *struct {
		MID string `json:"mid"`
	} `json:"reply_to"`
	Referral json.RawMessage `json:"referral"`
}

type rawReferral struct {
	Source     string `json:"source"`
	Type       string `json:"type"`
	Ref        string `json:"ref"`
	AdID       flexID `json:"ad_id"`
	RefererURI string `json:"referer_uri"`
}

type rawOptin struct {
	Type    string `json:"type"`
	Payload string `json:"payload"`
	Ref     string `json:"ref"`
	UserRef string `json:"user_ref"`
}

type messagingItem struct {
	Sender    party    `json:"sender"`
	Recipient party    `json:"recipient"`
	Timestamp flexTime `json:"timestamp"`
	Message   *rawMessage
	Delivery  *struct {
		MIDs      []string `json:"mids"`
		Watermark flexTime `json:"watermark"`
	} `json:"delivery"`
	Read *struct {
		Watermark flexTime `json:"watermark"`
	} `json:"read"`
	Reaction *struct {
		MID      string `json:"mid"`
		Action   string `json:"action"`
		Reaction string `json:"reaction"`
		Emoji    string `json:"emoji"`
	} `json:"reaction"`
	Postback *struct {
		MID      string          `json:"mid"`
		Title    string          `json:"title"`
		Payload  string          `json:"payload"`
		Referral json.RawMessage `json:"referral"`
	} `json:"postback"`
	Edit *struct {
		MID     string  `json:"mid"`
		Text    string  `json:"text"`
		NumEdit flexInt `json:"num_edit"`
	} `json:"message_edit"`
	Referral json.RawMessage `json:"referral"`
	Optin    json.RawMessage `json:"optin"`
}

// kinds are the messaging event keys convsync turns into typed events, in the order they
// are looked for.
var kinds = []string{"message", "delivery", "read", "reaction", "postback", "message_edit", "referral", "optin"}

// envelopeKeys are the keys of a messaging item that are not its kind.
var envelopeKeys = map[string]bool{"sender": true, "recipient": true, "timestamp": true}

func unknown(page string, ch schemas.Channel, kind string, raw json.RawMessage, at time.Time) schemas.Unknown {
	return schemas.Unknown{PageID: page, Channel: ch, Kind: kind, Raw: append(json.RawMessage(nil), raw...), OccurredAt: at}
}

// kindOf names the event key of a messaging item: the first known kind present, else the
// first key that is not sender/recipient/timestamp.
func kindOf(raw json.RawMessage) string {
	var keys map[string]json.RawMessage
	if json.Unmarshal(raw, &keys) != nil {
		return ""
	}
	for _, k := range kinds {
		if _, ok := keys[k]; ok {
			return k
		}
	}
	other := ""
	for k := range keys {
		if !envelopeKeys[k] && (other == "" || k < other) {
			other = k
		}
	}
	return other
}

func parseMessaging(entryPage string, ch schemas.Channel, raw json.RawMessage, fallback time.Time) schemas.Data {
	var it messagingItem
	if err := json.Unmarshal(raw, &it); err != nil {
		u := unknown(entryPage, ch, kindOf(raw), raw, fallback)
		u.Reason = "does not decode: " + err.Error()
		return u
	}
	page := entryPage
	if page == "" {
		// Inbound: the recipient is the Page; echo: the sender is.
		if it.Message != nil && it.Message.IsEcho {
			page = string(it.Sender.ID)
		} else {
			page = string(it.Recipient.ID)
		}
	}
	// The thread is (Page, the other party).
	psid := string(it.Sender.ID)
	if psid == page {
		psid = string(it.Recipient.ID)
	}
	at := it.Timestamp.t()
	// Without a timestamp of its own, the item's time is the entry's or the arrival, and
	// the id hashes the item instead: a redelivery then keeps its id.
	fingerprint := ""
	if at.IsZero() {
		at = fallback
		fingerprint = fingerprintOf(raw)
	}
	bad := func(reason string) schemas.Data {
		u := unknown(page, ch, kindOf(raw), raw, at)
		u.Reason = reason
		return u
	}
	standby := ch == schemas.ChannelStandby

	switch {
	case it.Message != nil:
		m := it.Message
		if m.MID == "" || psid == "" {
			return bad("message without mid or sender")
		}
		msg := schemas.Message{
			PageID: page, PSID: psid, MID: m.MID, Text: m.Text,
			Attachments: attachments(m.Attachments), Referral: m.Referral,
			Standby: standby, SentAt: at,
		}
		if m.QuickReply != nil {
			msg.QuickReplyPayload = m.QuickReply.Payload
		}
		if m.ReplyTo != nil {
			msg.ReplyToMID = m.ReplyTo.MID
		}
		if m.IsEcho {
			msg.AppID, msg.Metadata = string(m.AppID), m.Metadata
			return schemas.Echo(msg)
		}
		return msg
	case it.Delivery != nil:
		w := it.Delivery.Watermark.t()
		if w.IsZero() || psid == "" {
			return bad("delivery without watermark or sender")
		}
		mids := make([]string, 0, len(it.Delivery.MIDs))
		for _, m := range it.Delivery.MIDs {
			if m != "" {
				mids = append(mids, m)
			}
		}
		if len(mids) == 0 {
			mids = nil
		}
		return schemas.Delivery{PageID: page, PSID: psid, MIDs: mids, Watermark: w}
	case it.Read != nil:
		w := it.Read.Watermark.t()
		if w.IsZero() || psid == "" {
			return bad("read without watermark or sender")
		}
		return schemas.Read{PageID: page, PSID: psid, Watermark: w}
	case it.Reaction != nil:
		r := it.Reaction
		action := schemas.ReactionAction(r.Action)
		if r.MID == "" || psid == "" || (action != schemas.React && action != schemas.Unreact) {
			return bad("reaction without mid or sender, or with an action other than react/unreact")
		}
		return schemas.Reaction{PageID: page, PSID: psid, MID: r.MID, Action: action, Reaction: r.Reaction, Emoji: r.Emoji, ReactedAt: at, Fingerprint: fingerprint}
	case it.Postback != nil:
		p := it.Postback
		if psid == "" {
			return bad("postback without sender")
		}
		return schemas.Postback{PageID: page, PSID: psid, MID: p.MID, Title: p.Title, Payload: p.Payload, Referral: p.Referral, OccurredAt: at, Fingerprint: fingerprint}
	case it.Edit != nil:
		e := it.Edit
		if e.MID == "" || psid == "" {
			return bad("message_edit without mid or sender")
		}
		return schemas.Edit{PageID: page, PSID: psid, MID: e.MID, Text: e.Text, NumEdit: int(e.NumEdit), EditedAt: at}
	case len(it.Referral) > 0 && string(it.Referral) != "null":
		var r rawReferral
		if json.Unmarshal(it.Referral, &r) != nil || psid == "" {
			return bad("referral that is not an object, or without sender")
		}
		return schemas.Referral{PageID: page, PSID: psid, Source: r.Source, Type: r.Type, Ref: r.Ref,
			AdID: string(r.AdID), RefererURI: r.RefererURI, Raw: it.Referral, OccurredAt: at, Fingerprint: fingerprint}
	case len(it.Optin) > 0 && string(it.Optin) != "null":
		var o rawOptin
		if json.Unmarshal(it.Optin, &o) != nil {
			return bad("optin that is not an object")
		}
		userRef := it.Sender.UserRef
		if userRef == "" {
			userRef = o.UserRef
		}
		if psid == "" && userRef == "" {
			return bad("optin without sender id or user_ref")
		}
		return schemas.Optin{PageID: page, PSID: psid, UserRef: userRef, Type: o.Type, Payload: o.Payload,
			Ref: o.Ref, Raw: it.Optin, OccurredAt: at, Fingerprint: fingerprint}
	}
	return bad("")
}

// fingerprintOf is the hex SHA-256 of a messaging item as Meta sent it, compacted so
// that whitespace does not count.
func fingerprintOf(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		b.Reset()
		b.Write(raw)
	}
	sum := sha256.Sum256(b.Bytes())
	return hex.EncodeToString(sum[:])
}

// attachments keeps every attachment with its raw payload, lifting url, title and
// sticker id out of it. Until Meta stops doing so, a sticker arrives both as an image
// and as a sticker attachment of one message: the image copy is dropped.
func attachments(in []rawAttachment) []schemas.Attachment {
	if len(in) == 0 {
		return nil
	}
	out := make([]schemas.Attachment, 0, len(in))
	stickers := map[string]bool{}
	for _, a := range in {
		var p attachmentPayload
		if len(a.Payload) > 0 {
			_ = json.Unmarshal(a.Payload, &p) // a null or odd payload keeps its raw form only
		}
		if a.Type == "" {
			a.Type = "unknown" // kept with its payload; the schema wants a type
		}
		att := schemas.Attachment{Type: a.Type, URL: p.URL, Title: p.Title, StickerID: string(p.StickerID), Payload: a.Payload}
		if att.URL == "" {
			att.URL = a.URL
		}
		if att.Title == "" {
			att.Title = a.Title
		}
		if a.Type == "sticker" && att.StickerID != "" {
			stickers[att.StickerID] = true
		}
		out = append(out, att)
	}
	if len(stickers) > 0 {
		kept := out[:0]
		for _, a := range out {
			if a.Type == "image" && a.StickerID != "" && stickers[a.StickerID] {
				continue
			}
			kept = append(kept, a)
		}
		out = kept
	}
	return out
}
