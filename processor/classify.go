package processor

import (
	"encoding/json"
	"errors"

	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/schemas/dlq"
)

// probe is the least of an envelope: what tells a record that is not an event at all
// from an event that fails validation.
type probe struct {
	SpecVersion *string `json:"specversion"`
	ID          any     `json:"id"`
	Type        *string `json:"type"`
}

// classify puts a Decode error of value into a category, and returns the failing field
// and the record's event id when it has them (for the log). It looks at the record's
// structure and at the error's field, never at its text.
func classify(value []byte, err error) (category, field, eventID string) {
	if ve, ok := errors.AsType[*schemas.ValidationError](err); ok {
		field = ve.Field
	}
	var pr probe
	if json.Unmarshal(value, &pr) != nil || pr.SpecVersion == nil || pr.Type == nil {
		return dlq.CategoryDecode, field, "" // not JSON, not an object, or no envelope
	}
	if id, ok := pr.ID.(string); ok {
		eventID = id
	}
	if field == "type" && *pr.Type != "" {
		return dlq.CategoryUnknownType, field, eventID
	}
	return dlq.CategorySchema, field, eventID
}
