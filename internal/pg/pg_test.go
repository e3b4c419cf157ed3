package pg_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/convsync/convsync/internal/pg"
	"github.com/convsync/convsync/internal/testenv"
)

func TestValidateNamesTheVariable(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*pg.Config)
		want   string
	}{
		{"no url", func(c *pg.Config) { c.URL = "" }, "DATABASE_URL"},
		{"bad read url", func(c *pg.Config) { c.ReadURL = "postgres://a:secretpw@[::1" }, "DATABASE_READ_URL"},
		{"pool max", func(c *pg.Config) { c.PoolMax = 0 }, "SUPABASE_POOL_MAX"},
		{"pool min", func(c *pg.Config) { c.PoolMin = 50 }, "PG_POOL_MIN"},
		{"exec mode", func(c *pg.Config) { c.ExecMode = "fast" }, "PG_EXEC_MODE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := pg.Defaults()
			c.URL = "postgres://u@127.0.0.1:5432/db"
			tt.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "secretpw") {
				t.Errorf("Validate() = %v, which leaks the password", err)
			}
		})
	}
}

func TestCollectorReportsPoolState(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t, time.Minute)
	c := pg.Defaults()
	c.URL = testenv.DatabaseURL(t)
	c.PoolMax, c.PoolMin = 4, 0
	pool, err := pg.NewPool(ctx, c, c.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	reg := prometheus.NewRegistry()
	reg.MustRegister(pg.NewCollector("primary", pool))

	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := `
# HELP convsync_pg_pool_max_connections The pool's maximum size (PG_POOL_MAX).
# TYPE convsync_pg_pool_max_connections gauge
convsync_pg_pool_max_connections{pool="primary"} 4
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "convsync_pg_pool_max_connections"); err != nil {
		t.Error(err)
	}
	acquired := testutil.ToFloat64(gaugeOf(t, reg, "acquired"))
	conn.Release()
	if acquired != 1 {
		t.Errorf("acquired connections while one is held = %v, want 1", acquired)
	}
	if got := testutil.ToFloat64(gaugeOf(t, reg, "acquired")); got != 0 {
		t.Errorf("acquired connections after release = %v, want 0", got)
	}
}

// gaugeOf returns a collector of the one convsync_pg_pool_connections sample with state.
func gaugeOf(t *testing.T, reg *prometheus.Registry, state string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "convsync_pg_pool_connections" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "state" && l.GetValue() == state {
					g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x", Help: "x"})
					g.Set(m.GetGauge().GetValue())
					return g
				}
			}
		}
	}
	t.Fatalf("no convsync_pg_pool_connections{state=%q}", state)
	return nil
}
