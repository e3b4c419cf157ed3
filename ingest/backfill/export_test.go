package backfill

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/convsync/convsync/internal/kafka"
)

// StartPipeline runs the processor and the projector on kc and pool until ctx ends and
// returns a func that waits for them: pipelinetest.Pipeline, set by pipeline_test.go.
// pipelinetest starts the roles through package app, which imports this package, so
// only this package's external tests may import it.
var StartPipeline func(t *testing.T, ctx context.Context, kc kafka.Config, pool *pgxpool.Pool) func()
