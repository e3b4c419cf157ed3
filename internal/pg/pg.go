// Package pg builds pgx connection pools from configuration and exposes their state as
// scrape-time Prometheus metrics. The pools work behind a transaction-mode pooler
// (PgBouncer, Supabase's): no session state is kept across transactions, and the
// statement mode is configurable for poolers that do not support prepared statements.
package pg

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config is the Postgres connection configuration.
type Config struct {
	URL     string // DATABASE_URL: the primary, for writes and migrations
	ReadURL string // DATABASE_READ_URL: a replica for reads; empty means URL
	PoolMax int    // PG_POOL_MAX (alias SUPABASE_POOL_MAX)
	PoolMin int    // PG_POOL_MIN (alias SUPABASE_POOL_MIN)
	// ExecMode is how statements are sent: "cache_statement" (prepared, cached; the
	// fastest), "cache_describe", "describe_exec", "exec" or "simple_protocol" (for
	// transaction poolers without prepared statement support).
	ExecMode string // PG_EXEC_MODE
}

// Defaults returns the configuration used when nothing is set.
func Defaults() Config {
	return Config{PoolMax: 10, PoolMin: 2, ExecMode: "cache_statement"}
}

var execModes = map[string]pgx.QueryExecMode{
	"cache_statement": pgx.QueryExecModeCacheStatement,
	"cache_describe":  pgx.QueryExecModeCacheDescribe,
	"describe_exec":   pgx.QueryExecModeDescribeExec,
	"exec":            pgx.QueryExecModeExec,
	"simple_protocol": pgx.QueryExecModeSimpleProtocol,
}

// Validate reports the first invalid value, naming its variable.
func (c Config) Validate() error {
	if c.URL == "" {
		return errors.New("DATABASE_URL is required")
	}
	if _, err := pgxpool.ParseConfig(c.URL); err != nil {
		return fmt.Errorf("DATABASE_URL does not parse: %w", redact(err))
	}
	if c.ReadURL != "" {
		if _, err := pgxpool.ParseConfig(c.ReadURL); err != nil {
			return fmt.Errorf("DATABASE_READ_URL does not parse: %w", redact(err))
		}
	}
	if c.PoolMax < 1 {
		return fmt.Errorf("PG_POOL_MAX (or SUPABASE_POOL_MAX) must be at least 1, got %d", c.PoolMax)
	}
	if c.PoolMin < 0 || c.PoolMin > c.PoolMax {
		return fmt.Errorf("PG_POOL_MIN (or SUPABASE_POOL_MIN) must be between 0 and PG_POOL_MAX (%d), got %d", c.PoolMax, c.PoolMin)
	}
	if _, ok := execModes[c.ExecMode]; !ok {
		return fmt.Errorf("PG_EXEC_MODE must be one of cache_statement, cache_describe, describe_exec, exec, simple_protocol; got %q", c.ExecMode)
	}
	return nil
}

// redact drops the connection string from a parse error: it may hold a password.
func redact(err error) error {
	msg := err.Error()
	if i := strings.Index(msg, "://"); i >= 0 {
		return errors.New("invalid connection string")
	}
	return errors.New(msg)
}

// PoolConfig builds the pool configuration for url with the sizes and mode of c.
func (c Config) PoolConfig(url string) (*pgxpool.Config, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", redact(err))
	}
	pc.MaxConns = int32(c.PoolMax)
	pc.MinConns = int32(c.PoolMin)
	if m, ok := execModes[c.ExecMode]; ok {
		pc.ConnConfig.DefaultQueryExecMode = m
	}
	return pc, nil
}

// NewPool creates a pool for url. Connections are opened lazily (MinConns in the
// background), so this does not fail when the database is down.
func NewPool(ctx context.Context, c Config, url string) (*pgxpool.Pool, error) {
	pc, err := c.PoolConfig(url)
	if err != nil {
		return nil, err
	}
	p, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("create pool: %w", err)
	}
	return p, nil
}
