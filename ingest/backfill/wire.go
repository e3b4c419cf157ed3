package backfill

import (
	"encoding/json"
	"strings"

	"github.com/convsync/convsync/ingest/graph"
	"github.com/convsync/convsync/schemas"
)

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
