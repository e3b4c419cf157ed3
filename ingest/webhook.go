package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/convsync/convsync/schemas"
)

// ErrNotPage is returned for a webhook whose object is not "page" (Instagram, user or
// permission webhooks are not Messenger events for Pages).
var ErrNotPage = errors.New(`webhook object is not "page"`)

// PayloadError is a body that is not a Meta webhook at all: malformed JSON or the wrong
// shape. The request gets 400 and nothing is appended.
type PayloadError struct {
	Reason string
	Err    error
}

func (e *PayloadError) Error() string {
	if e.Err != nil {
		return "invalid webhook payload: " + e.Reason + ": " + e.Err.Error()
	}
	return "invalid webhook payload: " + e.Reason
}

func (e *PayloadError) Unwrap() error { return e.Err }

// flexID is an id Meta sends as a JSON string or a JSON number (app_id, sticker_id and, in
// older samples, page ids): decoded through json.Number, never float64.
type flexID string

func (f *flexID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		*f = ""
		return nil
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexID(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("id %s is neither a string nor a number", b)
	}
	*f = flexID(n.String())
	return nil
}

// flexTime is a Meta timestamp: epoch milliseconds for messaging events, seconds for
// changes entries, sometimes a quoted string of either. Seconds and milliseconds are told
// apart by magnitude. A value that does not parse is left zero (the caller falls back to
// entry.time, then to the arrival time) rather than failing the request.
type flexTime time.Time

// secondsLimit: below it a number is seconds (1e11 s is the year 5138; 1e11 ms is 1973).
const secondsLimit = 1e11

func (f *flexTime) UnmarshalJSON(b []byte) error {
	b = bytes.Trim(bytes.TrimSpace(b), `"`)
	*f = flexTime(parseEpoch(string(b)))
	return nil
}

// parseEpoch reads a timestamp; one outside 1971..2999 is treated as absent.
func parseEpoch(s string) time.Time {
	t := parseEpochRaw(s)
	if y := t.Year(); y < 1971 || y > 2999 {
		return time.Time{}
	}
	return t
}

func parseEpochRaw(s string) time.Time {
	if s == "" || s == "null" {
		return time.Time{}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n <= 0 {
			return time.Time{}
		}
		if n < secondsLimit {
			return time.Unix(n, 0).UTC()
		}
		return time.UnixMilli(n).UTC()
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f > 0 {
		if f < secondsLimit {
			return time.UnixMilli(int64(f * 1000)).UTC()
		}
		return time.UnixMilli(int64(f)).UTC()
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC()
	}
	return time.Time{}
}

func (f flexTime) t() time.Time { return time.Time(f) }

// flexInt is an int Meta sometimes quotes (num_edit in the doc sample).
type flexInt int

func (f *flexInt) UnmarshalJSON(b []byte) error {
	s := string(bytes.Trim(bytes.TrimSpace(b), `"`))
	if s == "" || s == "null" {
		*f = 0
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("%q is not an integer", s)
	}
	*f = flexInt(n)
	return nil
}

type webhookBody struct {
	Object string            `json:"object"`
	Entry  []json.RawMessage `json:"entry"`
}

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

// Parse turns a webhook body into events, one per messaging[] and standby[] item and
// per changes[] item of every entry. receivedAt is the time of arrival: the fallback for
// an event without a usable timestamp. An item convsync cannot read becomes an Unknown
// event with its raw JSON: it is kept and counted, never dropped. Parse fails only on a
// body that is not a page webhook (ErrNotPage, *PayloadError).
func Parse(body []byte, receivedAt time.Time) ([]schemas.Data, error) {
	var wb webhookBody
	if err := json.Unmarshal(body, &wb); err != nil {
		return nil, &PayloadError{Reason: "malformed JSON", Err: err}
	}
	if wb.Object != "page" {
		if wb.Object == "" {
			return nil, &PayloadError{Reason: `no "object" field`}
		}
		return nil, fmt.Errorf("%w: got %q", ErrNotPage, wb.Object)
	}
	var out []schemas.Data
	for i, raw := range wb.Entry {
		evs, err := parseEntry(raw, receivedAt)
		if err != nil {
			return nil, &PayloadError{Reason: fmt.Sprintf("entry[%d]", i), Err: err}
		}
		out = append(out, evs...)
	}
	return out, nil
}

func parseEntry(raw json.RawMessage, receivedAt time.Time) ([]schemas.Data, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, errors.New("not an object")
	}
	var pageID flexID
	var entryTime flexTime
	if v, ok := fields["id"]; ok {
		if err := json.Unmarshal(v, &pageID); err != nil {
			return nil, fmt.Errorf("id: %w", err)
		}
	}
	if v, ok := fields["time"]; ok {
		_ = json.Unmarshal(v, &entryTime)
	}
	fallback := entryTime.t()
	if fallback.IsZero() {
		fallback = receivedAt.UTC()
	}
	page := string(pageID)

	var out []schemas.Data
	for _, key := range entryKeys(fields) {
		v := fields[key]
		switch key {
		case "id", "time":
		case "messaging", "standby":
			channel := schemas.ChannelMessaging
			if key == "standby" {
				channel = schemas.ChannelStandby
			}
			var items []json.RawMessage
			if err := json.Unmarshal(v, &items); err != nil {
				out = append(out, unknown(page, channel, key, v, fallback))
				continue
			}
			for _, it := range items {
				out = append(out, parseMessaging(page, channel, it, fallback))
			}
		case "changes":
			var items []json.RawMessage
			if err := json.Unmarshal(v, &items); err != nil {
				out = append(out, unknown(page, schemas.ChannelChanges, key, v, fallback))
				continue
			}
			for _, it := range items {
				out = append(out, parseChange(page, it, fallback))
			}
		default:
			out = append(out, unknown(page, schemas.ChannelEntry, key, v, fallback))
		}
	}
	if page == "" {
		// Without entry.id, take the page from the events that name it (older samples).
		for _, d := range out {
			if d.EventPageID() != "" {
				page = d.EventPageID()
				break
			}
		}
		for i, d := range out {
			if u, ok := d.(schemas.Unknown); ok && u.PageID == "" {
				u.PageID = page
				out[i] = u
			}
		}
	}
	for _, d := range out {
		if d.EventPageID() == "" {
			return nil, errors.New("no page id: events cannot be keyed")
		}
	}
	return out, nil
}

