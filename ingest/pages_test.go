package ingest

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/convsync/convsync/ingest/graph"
	"github.com/convsync/convsync/internal/graphsim"
	"github.com/convsync/convsync/internal/testenv"
)

// pages import stores every Page the user's token manages, with its token, and a second
// import updates rather than duplicates.
func TestImportPagesStoresTokensFromMeAccounts(t *testing.T) {
	t.Parallel()
	sim, err := graphsim.New(graphsim.Config{Pages: 3, Conversations: 1, Messages: 1, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	defer srv.Close()
	gcfg := graph.Defaults()
	gcfg.BaseURL, gcfg.Version = srv.URL, sim.Version()
	gc, err := graph.New(gcfg, srv.Client(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	pool, _ := testenv.Postgres(t)
	ctx := testenv.Context(t, time.Minute)
	for range 2 {
		n, err := ImportPages(ctx, gc, pool, "user-token")
		if err != nil || n != 3 {
			t.Fatalf("ImportPages = %d, %v; want 3 pages", n, err)
		}
	}
	for _, p := range sim.Pages() {
		var token string
		if err := pool.QueryRow(context.Background(), `SELECT access_token FROM facebook_pages WHERE page_id = $1`, p.ID).Scan(&token); err != nil || token != p.AccessToken {
			t.Errorf("page %s token stored = %v (err %v), want the page's token", p.ID, token == p.AccessToken, err)
		}
	}
	var count int
	_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM facebook_pages`).Scan(&count)
	if count != 3 {
		t.Errorf("facebook_pages has %d rows after two imports of 3 pages, want 3", count)
	}
}
