package main

import (
	"context"

	"github.com/convsync/convsync/ingest"
)

var ingestRole = role{
	name:     "ingest",
	validate: []func(*settings) error{validateKafka, func(s *settings) error { return s.Ingest.Validate() }},
	start: func(ctx context.Context, a *app) error {
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
		return nil
	},
}
