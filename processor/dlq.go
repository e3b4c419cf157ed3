package processor

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/schemas"
)

// Headers of a dead-letter record, added to the original record's headers.
const (
	HeaderDLQReason          = "dlq-reason"           // the error text
	HeaderDLQField           = "dlq-field"            // the failing field (schemas.ValidationError.Field), when known
	HeaderDLQCategory        = "dlq-category"         // CategoryDecode, CategorySchema or CategoryUnknownType
	HeaderDLQSourceTopic     = "dlq-source-topic"     // where the record was read
	HeaderDLQSourcePartition = "dlq-source-partition" // decimal
	HeaderDLQSourceOffset    = "dlq-source-offset"    // decimal
	HeaderDLQTime            = "dlq-time"             // when it was dead-lettered, RFC 3339 UTC with ms
)

// Why a record was dead-lettered: the reason label of convsync_dlq_records_total and the
// dlq-category header. A bounded set, unlike the reason text.
const (
	CategoryDecode      = "decode"       // not JSON, or no CloudEvents envelope (no specversion or type)
	CategorySchema      = "schema"       // an envelope that fails validation: attributes, data, pageid
	CategoryUnknownType = "unknown_type" // a type (or a version of one) this binary does not know
)

var categories = []string{CategoryDecode, CategorySchema, CategoryUnknownType}

// dlqTime is the layout of dlq-time: RFC 3339 with milliseconds, as the envelope's times.
const dlqTime = "2006-01-02T15:04:05.000Z07:00"

// DLQRecord is what the headers of a dead-letter record say.
type DLQRecord struct {
	Reason          string // the error text
	Field           string // the failing field; empty when the record as a whole is wrong
	Category        string // CategoryDecode, CategorySchema or CategoryUnknownType
	SourceTopic     string
	SourcePartition int32
	SourceOffset    int64
	Time            time.Time // zero when the header is missing or unreadable
}

// DLQInfo reads the dead-letter headers of r. ok is false when r is not a dead-letter
// record (no reason or source headers, or a source partition or offset that is not a
// number). When a header occurs more than once (a dead letter replayed and dead-lettered
// again), the last one, the newest, counts.
func DLQInfo(r *kgo.Record) (info DLQRecord, ok bool) {
	var part, off string
	var hasReason, hasTopic bool
	for _, h := range r.Headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderDLQReason:
			info.Reason, hasReason = v, true
		case HeaderDLQField:
			info.Field = v
		case HeaderDLQCategory:
			info.Category = v
		case HeaderDLQSourceTopic:
			info.SourceTopic, hasTopic = v, true
		case HeaderDLQSourcePartition:
			part = v
		case HeaderDLQSourceOffset:
			off = v
		case HeaderDLQTime:
			info.Time, _ = time.Parse(time.RFC3339, v)
		}
	}
	p, perr := strconv.ParseInt(part, 10, 32)
	o, oerr := strconv.ParseInt(off, 10, 64)
	if !hasReason || !hasTopic || perr != nil || oerr != nil {
		return DLQRecord{}, false
	}
	info.SourcePartition, info.SourceOffset = int32(p), o
	return info, true
}

// DeadLetter builds the dead-letter record of src for topic: key and value as they
// were, the original headers kept, the dlq-* headers added. category is one of the
// Category constants; err's text is the reason, and its field, when err is or wraps a
// *schemas.ValidationError with one, goes to dlq-field.
func DeadLetter(src *kgo.Record, topic, category string, err error, at time.Time) *kgo.Record {
	headers := make([]kgo.RecordHeader, 0, len(src.Headers)+7)
	headers = append(headers, src.Headers...)
	headers = append(headers,
		kgo.RecordHeader{Key: HeaderDLQReason, Value: []byte(err.Error())},
		kgo.RecordHeader{Key: HeaderDLQCategory, Value: []byte(category)},
	)
	if ve, ok := errors.AsType[*schemas.ValidationError](err); ok && ve.Field != "" {
		headers = append(headers, kgo.RecordHeader{Key: HeaderDLQField, Value: []byte(ve.Field)})
	}
	headers = append(headers,
		kgo.RecordHeader{Key: HeaderDLQSourceTopic, Value: []byte(src.Topic)},
		kgo.RecordHeader{Key: HeaderDLQSourcePartition, Value: strconv.AppendInt(nil, int64(src.Partition), 10)},
		kgo.RecordHeader{Key: HeaderDLQSourceOffset, Value: strconv.AppendInt(nil, src.Offset, 10)},
		kgo.RecordHeader{Key: HeaderDLQTime, Value: at.UTC().AppendFormat(nil, dlqTime)},
	)
	return &kgo.Record{Topic: topic, Key: src.Key, Value: src.Value, Headers: headers}
}

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
		return CategoryDecode, field, "" // not JSON, not an object, or no envelope
	}
	if id, ok := pr.ID.(string); ok {
		eventID = id
	}
	if field == "type" && *pr.Type != "" {
		return CategoryUnknownType, field, eventID
	}
	return CategorySchema, field, eventID
}
