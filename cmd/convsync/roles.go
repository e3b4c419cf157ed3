package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/convsync/convsync/internal/cache"
	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/logging"
	"github.com/convsync/convsync/internal/server"
)

// app is what every role shares in one process: configuration, logger, metrics registry,
// the HTTP listener, and the errgroup that runs the roles.
type app struct {
	s   *settings
	log *slog.Logger
	reg *prometheus.Registry
	srv *server.Server
	g   *errgroup.Group
	// primary is the pool on DATABASE_URL, once a role needed it.
	primary *pgxpool.Pool
	// cache is the process's cache, once a role needed it.
	cache *cache.Cache
	// lag reports the consumer lag of the groups of the process's roles.
	lag *kafka.LagCollector
	// closers run in reverse order of creation after every role has returned.
	closers []func()
}

func (a *app) onClose(f func()) { a.closers = append(a.closers, f) }

// close runs the closers in reverse order of creation.
func (a *app) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// nopRegistry is a registry for commands that serve no /metrics.
func nopRegistry() *prometheus.Registry { return prometheus.NewRegistry() }

// role wires one role into the app: it builds its components and adds their Run to a.g.
type role struct {
	name     string
	validate []func(*settings) error
	start    func(ctx context.Context, a *app) error
}

// allRoles are the roles `convsync all` runs, in start order.
func allRoles() []role { return []role{ingestRole, processRole, projectRole, apiRole} }

func runRoles(ctx context.Context, name string, args []string, roles ...role) error {
	var validate []func(*settings) error
	for _, r := range roles {
		validate = append(validate, r.validate...)
	}
	s, err := parse(name, args, validate...)
	if err != nil {
		return err
	}
	log, err := logging.New(s.Log, os.Stderr)
	if err != nil {
		return err
	}
	redis.SetLogger(redisLog{log}) // go-redis's own messages (dial retries) at debug
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := server.New(s.HTTP, reg, log)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	a := &app{s: s, log: log, reg: reg, srv: srv, g: g}
	if !slices.ContainsFunc(roles, func(r role) bool { return r.name == apiRole.name }) {
		// Only the read API reads the cache: a process without it keeps no near copy
		// (and does not subscribe to the marker channel for one).
		a.s.Cache.NearTTL = 0
	}
	defer a.close()
	for _, r := range roles {
		if err := r.start(gctx, a); err != nil {
			return fmt.Errorf("start %s: %w", r.name, err)
		}
	}
	g.Go(func() error { return srv.Run(gctx) })
	names := make([]string, 0, len(roles))
	for _, r := range roles {
		names = append(names, r.name)
	}
	log.Info("convsync started", "command", name, "roles", names, "http_addr", s.HTTP.Addr)
	return g.Wait()
}

// redisLog routes go-redis's internal log lines to slog at debug level.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}
