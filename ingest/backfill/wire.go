package backfill

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

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
		m, err := decodeMessage(r)
		if err != nil {
			return nil, true, err
		}
		msgs = append(msgs, m)
	}
	return msgs, true, nil
}

type wireParty struct {
	ID   graph.ID `json:"id"`
	Name string   `json:"name"`
}

func decodeMessage(raw json.RawMessage) (graph.Message, error) {
	var v struct {
		ID          graph.ID   `json:"id"`
		CreatedTime graph.Time `json:"created_time"`
		From        wireParty  `json:"from"`
		To          struct {
			Data []wireParty `json:"data"`
		} `json:"to"`
		Message     string `json:"message"`
		Attachments struct {
			Data []struct {
				ID        graph.ID `json:"id"`
				MimeType  string   `json:"mime_type"`
				Name      string   `json:"name"`
				Size      int64    `json:"size"`
				FileURL   string   `json:"file_url"`
				ImageData struct {
					URL        string `json:"url"`
					PreviewURL string `json:"preview_url"`
				} `json:"image_data"`
				VideoData struct {
					URL        string `json:"url"`
					PreviewURL string `json:"preview_url"`
				} `json:"video_data"`
			} `json:"data"`
		} `json:"attachments"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return graph.Message{}, fmt.Errorf("decode message: %w", err)
	}
	m := graph.Message{ID: string(v.ID), CreatedTime: time.Time(v.CreatedTime), Text: v.Message, Raw: raw,
		From: graph.Party{ID: string(v.From.ID), Name: v.From.Name}}
	for _, p := range v.To.Data {
		m.To = append(m.To, graph.Party{ID: string(p.ID), Name: p.Name})
	}
	for _, a := range v.Attachments.Data {
		at := graph.Attachment{ID: string(a.ID), MimeType: a.MimeType, Name: a.Name, Size: a.Size,
			URL: a.ImageData.URL, PreviewURL: a.ImageData.PreviewURL}
		if at.URL == "" {
			at.URL, at.PreviewURL = a.VideoData.URL, a.VideoData.PreviewURL
		}
		if at.URL == "" {
			at.URL = a.FileURL
		}
		m.Attachments = append(m.Attachments, at)
	}
	return m, nil
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
