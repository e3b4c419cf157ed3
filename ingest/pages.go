package ingest

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/convsync/convsync/ingest/graph"
)

// ImportPages fills facebook_pages the way real apps do: the user's token lists the
// Pages it manages with their Page tokens (/me/accounts), and each is upserted with its
// token and name. Tokens go straight to Postgres, never into the event log or the logs.
// A name given here yields to the names of later page-synced events. It returns how many
// pages it wrote.
func ImportPages(ctx context.Context, gc *graph.Client, pool *pgxpool.Pool, userToken string) (int, error) {
	n := 0
	for acct, err := range gc.Accounts(ctx, userToken) {
		if err != nil {
			return n, fmt.Errorf("list the user's pages: %w", err)
		}
		if acct.ID == "" || acct.AccessToken == "" {
			continue
		}
		if _, err := pool.Exec(ctx, `INSERT INTO facebook_pages (page_id, name, access_token, updated_at)
			VALUES ($1, NULLIF($2, ''), $3, now())
			ON CONFLICT (page_id) DO UPDATE SET access_token = excluded.access_token,
				name = coalesce(facebook_pages.name, excluded.name), updated_at = now()`,
			acct.ID, acct.Name, acct.AccessToken); err != nil {
			return n, fmt.Errorf("store page %s: %w", acct.ID, err)
		}
		n++
	}
	return n, nil
}
