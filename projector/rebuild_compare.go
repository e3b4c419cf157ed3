package projector

import (
	"context"
	"fmt"
)

// publicColumns are the columns a dry run compares: Dump's.
var publicColumns = map[string]string{
	"facebook_pages": "page_id, name, last_synced_at",
	"conversations": "page_id, psid, thread_id, participant_name, snippet, last_message_at, last_message_mid, " +
		"last_message_direction, message_count, unread_count, read_watermark, delivery_watermark",
	"messages":            "page_id, mid, psid, direction, text, attachments, reactions, edit_count, sent_at",
	"conversation_events": "page_id, event_id, psid, type, occurred_at, data",
}

// TableDiff compares a live table with its rebuild on the public columns (those Dump
// reads). A dry run reports it; the live side may still move while it is measured.
type TableDiff struct {
	Live, Rebuilt int64 // rows
	OnlyLive      int64 // live rows without an identical rebuilt row (missing or different)
	OnlyRebuilt   int64 // rebuilt rows without an identical live row
}

// Equal says whether the two sides hold the same rows.
func (d TableDiff) Equal() bool { return d.OnlyLive == 0 && d.OnlyRebuilt == 0 }

// count returns the rows of each rebuilt table.
func (r *rebuild) count(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	for _, t := range readModelTables {
		var n int64
		if err := r.rpool.QueryRow(ctx, `SELECT count(*) FROM `+ident(r.schema, t)).Scan(&n); err != nil {
			return nil, fmt.Errorf("count %s.%s: %w", r.schema, t, err)
		}
		out[t] = n
	}
	return out, nil
}

// diff compares each rebuilt table with the live one on the public columns.
func (r *rebuild) diff(ctx context.Context) (map[string]TableDiff, error) {
	out := map[string]TableDiff{}
	for _, t := range readModelTables {
		cols := publicColumns[t]
		lt, rt := ident(r.liveSchema, t), ident(r.schema, t)
		var d TableDiff
		err := r.live.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM `+lt+`), (SELECT count(*) FROM `+rt+`),
			(SELECT count(*) FROM (SELECT `+cols+` FROM `+lt+` EXCEPT ALL SELECT `+cols+` FROM `+rt+`) x),
			(SELECT count(*) FROM (SELECT `+cols+` FROM `+rt+` EXCEPT ALL SELECT `+cols+` FROM `+lt+`) y)`,
		).Scan(&d.Live, &d.Rebuilt, &d.OnlyLive, &d.OnlyRebuilt)
		if err != nil {
			return nil, fmt.Errorf("compare %s: %w", t, err)
		}
		out[t] = d
	}
	return out, nil
}
