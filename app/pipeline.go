package app

import (
	"context"

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
		func(s *Settings) error { return s.Cache.Validate() }},
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
		// Markers only: the read API keeps what it reads warm itself (cache.Config.WarmKeys),
		// so cache upkeep costs the commit path one round trip to the store.
		return a.startProjector(ctx, pool, readapi.Hook(c))
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
