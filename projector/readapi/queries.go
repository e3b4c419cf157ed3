package readapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/convsync/convsync/internal/cache"
)

// Page is the public view of a facebook_pages row: never its token.
type Page struct {
	PageID            string     `json:"page_id"`
	Name              *string    `json:"name"`
	LastSyncedAt      *time.Time `json:"last_synced_at"`
	ConversationCount int64      `json:"conversation_count"`
	MessageCount      int64      `json:"message_count"`
	UnreadCount       int64      `json:"unread_count"`
	Version           int64      `json:"version"`
}

// Conversation is the public view of a conversations row.
type Conversation struct {
	PSID                 string     `json:"psid"`
	ThreadID             *string    `json:"thread_id"`
	ParticipantName      *string    `json:"participant_name"`
	Snippet              *string    `json:"snippet"`
	LastMessageAt        *time.Time `json:"last_message_at"`
	LastMessageMID       *string    `json:"last_message_mid"`
	LastMessageDirection *string    `json:"last_message_direction"`
	MessageCount         int        `json:"message_count"`
	UnreadCount          int        `json:"unread_count"`
	ReadWatermark        *time.Time `json:"read_watermark"`
	DeliveryWatermark    *time.Time `json:"delivery_watermark"`
	UpdatedAt            time.Time  `json:"updated_at"`
	Version              int64      `json:"version"`
}

// Message is the public view of a messages row.
type Message struct {
	MID         string          `json:"mid"`
	Direction   *string         `json:"direction"`
	Text        *string         `json:"text"`
	Attachments json.RawMessage `json:"attachments"`
	Reactions   json.RawMessage `json:"reactions"`
	EditCount   int             `json:"edit_count"`
	SentAt      *time.Time      `json:"sent_at"`
}

// ConversationList is one page of a page's inbox.
type ConversationList struct {
	Data   []Conversation `json:"data"`
	Paging Paging         `json:"paging"`
}

// ConversationDetail is a conversation with its messages, newest first.
type ConversationDetail struct {
	Conversation Conversation `json:"conversation"`
	Messages     []Message    `json:"messages"`
	Paging       Paging       `json:"paging"`
}

// Paging holds the cursor of the next (older) page; empty at the end.
type Paging struct {
	Next string `json:"next_cursor,omitempty"`
}

// errNotFound is an unknown page or conversation.
var errNotFound = errors.New("not found")

// store reads the read model. Each read is one snapshot (a repeatable-read, read-only
// transaction) so the version returned is the version of exactly these rows.
type store struct{ pool *pgxpool.Pool }

func (s store) snapshot(ctx context.Context, f func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, f)
}

// pageVersion is the page's version as committed now: what the cache checks a page's
// entries (the page, its lists) against. Every batch that touches a page raises it.
func (s store) pageVersion(pageID string) cache.Current {
	return func(ctx context.Context) (int64, error) {
		var v int64
		err := s.pool.QueryRow(ctx, `SELECT version FROM facebook_pages WHERE page_id = $1`, pageID).Scan(&v)
		return v, err
	}
}

// conversationVersion is the conversation's version as committed now: what the cache
// checks its entries against.
func (s store) conversationVersion(pageID, psid string) cache.Current {
	return func(ctx context.Context) (int64, error) {
		var v int64
		err := s.pool.QueryRow(ctx, `SELECT version FROM conversations WHERE page_id = $1 AND psid = $2`, pageID, psid).Scan(&v)
		return v, err
	}
}

func (s store) page(ctx context.Context, pageID string) (Page, error) {
	var p Page
	err := s.snapshot(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT page_id, name, last_synced_at, version FROM facebook_pages WHERE page_id = $1`, pageID).
			Scan(&p.PageID, &p.Name, &p.LastSyncedAt, &p.Version)
		if errors.Is(err, pgx.ErrNoRows) {
			return errNotFound
		}
		if err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT count(*), coalesce(sum(message_count), 0), coalesce(sum(unread_count), 0)
			FROM conversations WHERE page_id = $1`, pageID).Scan(&p.ConversationCount, &p.MessageCount, &p.UnreadCount)
	})
	if err != nil && !errors.Is(err, errNotFound) {
		return p, fmt.Errorf("read page %s: %w", pageID, err)
	}
	return p, err
}

const convColumns = `psid, thread_id, participant_name, snippet, last_message_at, last_message_mid,
	last_message_direction, message_count, unread_count, read_watermark, delivery_watermark, updated_at, version`

func scanConversation(r pgx.Row, c *Conversation) error {
	return r.Scan(&c.PSID, &c.ThreadID, &c.ParticipantName, &c.Snippet, &c.LastMessageAt, &c.LastMessageMID,
		&c.LastMessageDirection, &c.MessageCount, &c.UnreadCount, &c.ReadWatermark, &c.DeliveryWatermark, &c.UpdatedAt, &c.Version)
}

