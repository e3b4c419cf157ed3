package backfill

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/convsync/convsync/ingest/graph"
	"github.com/convsync/convsync/schemas"
)

// Graph's time layout: an offset without a colon, which time.RFC3339 rejects.

// expandedMessages decodes the messages field expansion of a conversation as the graph
// client keeps it raw; expanded is false when the field is absent.
func expandedMessages(raw json.RawMessage) (msgs []graph.Message, expanded bool, err error) {
	var v struct {
		Messages *struct {
			Data []json.RawMessage `json:"data"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, false, fmt.Errorf("decode conversation: %w", err)
	}
	if v.Messages == nil {
		return nil, false, nil
	}
	for _, r := range v.Messages.Data {
		m, err := graph.DecodeMessage(r)
		if err != nil {
			return nil, true, err
		}
		msgs = append(msgs, m)
	}
	return msgs, true, nil
}

// attachment maps a Graph attachment onto the webhook's shape: a type from the MIME
// type, and a payload with the URL as webhooks carry it.
func attachment(a graph.Attachment) schemas.Attachment {
	typ := "file"
	switch {
	case strings.HasPrefix(a.MimeType, "image/"):
		typ = "image"
	case strings.HasPrefix(a.MimeType, "video/"):
		typ = "video"
	case strings.HasPrefix(a.MimeType, "audio/"):
		typ = "audio"
	}
	out := schemas.Attachment{Type: typ, URL: a.URL, Title: a.Name}
	if a.URL != "" {
		if b, err := json.Marshal(map[string]string{"url": a.URL}); err == nil {
			out.Payload = b
		}
	}
	return out
}