// entryKeys orders an entry's keys: messaging, standby, changes, then the rest sorted,
// so the events of a body always come out in the same order.
func entryKeys(fields map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(fields))
	for _, k := range []string{"messaging", "standby", "changes"} {
		if _, ok := fields[k]; ok {
			keys = append(keys, k)
		}
	}
	var rest []string
	for k := range fields {
		switch k {
		case "id", "time", "messaging", "standby", "changes":
		default:
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	return append(keys, rest...)
}

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
	if at.IsZero() {
		at = fallback
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
		return schemas.Reaction{PageID: page, PSID: psid, MID: r.MID, Action: action, Reaction: r.Reaction, Emoji: r.Emoji, ReactedAt: at}
	case it.Postback != nil:
		p := it.Postback
		if psid == "" {
			return bad("postback without sender")
		}
		return schemas.Postback{PageID: page, PSID: psid, MID: p.MID, Title: p.Title, Payload: p.Payload, Referral: p.Referral, OccurredAt: at}
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
			AdID: string(r.AdID), RefererURI: r.RefererURI, Raw: it.Referral, OccurredAt: at}
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
			Ref: o.Ref, Raw: it.Optin, OccurredAt: at}
	}
	return bad("")
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

type rawChange struct {
	Field string          `json:"field"`
	Value json.RawMessage `json:"value"`
}

type conversationChange struct {
	PageID    flexID `json:"page_id"`
	ThreadID  string `json:"thread_id"`
	ThreadKey string `json:"thread_key"`
}

func parseChange(page string, raw json.RawMessage, at time.Time) schemas.Data {
	var c rawChange
	if err := json.Unmarshal(raw, &c); err != nil {
		return unknown(page, schemas.ChannelChanges, "", raw, at)
	}
	if c.Field != "conversations" {
		return unknown(page, schemas.ChannelChanges, c.Field, raw, at)
	}
	var v conversationChange
	if err := json.Unmarshal(c.Value, &v); err != nil || (v.ThreadID == "" && v.ThreadKey == "") {
		return unknown(page, schemas.ChannelChanges, c.Field, raw, at)
	}
	if page == "" {
		page = string(v.PageID)
	}
	threadID := v.ThreadID
	if threadID == "" {
		threadID = v.ThreadKey
	}
	return schemas.ConversationChanged{PageID: page, ThreadID: threadID, ThreadKey: v.ThreadKey, ChangedAt: at}
}

// shortType is the bounded metric label of an event type: "message", "echo", ...
func shortType(typ string) string {
	typ = strings.TrimSuffix(typ, ".v1")
	if i := strings.LastIndexByte(typ, '.'); i >= 0 {
		return typ[i+1:]
	}
	return typ
}
