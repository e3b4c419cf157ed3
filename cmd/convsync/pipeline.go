package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/convsync/convsync/internal/pg"
	"github.com/convsync/convsync/processor"
	"github.com/convsync/convsync/projector"
	"github.com/convsync/convsync/projector/readapi"
	"github.com/convsync/convsync/schemas"
)

// primaryPool is the process's pool on DATABASE_URL, created once and shared by roles.
func (a *app) primaryPool(ctx context.Context) (*pgxpool.Pool, error) {
	if a.primary != nil {
		return a.primary, nil
	}
	pool, err := pg.NewPool(ctx, a.s.PG, a.s.PG.URL)
	if err != nil {
		return nil, err
	}
	a.onClose(pool.Close)
	a.reg.MustRegister(pg.NewCollector("primary", pool))
	if a.srv != nil {
		a.srv.AddCheck("postgres", pool.Ping)
	}
	a.primary = pool
	return pool, nil
}

var processRole = role{
	name:     "processor",
	validate: []func(*settings) error{validateKafka, func(s *settings) error { return s.Processor.Validate() }},
	start: func(ctx context.Context, a *app) error {
		codec, err := schemas.NewCodec()
		if err != nil {
			return err
		}
		p, err := processor.New(a.s.Processor, a.s.Kafka, codec, a.kafkaOpts("processor"), a.reg, a.log)
		if err != nil {
			return err
		}
		a.srv.AddCheck("kafka-processor", p.Ping)
		if err := a.watchLag(a.s.Processor.Group); err != nil {
			return err
		}
		a.g.Go(func() error { return p.Run(ctx) })
		return nil
	},
}

var projectRole = role{
	name: "projector",
	validate: []func(*settings) error{validateKafka, validatePG, func(s *settings) error { return s.Projector.Validate() },
		func(s *settings) error { return s.Cache.Validate() }, validateRefresh},
	start: func(ctx context.Context, a *app) error {
		pool, err := a.primaryPool(ctx)
		if err != nil {
			return err
		}
		c, err := a.openCache(ctx)
		if err != nil {
			return err
		}
		hook := readapi.Hook(c)
		if a.s.API.RefreshMax > 0 {
			r := readapi.NewRefresher(pool, c, a.s.API.DefaultLimit, a.s.API.RefreshMax, a.log)
			a.g.Go(func() error { return r.Run(ctx) })
			hook = r.Hook()
		}
		p, err := projector.New(a.s.Projector, a.s.Kafka, pool, a.kafkaOpts("projector"), hook, a.reg, a.log)
		if err != nil {
			return err
		}
		a.srv.AddCheck("kafka-projector", p.Ping)
		if err := a.watchLag(a.s.Projector.Group); err != nil {
			return err
		}
		a.g.Go(func() error { return p.Run(ctx) })
		return nil
	},
}

// validateRefresh checks what the projector's cache refresh takes from the API's config.
func validateRefresh(s *settings) error {
	switch {
	case s.API.DefaultLimit < 1 || s.API.DefaultLimit > s.API.MaxLimit:
		return fmt.Errorf("API_DEFAULT_LIMIT must be between 1 and API_MAX_LIMIT (%d), got %d", s.API.MaxLimit, s.API.DefaultLimit)
	case s.API.RefreshMax < 0:
		return fmt.Errorf("API_CACHE_REFRESH_MAX must not be negative, got %d", s.API.RefreshMax)
	}
	return nil
}
