package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
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

type webhookBody struct {
	Object string            `json:"object"`
	Entry  []json.RawMessage `json:"entry"`
}

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

// shortType is the bounded metric label of an event type: "message", "echo", ...
func shortType(typ string) string {
	typ = strings.TrimSuffix(typ, ".v1")
	if i := strings.LastIndexByte(typ, '.'); i >= 0 {
		return typ[i+1:]
	}
	return typ
}