// conversations lists a page's inbox newest first: (last_message_at DESC NULLS LAST,
// psid DESC), the order of conversations_inbox_idx. It returns the page's version.
func (s store) conversations(ctx context.Context, pageID string, after *listCursor, limit int) (ConversationList, int64, error) {
	var out ConversationList
	var version int64
	err := s.snapshot(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT version FROM facebook_pages WHERE page_id = $1`, pageID).Scan(&version)
		if errors.Is(err, pgx.ErrNoRows) {
			return errNotFound
		}
		if err != nil {
			return err
		}
		var rows pgx.Rows
		switch {
		case after == nil:
			rows, err = tx.Query(ctx, `SELECT `+convColumns+` FROM conversations WHERE page_id = $1
				ORDER BY last_message_at DESC NULLS LAST, psid DESC LIMIT $2`, pageID, limit+1)
		case after.At == nil: // past every conversation with messages
			rows, err = tx.Query(ctx, `SELECT `+convColumns+` FROM conversations
				WHERE page_id = $1 AND last_message_at IS NULL AND psid < $2
				ORDER BY last_message_at DESC NULLS LAST, psid DESC LIMIT $3`, pageID, after.PSID, limit+1)
		default:
			rows, err = tx.Query(ctx, `SELECT `+convColumns+` FROM conversations
				WHERE page_id = $1 AND (last_message_at < $2 OR (last_message_at = $2 AND psid < $3) OR last_message_at IS NULL)
				ORDER BY last_message_at DESC NULLS LAST, psid DESC LIMIT $4`, pageID, *after.At, after.PSID, limit+1)
		}
		if err != nil {
			return err
		}
		out.Data, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Conversation, error) {
			var c Conversation
			return c, scanConversation(r, &c)
		})
		return err
	})
	if err != nil {
		if errors.Is(err, errNotFound) {
			return out, 0, err
		}
		return out, 0, fmt.Errorf("list conversations of page %s: %w", pageID, err)
	}
	if out.Data == nil {
		out.Data = []Conversation{}
	}
	if len(out.Data) > limit {
		out.Data = out.Data[:limit]
		last := out.Data[limit-1]
		out.Paging.Next = encodeCursor(listCursor{At: last.LastMessageAt, PSID: last.PSID})
	}
	return out, version, nil
}

// conversation reads one conversation and a page of its messages, newest first
// ((sent_at DESC NULLS LAST, mid DESC)); the version is the conversation's.
func (s store) conversation(ctx context.Context, pageID, psid string, after *msgCursor, limit int) (ConversationDetail, error) {
	var out ConversationDetail
	err := s.snapshot(ctx, func(tx pgx.Tx) error {
		err := scanConversation(tx.QueryRow(ctx, `SELECT `+convColumns+` FROM conversations WHERE page_id = $1 AND psid = $2`, pageID, psid), &out.Conversation)
		if errors.Is(err, pgx.ErrNoRows) {
			return errNotFound
		}
		if err != nil {
			return err
		}
		const cols = `mid, direction, text, attachments, reactions, edit_count, sent_at`
		var rows pgx.Rows
		switch {
		case after == nil:
			rows, err = tx.Query(ctx, `SELECT `+cols+` FROM messages WHERE page_id = $1 AND psid = $2
				ORDER BY sent_at DESC NULLS LAST, mid DESC LIMIT $3`, pageID, psid, limit+1)
		case after.At == nil:
			rows, err = tx.Query(ctx, `SELECT `+cols+` FROM messages WHERE page_id = $1 AND psid = $2
				AND sent_at IS NULL AND mid < $3 ORDER BY sent_at DESC NULLS LAST, mid DESC LIMIT $4`, pageID, psid, after.MID, limit+1)
		default:
			rows, err = tx.Query(ctx, `SELECT `+cols+` FROM messages WHERE page_id = $1 AND psid = $2
				AND (sent_at < $3 OR (sent_at = $3 AND mid < $4) OR sent_at IS NULL)
				ORDER BY sent_at DESC NULLS LAST, mid DESC LIMIT $5`, pageID, psid, *after.At, after.MID, limit+1)
		}
		if err != nil {
			return err
		}
		out.Messages, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Message, error) {
			var m Message
			err := r.Scan(&m.MID, &m.Direction, &m.Text, &m.Attachments, &m.Reactions, &m.EditCount, &m.SentAt)
			return m, err
		})
		return err
	})
	if err != nil {
		if errors.Is(err, errNotFound) {
			return out, err
		}
		return out, fmt.Errorf("read conversation %s/%s: %w", pageID, psid, err)
	}
	if out.Messages == nil {
		out.Messages = []Message{}
	}
	if len(out.Messages) > limit {
		out.Messages = out.Messages[:limit]
		last := out.Messages[limit-1]
		out.Paging.Next = encodeCursor(msgCursor{At: last.SentAt, MID: last.MID})
	}
	return out, nil
}
