package app

import (
	"context"

	"github.com/convsync/convsync/ingest"
	"github.com/convsync/convsync/ingest/backfill"
)

var ingestRole = role{
	name: Ingest,
	validate: []func(*Settings) error{validateKafka, func(s *Settings) error { return s.Ingest.Validate() },
		func(s *Settings) error { return s.Graph.Validate() }, func(s *Settings) error { return s.Backfill.Validate() }},
	start: func(ctx context.Context, a *Process) error {
		cl, err := a.kafkaClient("ingest", ingest.ProducerOpts()...)
		if err != nil {
			return err
		}
		app := ingest.NewKafkaAppender(cl)
		w, err := ingest.New(a.s.Ingest, a.s.Kafka.EventsTopic, app, a.reg, a.log)
		if err != nil {
			return err
		}
		w.Register(a.srv)
		a.srv.AddCheck("kafka", app.Ping)
		// POST /api/conversations/sync-all runs the backfill; it needs API_TOKENS and a
		// database, so it is mounted only when both are set.
		if len(a.s.API.Tokens) > 0 && a.s.PG.URL != "" {
			job, err := a.backfillJob(ctx)
			if err != nil {
				return err
			}
			a.srv.Handle("POST /api/conversations/sync-all", backfill.NewSyncAll(job, a.s.API.Tokens))
		}
		return nil
	},
}
