// Package dlq is the contract of the dead-letter topic, convsync.dlq.v1
// (KAFKA_DLQ_TOPIC): a record that a stage cannot handle is written there with its key,
// value and headers as they were, plus the dlq-* headers below that say why, where it was
// read and when. Every stage that dead-letters builds the record with [New]; operators'
// tools (convsync dlq list|requeue) and other consumers read the headers with [Read].
// schemas/README.md documents the headers for consumers in other languages.
package dlq

import (
	"errors"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/schemas"
)

// Headers of a dead-letter record, added to the original record's headers.
const (
	HeaderReason          = "dlq-reason"           // the error text
	HeaderField           = "dlq-field"            // the failing field (schemas.ValidationError.Field), when known
	HeaderCategory        = "dlq-category"         // one of the Category constants
	HeaderSourceTopic     = "dlq-source-topic"     // where the record was read
	HeaderSourcePartition = "dlq-source-partition" // decimal
	HeaderSourceOffset    = "dlq-source-offset"    // decimal
	HeaderTime            = "dlq-time"             // when it was dead-lettered, RFC 3339 UTC with ms
	HeaderTruncatedFrom   = "dlq-truncated-from"   // decimal: the value's length before Truncate cut it
)

// Why a record was dead-lettered: the reason label of convsync_dlq_records_total and the
// dlq-category header. A bounded set, unlike the reason text.
const (
	CategoryDecode      = "decode"       // not JSON, or no CloudEvents envelope (no specversion or type)
	CategorySchema      = "schema"       // an envelope that fails validation: attributes, data, pageid
	CategoryUnknownType = "unknown_type" // a type (or a version of one) this binary does not know
	CategoryRefused     = "refused"      // a delta (or a part of one) Postgres refuses: a value it cannot store
	CategoryTooLarge    = "too_large"    // a record too large to produce (the value is cut; the reason says how large it was)
)

// Categories is every category, for metrics that start their label values at zero.
func Categories() []string {
	return []string{CategoryDecode, CategorySchema, CategoryUnknownType, CategoryRefused, CategoryTooLarge}
}

// dlqTime is the layout of dlq-time: RFC 3339 with milliseconds, as the envelope's times.
const dlqTime = "2006-01-02T15:04:05.000Z07:00"

// Info is what the headers of a dead-letter record say.
type Info struct {
	Reason          string // the error text
	Field           string // the failing field; empty when the record as a whole is wrong
	Category        string // one of the Category constants
	SourceTopic     string
	SourcePartition int32
	SourceOffset    int64
	Time            time.Time // zero when the header is missing or unreadable
	// TruncatedFrom is the length of the original value when the dead letter holds only
	// its first bytes (Truncate); 0 when the value is whole.
	TruncatedFrom int
}

// Read reads the dead-letter headers of r. ok is false when r is not a dead-letter
// record (no reason or source headers, or a source partition or offset that is not a
// number). When a header occurs more than once (a dead letter replayed and dead-lettered
// again), the last one, the newest, counts.
func Read(r *kgo.Record) (info Info, ok bool) {
	var part, off string
	var hasReason, hasTopic bool
	for _, h := range r.Headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderReason:
			info.Reason, hasReason = v, true
		case HeaderField:
			info.Field = v
		case HeaderCategory:
			info.Category = v
		case HeaderSourceTopic:
			info.SourceTopic, hasTopic = v, true
		case HeaderSourcePartition:
			part = v
		case HeaderSourceOffset:
			off = v
		case HeaderTime:
			info.Time, _ = time.Parse(time.RFC3339, v)
		case HeaderTruncatedFrom:
			info.TruncatedFrom, _ = strconv.Atoi(v)
		}
	}
	p, perr := strconv.ParseInt(part, 10, 32)
	o, oerr := strconv.ParseInt(off, 10, 64)
	if !hasReason || !hasTopic || perr != nil || oerr != nil {
		return Info{}, false
	}
	info.SourcePartition, info.SourceOffset = int32(p), o
	return info, true
}

// New builds the dead-letter record of src for topic: key and value as they
// were, the original headers kept, the dlq-* headers added. category is one of the
// Category constants; err's text is the reason, and its field, when err is or wraps a
// *schemas.ValidationError with one, goes to dlq-field.
func New(src *kgo.Record, topic, category string, err error, at time.Time) *kgo.Record {
	headers := make([]kgo.RecordHeader, 0, len(src.Headers)+7)
	headers = append(headers, src.Headers...)
	headers = append(headers,
		kgo.RecordHeader{Key: HeaderReason, Value: []byte(err.Error())},
		kgo.RecordHeader{Key: HeaderCategory, Value: []byte(category)},
	)
	if ve, ok := errors.AsType[*schemas.ValidationError](err); ok && ve.Field != "" {
		headers = append(headers, kgo.RecordHeader{Key: HeaderField, Value: []byte(ve.Field)})
	}
	headers = append(headers,
		kgo.RecordHeader{Key: HeaderSourceTopic, Value: []byte(src.Topic)},
		kgo.RecordHeader{Key: HeaderSourcePartition, Value: strconv.AppendInt(nil, int64(src.Partition), 10)},
		kgo.RecordHeader{Key: HeaderSourceOffset, Value: strconv.AppendInt(nil, src.Offset, 10)},
		kgo.RecordHeader{Key: HeaderTime, Value: at.UTC().AppendFormat(nil, dlqTime)},
	)
	return &kgo.Record{Topic: topic, Key: src.Key, Value: src.Value, Headers: headers}
}

// RecordOverhead bounds what a record adds to its key, value and headers on the wire
// (lengths, varints, the batch header of a batch of one): Size counts it.
const RecordOverhead = 128

// Size is how many bytes r takes in a produce request, at most: what must fit the
// producer's batch limit and the topic's max.message.bytes.
func Size(r *kgo.Record) int {
	n := len(r.Key) + len(r.Value) + RecordOverhead
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value) + 10
	}
	return n
}

// Truncate cuts r's value so that Size(r) is at most maxBytes, and says so in a
// dlq-truncated-from header with the value's original length. It reports whether it cut
// anything. A truncated dead letter is for people to read; it cannot be requeued.
func Truncate(r *kgo.Record, maxBytes int) bool {
	over := Size(r) + len(HeaderTruncatedFrom) + 20 - maxBytes
	if Size(r) <= maxBytes || over <= 0 {
		return false
	}
	orig := len(r.Value)
	r.Value = r.Value[:max(0, orig-over)]
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderTruncatedFrom, Value: strconv.AppendInt(nil, int64(orig), 10)})
	return true
}
