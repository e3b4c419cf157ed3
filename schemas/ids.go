package schemas

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Namespace is the UUIDv5 namespace of event ids: the UUIDv5 of the URL
// "https://github.com/convsync/convsync/schemas/events" in the standard URL namespace,
// written out so that it can never change by accident.
const Namespace = "66d9cbe6-56f4-5faa-91ad-ef04797e797b"

// namespace is Namespace parsed; a test checks they agree.
var namespace = uuid.UUID{0x66, 0xd9, 0xcb, 0xe6, 0x56, 0xf4, 0x5f, 0xaa, 0x91, 0xad, 0xef, 0x04, 0x79, 0x7e, 0x79, 0x7b}

// ID is the deterministic event id of d: a UUIDv5 in Namespace of a key built from the
// Meta ids and times of the fact. The same fact has the same id whichever source saw
// it; a message from a webhook and from a backfill share one. Other producers compute
// it the same way; the keys are listed in the package's README and in ids.go.
func ID(d Data) string {
	return uuid.NewSHA1(namespace, []byte(d.idKey())).String()
}

// NormalizeMID returns mid with the m_ prefix the Graph API uses: older webhook mids
// (mid.$…) equal the Graph id without it. The empty mid stays empty.
func NormalizeMID(mid string) string {
	if mid == "" || strings.HasPrefix(mid, "m_") {
		return mid
	}
	return "m_" + mid
}

func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// when is the time part of a key: the time in ms, or "raw:" and the fingerprint of the
// item when the source gave no time (the time is then the arrival, which a redelivery
// changes).
func when(t time.Time, fingerprint string) string {
	if fingerprint != "" {
		return "raw:" + fingerprint
	}
	return ms(t)
}

// The keys below are the contract: changing one changes the id of every future event
// of that type and breaks deduplication against the log. Each one hashes the
// identity of the fact, never fields that can differ between sources (text, names).

func messageKey(page, mid string) string { return "message|" + page + "|" + NormalizeMID(mid) }

func (m Message) idKey() string         { return messageKey(m.PageID, m.MID) }
func (e Echo) idKey() string            { return messageKey(e.PageID, e.MID) }
func (m MessageObserved) idKey() string { return messageKey(m.PageID, m.MID) }

func (d Delivery) idKey() string {
	return "delivery|" + d.PageID + "|" + d.PSID + "|" + ms(d.Watermark) + "|" +
		strings.Join(normalizeMIDs(d.MIDs), ",")
}

func (r Read) idKey() string {
	return "read|" + r.PageID + "|" + r.PSID + "|" + ms(r.Watermark)
}

func (r Reaction) idKey() string {
	return "reaction|" + r.PageID + "|" + NormalizeMID(r.MID) + "|" + r.PSID + "|" +
		string(r.Action) + "|" + r.Reaction + "|" + when(r.ReactedAt, r.Fingerprint)
}

func (e Edit) idKey() string {
	return "edit|" + e.PageID + "|" + NormalizeMID(e.MID) + "|" + strconv.Itoa(e.NumEdit)
}

func (p Postback) idKey() string {
	return "postback|" + p.PageID + "|" + p.PSID + "|" + NormalizeMID(p.MID) + "|" +
		when(p.OccurredAt, p.Fingerprint) + "|" + p.Payload
}

func (r Referral) idKey() string {
	return "referral|" + r.PageID + "|" + r.PSID + "|" + when(r.OccurredAt, r.Fingerprint) + "|" + r.Ref
}

func (o Optin) idKey() string {
	who := o.PSID
	if who == "" {
		who = o.UserRef
	}
	return "optin|" + o.PageID + "|" + who + "|" + when(o.OccurredAt, o.Fingerprint) + "|" + o.Type
}

func (c ConversationChanged) idKey() string {
	return "changed|" + c.PageID + "|" + c.ThreadID + "|" + ms(c.ChangedAt)
}

// idKey hashes raw as it goes on the wire (json.Marshal compacts a RawMessage and
// escapes <, > and &), so the id is the same before encoding and after decoding.
func (u Unknown) idKey() string {
	raw, err := json.Marshal(u.Raw)
	if err != nil {
		raw = u.Raw // not JSON: Decode rejects it anyway
	}
	sum := sha256.Sum256(raw)
	return "unknown|" + u.PageID + "|" + hex.EncodeToString(sum[:])
}

func (c ConversationObserved) idKey() string {
	return "conversation|" + c.PageID + "|" + c.PSID + "|" + ms(c.UpdatedTime) + "|" +
		strconv.Itoa(c.MessageCount) + "|" + strconv.Itoa(c.UnreadCount)
}

func (p PageSynced) idKey() string {
	return "synced|" + p.PageID + "|" + ms(p.SyncedAt)
}
