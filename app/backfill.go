package app

import (
	"context"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/convsync/convsync/ingest"
	"github.com/convsync/convsync/ingest/backfill"
	"github.com/convsync/convsync/ingest/graph"
)

// Backfill runs `convsync backfill` over pages (with none, every page with a token): the
// job the ingest role serves at POST /api/conversations/sync-all, built the same way. It
// reports on progress and serves no /metrics.
func Backfill(ctx context.Context, s *Settings, log *slog.Logger, pages []string, progress io.Writer) error {
	a := &Process{s: s, log: log, reg: prometheus.NewRegistry()}
	defer a.close()
	job, err := a.backfillJob(ctx)
	if err != nil {
		return err
	}
	_, err = job.Run(ctx, pages, progress)
	return err
}

// backfillJob builds the backfill job of the process: a Graph client, the primary pool
// and a Kafka appender.
func (a *Process) backfillJob(ctx context.Context) (*backfill.Job, error) {
	gc, err := graph.New(a.s.Graph, nil, a.reg, a.log)
	if err != nil {
		return nil, err
	}
	pool, err := a.primaryPool(ctx)
	if err != nil {
		return nil, err
	}
	cl, err := a.kafkaClient("backfill", ingest.ProducerOpts()...)
	if err != nil {
		return nil, err
	}
	return backfill.New(a.s.Backfill, gc, pool, ingest.NewKafkaAppender(cl), a.s.Kafka.EventsTopic, a.reg, a.log)
}
