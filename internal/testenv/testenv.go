// Package testenv gives integration tests the real services started by deploy/local
// (make services-up): PostgreSQL, Redis and Apache Kafka, found through DATABASE_URL,
// REDIS_URL and KAFKA_BROKERS, or through .local/env when those are not set. With the
// containers backend (CONVSYNC_TESTENV=containers, or by itself where a Docker API
// answers and deploy/local cannot run) the same services are containers started with
// testcontainers-go, once per `go test` run; see containers.go. Each test
// gets its own Postgres schema (migrated), its own Kafka topics and its own Redis key
// prefix, so tests run in parallel and leave nothing behind. Without a service a test
// skips, except under CI (CI set), where it fails: CI can never pass by skipping.
package testenv

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/migrations"
)

var (
	fileOnce sync.Once
	fileEnv  map[string]string
)

// Env returns a service variable: with the containers backend, the URL of the service's
// container (started on first use); otherwise from the environment or from .local/env at
// the repository root.
func Env(name string) string {
	if b, err := Backend(); err == nil && b == "containers" {
		v, _ := containerEnv(name)
		return v
	}
	return localEnv(name)
}

func localEnv(name string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	fileOnce.Do(func() { fileEnv = readLocalEnv() })
	return fileEnv[name]
}

func readLocalEnv() map[string]string {
	out := map[string]string{}
	dir, err := os.Getwd()
	if err != nil {
		return out
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return out
		}
		dir = parent
	}
	f, err := os.Open(filepath.Join(dir, ".local", "env"))
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "export "))
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		out[k] = strings.Trim(v, `'"`)
	}
	return out
}

// need returns the variable or ends the test: a skip locally, a failure under CI. A
// service container that does not start is a failure.
func need(t testing.TB, name string) string {
	t.Helper()
	if useContainers(t) {
		v, err := containerEnv(name)
		if err != nil {
			t.Fatalf("%s from a container: %v", name, err)
		}
		return v
	}
	v := localEnv(name)
	if v == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set and CI is: start the services with `make services-up`", name)
		}
		t.Skipf("%s not set: run `make services-up` for the integration tests", name)
	}
	return v
}

// useContainers reports whether the test's services are containers; a bad
// CONVSYNC_TESTENV fails the test.
func useContainers(t testing.TB) bool {
	t.Helper()
	b, err := Backend()
	if err != nil {
		t.Fatal(err)
	}
	return b == "containers"
}

// ID returns a short random name part.
func ID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Context is a test's context with a deadline, cancelled at cleanup.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// DatabaseURL is the base DATABASE_URL.
func DatabaseURL(t testing.TB) string { return need(t, "DATABASE_URL") }

// Schema creates a fresh schema with the migrations applied and returns a connection
// string whose search_path points at it. The schema is dropped at cleanup.
func Schema(t testing.TB) string {
	t.Helper()
	base := DatabaseURL(t)
	ctx := Context(t, time.Minute)
	admin, err := pgxpool.New(ctx, base)
	if err != nil {
		t.Fatalf("connect to %s: %v", "DATABASE_URL", err)
	}
	t.Cleanup(admin.Close)
	schema := "t_" + ID()
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u := WithSearchPath(t, base, schema)
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatalf("connect with schema %s: %v", schema, err)
	}
	defer pool.Close()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	if _, err := migrations.Up(ctx, db); err != nil {
		t.Fatalf("migrate schema %s: %v", schema, err)
	}
	return u
}

// WithSearchPath returns base with search_path set to schema.
func WithSearchPath(t testing.TB, base, schema string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse DATABASE_URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Postgres returns a pool on a fresh, migrated schema, closed at cleanup.
func Postgres(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	u := Schema(t)
	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 10 // PG_POOL_MAX's default, as the service runs
	pool, err := pgxpool.NewWithConfig(Context(t, time.Minute), cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool, u
}

// KafkaBrokers returns the brokers of KAFKA_BROKERS.
func KafkaBrokers(t testing.TB) []string {
	return strings.Split(need(t, "KAFKA_BROKERS"), ",")
}

// Kafka returns a Kafka configuration with topic names of the test's own, created with
// partitions each and deleted at cleanup.
func Kafka(t testing.TB, partitions int) kafka.Config {
	t.Helper()
	brokers := KafkaBrokers(t)
	id := ID()
	cfg := kafka.Defaults()
	cfg.Brokers = brokers
	cfg.ClientID = "convsync-test"
	cfg.EventsTopic = "test." + id + ".events"
	cfg.DeltasTopic = "test." + id + ".deltas"
	cfg.DLQTopic = "test." + id + ".dlq"
	cfg.Partitions = partitions
	adm := Admin(t, cfg)
	if _, err := kafka.EnsureTopics(Context(t, time.Minute), adm, cfg); err != nil {
		t.Fatalf("create test topics: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = adm.DeleteTopics(ctx, cfg.EventsTopic, cfg.DeltasTopic, cfg.DLQTopic)
	})
	return cfg
}

// Admin returns a kadm client for cfg's brokers, closed at cleanup.
func Admin(t testing.TB, cfg kafka.Config) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(cfg.Opts()...)
	if err != nil {
		t.Fatalf("kafka client: %v", err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// Redis returns a client of REDIS_URL and a key prefix of the test's own; the keys under
// it are deleted at cleanup.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	opts, err := redis.ParseURL(need(t, "REDIS_URL"))
	if err != nil {
		t.Fatalf("parse REDIS_URL: %v", err)
	}
	c := redis.NewClient(opts)
	prefix := "test:" + ID() + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		_ = c.Close()
	})
	return c, prefix
}
