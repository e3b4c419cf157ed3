package ingest

import (
	"encoding/json"
	"time"

	"github.com/convsync/convsync/schemas"
)

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
