package app

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/convsync/convsync/internal/cache"
	"github.com/convsync/convsync/internal/pg"
	"github.com/convsync/convsync/projector/readapi"
)

// openCache opens the process's cache once (Redis, or memory) and makes the projector's
// hook maintain it.
func (a *Process) openCache(ctx context.Context) (*cache.Cache, error) {
	if a.cache != nil {
		return a.cache, nil
	}
	c, closeFn, err := cache.Open(ctx, a.s.Cache, a.reg, a.log)
	if err != nil {
		return nil, err
	}
	a.onClose(closeFn)
	a.g.Go(func() error { return c.Run(ctx) })
	a.srv.AddCheck(c.Kind(), c.Ping) // "redis" or "memory"
	a.cache = c
	return c, nil
}

// readPool is the pool the read API queries: DATABASE_READ_URL (a replica) when set.
func (a *Process) readPool(ctx context.Context) (*pgxpool.Pool, error) {
	if a.s.PG.ReadURL == "" {
		return a.primaryPool(ctx)
	}
	pool, err := pg.NewPool(ctx, a.s.PG, a.s.PG.ReadURL)
	if err != nil {
		return nil, err
	}
	a.onClose(pool.Close)
	a.reg.MustRegister(pg.NewCollector("read", pool))
	a.srv.AddCheck("postgres-read", pool.Ping)
	return pool, nil
}

var apiRole = role{
	name: API,
	validate: []func(*Settings) error{validatePG,
		func(s *Settings) error { return s.Cache.Validate() },
		func(s *Settings) error { return s.API.Validate() }},
	start: func(ctx context.Context, a *Process) error {
		c, err := a.openCache(ctx)
		if err != nil {
			return err
		}
		pool, err := a.readPool(ctx)
		if err != nil {
			return err
		}
		api, err := readapi.New(a.s.API, pool, c, a.reg, a.log)
		if err != nil {
			return err
		}
		api.Register(a.srv)
		return nil
	},
}
