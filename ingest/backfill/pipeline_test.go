package backfill_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/convsync/convsync/ingest/backfill"
	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/pipelinetest"
)

// TestMain gives the package's tests their pipeline (see StartPipeline).
func TestMain(m *testing.M) {
	backfill.StartPipeline = func(t *testing.T, ctx context.Context, kc kafka.Config, pool *pgxpool.Pool) func() {
		return pipelinetest.Pipeline(t, ctx, kc, pool, prometheus.NewRegistry(), prometheus.NewRegistry(), nil)
	}
	os.Exit(m.Run())
}
