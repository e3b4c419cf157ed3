package projector

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Querier is what Dump reads through: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// PageRow, ConversationRow and MessageRow are the read model's public columns, without
// the bookkeeping ones (version, created_at, updated_at): what two projections of the
// same events must agree on.
type PageRow struct {
	PageID       string
	Name         *string
	LastSyncedAt *time.Time
}

// ConversationRow is a conversations row.
type ConversationRow struct {
	PageID, PSID                         string
	ThreadID, ParticipantName, Snippet   *string
	LastMessageAt                        *time.Time
	LastMessageMID, LastMessageDirection *string
	MessageCount, UnreadCount            int
	ReadWatermark, DeliveryWatermark     *time.Time
}

// MessageRow is a messages row; Reactions is the jsonb as a map.
type MessageRow struct {
	PageID, MID, PSID string
	Direction, Text   *string
	Attachments       json.RawMessage
	Reactions         map[string]Reaction
	EditCount         int
	SentAt            *time.Time
}

// Reaction is one user's entry of messages.reactions.
type Reaction struct {
	Action   string    `json:"action"`
	Reaction string    `json:"reaction,omitempty"`
	Emoji    string    `json:"emoji,omitempty"`
	At       time.Time `json:"at"`
}

// EventRow is a conversation_events row (its key).
type EventRow struct {
	PageID, EventID, Type string
}

// Rows is the whole read model, ordered by key.
type Rows struct {
	Pages         []PageRow
	Conversations []ConversationRow
	Messages      []MessageRow
	Events        []EventRow
}

// Dump reads the whole read model in key order, for tests, benchmarks and replay checks.
func Dump(ctx context.Context, q Querier) (Rows, error) {
	var out Rows
	rows, err := q.Query(ctx, `SELECT page_id, name, last_synced_at FROM facebook_pages ORDER BY page_id`)
	if err != nil {
		return out, fmt.Errorf("dump pages: %w", err)
	}
	out.Pages, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (PageRow, error) {
		var p PageRow
		err := r.Scan(&p.PageID, &p.Name, &p.LastSyncedAt)
		return p, err
	})
	if err != nil {
		return out, fmt.Errorf("dump pages: %w", err)
	}
	rows, err = q.Query(ctx, `SELECT page_id, psid, thread_id, participant_name, snippet, last_message_at,
		last_message_mid, last_message_direction, message_count, unread_count, read_watermark, delivery_watermark
		FROM conversations ORDER BY page_id, psid`)
	if err != nil {
		return out, fmt.Errorf("dump conversations: %w", err)
	}
	out.Conversations, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (ConversationRow, error) {
		var c ConversationRow
		err := r.Scan(&c.PageID, &c.PSID, &c.ThreadID, &c.ParticipantName, &c.Snippet, &c.LastMessageAt,
			&c.LastMessageMID, &c.LastMessageDirection, &c.MessageCount, &c.UnreadCount, &c.ReadWatermark, &c.DeliveryWatermark)
		return c, err
	})
	if err != nil {
		return out, fmt.Errorf("dump conversations: %w", err)
	}
	rows, err = q.Query(ctx, `SELECT page_id, mid, psid, direction, text, attachments, reactions, edit_count, sent_at
		FROM messages ORDER BY page_id, mid`)
	if err != nil {
		return out, fmt.Errorf("dump messages: %w", err)
	}
	out.Messages, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (MessageRow, error) {
		var m MessageRow
		var reactions []byte
		if err := r.Scan(&m.PageID, &m.MID, &m.PSID, &m.Direction, &m.Text, &m.Attachments, &reactions, &m.EditCount, &m.SentAt); err != nil {
			return m, err
		}
		if err := json.Unmarshal(reactions, &m.Reactions); err != nil {
			return m, fmt.Errorf("reactions of %s: %w", m.MID, err)
		}
		if len(m.Reactions) == 0 {
			m.Reactions = nil
		}
		return m, nil
	})
	if err != nil {
		return out, fmt.Errorf("dump messages: %w", err)
	}
	rows, err = q.Query(ctx, `SELECT page_id, event_id, type FROM conversation_events ORDER BY page_id, event_id`)
	if err != nil {
		return out, fmt.Errorf("dump events: %w", err)
	}
	out.Events, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (EventRow, error) {
		var e EventRow
		err := r.Scan(&e.PageID, &e.EventID, &e.Type)
		return e, err
	})
	if err != nil {
		return out, fmt.Errorf("dump events: %w", err)
	}
	return out, nil
}
