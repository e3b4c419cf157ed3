package migrations_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/migrations"
)

// The column names are a public interface: people query the read model with SQL. This
// test pins them; a rename or removal fails it.
var wantColumns = map[string][]string{
	"facebook_pages": {"page_id", "name", "access_token", "last_synced_at", "version", "created_at", "updated_at"},
	"conversations": {"page_id", "psid", "thread_id", "participant_name", "snippet", "last_message_at",
		"last_message_mid", "last_message_direction", "message_count", "unread_count", "read_watermark",
		"delivery_watermark", "version", "created_at", "updated_at"},
	"messages": {"page_id", "mid", "psid", "direction", "text", "attachments", "reactions", "edit_count",
		"sent_at", "version", "created_at", "updated_at"},
	"projector_offsets": {"consumer_group", "topic", "partition", "next_offset", "updated_at"},
}

func TestUpTwiceIsHarmlessAndBuildsTheReadModel(t *testing.T) {
	t.Parallel()
	u := testenv.Schema(t) // applies the migrations once
	ctx := testenv.Context(t, time.Minute)
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()

	applied, err := migrations.Up(ctx, db)
	if err != nil {
		t.Fatalf("second Up() error = %v, want nil", err)
	}
	if len(applied) != 0 {
		t.Errorf("second Up() applied %v, want nothing", applied)
	}
	list, err := migrations.List(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) == 0 {
		t.Fatal("List() = empty, want the embedded migrations")
	}
	for _, m := range list {
		if !m.Applied {
			t.Errorf("migration %d %s is pending after Up()", m.Version, m.Name)
		}
	}

	for table, want := range wantColumns {
		rows, err := pool.Query(ctx, `SELECT column_name FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = $1`, table)
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				t.Fatal(err)
			}
			have[c] = true
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		var missing []string
		for _, c := range want {
			if !have[c] {
				missing = append(missing, c)
			}
		}
		if diff := cmp.Diff([]string(nil), missing); diff != "" {
			t.Errorf("table %s lacks public columns (-want +got):\n%s", table, diff)
		}
	}

	// The inbox index exists: a page's conversations newest first.
	var idx int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_indexes
		WHERE schemaname = current_schema() AND indexname IN ('conversations_inbox_idx', 'facebook_pages_last_synced_at_idx')`).Scan(&idx); err != nil {
		t.Fatal(err)
	}
	if idx != 2 {
		t.Errorf("found %d of the inbox and last_synced_at indexes, want 2", idx)
	}
}
