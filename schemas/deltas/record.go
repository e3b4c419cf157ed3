package deltas

import (
	_ "embed"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/schemas"
)

// Headers of every delta record.
const (
	HeaderContentType = "content-type"   // ContentType
	HeaderVersion     = "convsync-delta" // the Delta format version, Version
	ContentType       = "application/json"
	Version           = "v1"
)

// ErrNoPage is the error of a delta value without a page id.
var ErrNoPage = errors.New("delta without page_id")

// Headers returns the headers of a delta record, new for each record.
func Headers() []kgo.RecordHeader {
	return []kgo.RecordHeader{
		{Key: HeaderContentType, Value: []byte(ContentType)},
		{Key: HeaderVersion, Value: []byte(Version)},
	}
}

// Encode returns the record value of d.
func Encode(d Delta) ([]byte, error) {
	b, err := schemas.JSON.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode delta page %s: %w", d.PageID, err)
	}
	return b, nil
}

// Decode reads a record value. A value that is not a delta's JSON, or has no page id, is
// an error: the reader dead-letters it.
func Decode(b []byte) (Delta, error) {
	var d Delta
	if err := schemas.JSON.Unmarshal(b, &d); err != nil {
		return Delta{}, fmt.Errorf("decode delta: %w", err)
	}
	if d.PageID == "" {
		return Delta{}, ErrNoPage
	}
	return d, nil
}

// SchemaJSON is the JSON Schema (draft 2020-12) of a record value,
// json/convsync.deltas.v1.json, for consumers that validate what they read.
//
//go:embed json/convsync.deltas.v1.json
var SchemaJSON []byte
