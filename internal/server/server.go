// Package server is the HTTP listener every role shares: each role mounts its routes on
// it, and it serves /metrics (the registry passed in), /healthz (the process is up) and
// /readyz (every registered dependency answers: Kafka, Postgres, Redis, each reported).
// Shutdown stops accepting connections and waits for in-flight requests, so a webhook
// being appended is answered before the process exits.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config is the listener's configuration.
type Config struct {
	Addr            string        // HTTP_ADDR
	ShutdownTimeout time.Duration // HTTP_SHUTDOWN_TIMEOUT: how long in-flight requests may take to finish
	CheckTimeout    time.Duration // how long one readiness check may take
}

// Defaults returns the configuration used when nothing is set.
func Defaults() Config {
	return Config{Addr: ":8080", ShutdownTimeout: 10 * time.Second, CheckTimeout: 2 * time.Second}
}

// Validate reports the first invalid value, naming its variable.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("HTTP_ADDR must be host:port or :port, got %q: %w", c.Addr, err)
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("HTTP_SHUTDOWN_TIMEOUT must be positive, got %s", c.ShutdownTimeout)
	}
	return nil
}

// Check reports whether one dependency is usable.
type Check func(ctx context.Context) error

// Server is the shared HTTP listener.
type Server struct {
	cfg    Config
	log    *slog.Logger
	mux    *http.ServeMux
	mu     sync.Mutex
	checks map[string]Check
	ready  chan struct{} // closed once listening
	addr   string
}

// New builds a server; gatherer is what /metrics serves.
func New(cfg Config, gatherer prometheus.Gatherer, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = 2 * time.Second
	}
	s := &Server{cfg: cfg, log: log, mux: http.NewServeMux(), checks: map[string]Check{}, ready: make(chan struct{})}
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	return s, nil
}

// Handle mounts a role's route; pattern is a net/http ServeMux pattern.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// AddCheck adds a dependency to /readyz.
func (s *Server) AddCheck(name string, c Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = c
}

// Handler is the whole mux, for tests.
func (s *Server) Handler() http.Handler { return s.mux }

type readiness struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	names := make([]string, 0, len(s.checks))
	for n := range s.checks {
		names = append(names, n)
	}
	checks := make(map[string]Check, len(s.checks))
	for n, c := range s.checks {
		checks[n] = c
	}
	s.mu.Unlock()
	sort.Strings(names)

	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.CheckTimeout)
	defer cancel()
	res := readiness{Status: "ok", Checks: make(map[string]string, len(names))}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Go(func() {
			msg := "ok"
			if err := checks[n](ctx); err != nil {
				msg = "error: " + err.Error()
			}
			mu.Lock()
			res.Checks[n] = msg
			if msg != "ok" {
				res.Status = "unavailable"
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	w.Header().Set("Content-Type", "application/json")
	if res.Status != "ok" {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(res)
}

// Addr is the address the server listens on, once Ready is closed.
func (s *Server) Addr() string { return s.addr }

// Ready is closed once the server listens.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Run listens until ctx is cancelled, then drains in-flight requests.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Addr, err)
	}
	s.addr = ln.Addr().String()
	close(s.ready)
	srv := &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	s.log.Info("http listening", "addr", s.addr)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http serve: %w", err)
	}
	return nil
}
