package config

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type sample struct {
	Addr    string
	PoolMax int
	TTL     time.Duration
	Brokers []string
	Secret  string
}

func bind(t *testing.T, env map[string]string, args ...string) (sample, error) {
	t.Helper()
	s := sample{Addr: ":8080", PoolMax: 10, TTL: 5 * time.Minute, Brokers: []string{"a:1"}}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	b := NewBinder(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	b.String(&s.Addr, "http-addr", "listen address", "HTTP_ADDR")
	b.Int(&s.PoolMax, "pg-pool-max", "pool size", "PG_POOL_MAX", "SUPABASE_POOL_MAX")
	b.Duration(&s.TTL, "cache-ttl", "ttl", "CACHE_TTL")
	b.Strings(&s.Brokers, "kafka-brokers", "brokers", "KAFKA_BROKERS")
	b.Secret(&s.Secret, "app-secret", "secret", "META_APP_SECRET")
	if err := b.Err(); err != nil {
		return s, err
	}
	return s, fs.Parse(args)
}

func TestBinderPrecedence(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want sample
	}{
		{"defaults", nil, nil, sample{":8080", 10, 5 * time.Minute, []string{"a:1"}, ""}},
		{"env", map[string]string{"HTTP_ADDR": ":9", "PG_POOL_MAX": "20", "CACHE_TTL": "1m", "KAFKA_BROKERS": "x:1, y:2", "META_APP_SECRET": "s"},
			nil, sample{":9", 20, time.Minute, []string{"x:1", "y:2"}, "s"}},
		{"alias", map[string]string{"SUPABASE_POOL_MAX": "7"}, nil, sample{":8080", 7, 5 * time.Minute, []string{"a:1"}, ""}},
		{"new name beats alias", map[string]string{"SUPABASE_POOL_MAX": "7", "PG_POOL_MAX": "8"}, nil, sample{":8080", 8, 5 * time.Minute, []string{"a:1"}, ""}},
		{"flag beats env", map[string]string{"HTTP_ADDR": ":9"}, []string{"--http-addr", ":7", "--kafka-brokers", "z:3"},
			sample{":7", 10, 5 * time.Minute, []string{"z:3"}, ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := bind(t, tt.env, tt.args...)
			if err != nil {
				t.Fatalf("bind(%v, %v) error = %v", tt.env, tt.args, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("bind(%v, %v) mismatch (-want +got):\n%s", tt.env, tt.args, diff)
			}
		})
	}
}

func TestBinderNamesTheBadVariable(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"SUPABASE_POOL_MAX": "ten"}, "SUPABASE_POOL_MAX"},
		{map[string]string{"CACHE_TTL": "5 minutes"}, "CACHE_TTL"},
	}
	for _, tt := range tests {
		_, err := bind(t, tt.env)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("bind(%v) error = %v, want one naming %s", tt.env, err, tt.want)
		}
	}
}
