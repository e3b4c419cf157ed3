package app

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

// primaryPool is the process's pool on DATABASE_URL (or Options.Pool), created once and
// shared by roles.
func (a *Process) primaryPool(ctx context.Context) (*pgxpool.Pool, error) {
	if a.primary != nil {
		return a.primary, nil
	}
	pool := a.o.Pool
	if pool == nil {
		var err error
		if pool, err = pg.NewPool(ctx, a.s.PG, a.s.PG.URL); err != nil {
			return nil, err
		}
		a.onClose(pool.Close)
	}
	a.reg.MustRegister(pg.NewCollector("primary", pool))
	if a.srv != nil {
		a.srv.AddCheck("postgres", pool.Ping)
	}
	a.primary = pool
	return pool, nil
}

var processRole = role{
	name:     Processor,
	validate: []func(*Settings) error{validateKafka, func(s *Settings) error { return s.Processor.Validate() }},
	start: func(ctx context.Context, a *Process) error {
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
	name: Projector,
	validate: []func(*Settings) error{validateKafka, validatePG, func(s *Settings) error { return s.Projector.Validate() },
		func(s *Settings) error { return s.Cache.Validate() }, validateRefresh},
	start: func(ctx context.Context, a *Process) error {
		pool, err := a.primaryPool(ctx)
		if err != nil {
			return err
		}
		if a.o.Hook != nil {
			return a.startProjector(ctx, pool, a.o.Hook)
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
		return a.startProjector(ctx, pool, hook)
	},
}

// startProjector starts the projector on pool, with hook after each commit.
func (a *Process) startProjector(ctx context.Context, pool *pgxpool.Pool, hook projector.Hook) error {
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
}

// validateRefresh checks what the projector's cache refresh takes from the API's config.
func validateRefresh(s *Settings) error {
	switch {
	case s.API.DefaultLimit < 1 || s.API.DefaultLimit > s.API.MaxLimit:
		return fmt.Errorf("API_DEFAULT_LIMIT must be between 1 and API_MAX_LIMIT (%d), got %d", s.API.MaxLimit, s.API.DefaultLimit)
	case s.API.RefreshMax < 0:
		return fmt.Errorf("API_CACHE_REFRESH_MAX must not be negative, got %d", s.API.RefreshMax)
	}
	return nil
}
