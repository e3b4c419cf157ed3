// Package app assembles convsync's roles into a process; cmd/convsync is its command
// line.
//
// In come the settings (flags and environment variables through Parse, or built by a
// test) and the roles to run: ingest, processor, projector, api. Out comes one process:
// each role's components with their Kafka, Postgres and cache clients, their routes and
// readiness checks on one HTTP listener that also serves /metrics, and one errgroup that
// runs them until the context ends. This is the only assembly: the binary (Run) and the
// tests and benchmarks that start roles in process (Start, through pipelinetest) go
// through the same start functions, so what they measure is what the binary runs. It is
// the one package that imports every stage; no stage and nothing in internal/ imports it
// (TestStagesMeetOnlyThroughSchemas).
package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/convsync/convsync/internal/cache"
	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/logging"
	"github.com/convsync/convsync/internal/server"
	"github.com/convsync/convsync/projector"
)

// Role is a role a process can run; its value is the name the logs give it.
type Role string

// The roles, in the order `convsync all` starts them.
const (
	Ingest    Role = "ingest"    // Meta webhooks to the event log; the backfill's sync-all endpoint
	Processor Role = "processor" // events to per-page deltas, in Kafka transactions
	Projector Role = "projector" // deltas to the Postgres read model, raising cache markers
	API       Role = "api"       // the read API over the read model and the cache
)

// AllRoles are the roles `convsync all` runs, in start order.
func AllRoles() []Role { return []Role{Ingest, Processor, Projector, API} }

// role wires one role into the process: it builds its components and adds their Run to
// a.g.
type role struct {
	name     Role
	validate []func(*Settings) error
	start    func(ctx context.Context, a *Process) error
}

// wirings returns the wiring of each of roles, in their order.
func wirings(roles []Role) ([]role, error) {
	all := []role{ingestRole, processRole, projectRole, apiRole}
	out := make([]role, 0, len(roles))
	for _, name := range roles {
		i := slices.IndexFunc(all, func(r role) bool { return r.name == name })
		if i < 0 {
			return nil, fmt.Errorf("unknown role %q", name)
		}
		out = append(out, all[i])
	}
	return out, nil
}

// validations are what roles need of the settings, in their order.
func validations(roles []role) []func(*Settings) error {
	var validate []func(*Settings) error
	for _, r := range roles {
		validate = append(validate, r.validate...)
	}
	return validate
}

// Options put a test's own things in place of what the roles would build. The zero
// value is the binary's: everything built from the settings.
type Options struct {
	// Registry receives the process's metrics, for the test to read; a registry of the
	// process's own (nothing else may register the Go and process collectors on it).
	// Nil: a new one.
	Registry *prometheus.Registry
	// Pool is the primary pool, used in place of one opened on DATABASE_URL (PG_POOL_MAX
	// and PG_EXEC_MODE are then the pool's own); the caller closes it. Tests reach
	// Postgres through a proxy or a transaction pooler with it.
	Pool *pgxpool.Pool
	// Hook is the projector's cache hook in place of the one the projector role builds:
	// the role then opens no cache and starts no refresher. Tests that keep a cache of
	// their own, behind their own read API, set it.
	Hook projector.Hook
}

// Process is what every role of one process shares: configuration, logger, metrics
// registry, the HTTP listener, and the errgroup that runs the roles.
type Process struct {
	s   *Settings
	log *slog.Logger
	reg *prometheus.Registry
	srv *server.Server
	g   *errgroup.Group
	o   Options
	// primary is the pool on DATABASE_URL (or Options.Pool), once a role needed it.
	primary *pgxpool.Pool
	// cache is the process's cache, once a role needed it.
	cache *cache.Cache
	// lag reports the consumer lag of the groups of the process's roles.
	lag *kafka.LagCollector
	// closers run in reverse order of creation after every role has returned.
	closers []func()

	cancel context.CancelFunc // ends the roles' context
	done   <-chan struct{}    // closed when the roles' context ends
	once   sync.Once          // Wait's
	err    error              // the first error of a role, once Wait returned
}

func (a *Process) onClose(f func()) { a.closers = append(a.closers, f) }

// close runs the closers in reverse order of creation.
func (a *Process) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// Run is `convsync name` running roles: it parses args over the environment, starts the
// roles in one process, and returns when ctx ends and every role has returned, or when
// one fails.
func Run(ctx context.Context, name string, args []string, roles ...Role) error {
	ws, err := wirings(roles)
	if err != nil {
		return err
	}
	s, err := Parse(name, args, validations(ws)...)
	if err != nil {
		return err
	}
	log, err := logging.New(s.Log, os.Stderr)
	if err != nil {
		return err
	}
	redis.SetLogger(redisLog{log}) // go-redis's own messages (dial retries) at debug
	a, err := start(ctx, s, log, Options{}, ws)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(ws))
	for _, r := range ws {
		names = append(names, string(r.name))
	}
	log.Info("convsync started", "command", name, "roles", names, "http_addr", s.HTTP.Addr)
	return a.Wait()
}

// Start starts roles in this process with settings s as Run does once it has parsed
// them: the same components, clients, checks and metrics, s validated the same way. It
// returns once every role is started; they run until ctx ends or one fails, and Wait
// waits for them. Unlike Run it leaves go-redis's global logger alone.
func Start(ctx context.Context, s *Settings, log *slog.Logger, o Options, roles ...Role) (*Process, error) {
	ws, err := wirings(roles)
	if err != nil {
		return nil, err
	}
	if err := check(s, validations(ws)); err != nil {
		return nil, err
	}
	return start(ctx, s, log, o, ws)
}

// start builds the process and starts each role, then the HTTP listener. A role that
// fails to start stops those started before it.
func start(ctx context.Context, s *Settings, log *slog.Logger, o Options, roles []role) (*Process, error) {
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := server.New(s.HTTP, reg, log)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(ctx)
	own := *s // the roles adjust the process's copy
	a := &Process{s: &own, log: log, reg: reg, srv: srv, g: g, o: o, cancel: cancel, done: gctx.Done()}
	if slices.ContainsFunc(roles, func(r role) bool { return r.name == API }) {
		// The read API keeps the entries it serves warm (internal/cache/warm.go).
		a.s.Cache.WarmKeys = a.s.API.RefreshMax
	} else {
		// Only the read API reads the cache: a process without it keeps no near copy or
		// warm entries (and does not subscribe to the marker channel for them).
		a.s.Cache.NearTTL, a.s.Cache.WarmKeys = 0, 0
	}
	for _, r := range roles {
		if err := r.start(gctx, a); err != nil {
			cancel()
			_ = a.Wait()
			return nil, fmt.Errorf("start %s: %w", r.name, err)
		}
	}
	g.Go(func() error { return srv.Run(gctx) })
	return a, nil
}

// Wait waits until every role has returned (ctx ended, or one failed), closes the
// clients in reverse order of creation, and returns the first error of a role.
func (a *Process) Wait() error {
	a.once.Do(func() {
		a.err = a.g.Wait()
		a.cancel()
		a.close()
	})
	return a.err
}

// Addr is the address the HTTP listener listens on (with its port when HTTP_ADDR asked
// for port 0), once it does; "" when the process ended before it listened.
func (a *Process) Addr() string {
	select {
	case <-a.srv.Ready():
		return a.srv.Addr()
	case <-a.done:
	}
	select {
	case <-a.srv.Ready():
		return a.srv.Addr()
	default:
		return ""
	}
}

// redisLog routes go-redis's internal log lines to slog at debug level.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}
