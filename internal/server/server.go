// Package server is the HTTP listener every role shares: each role mounts its routes on
// it, and it serves /metrics (the registry passed in), /healthz (the process is up) and
// /readyz (every registered dependency answers: Kafka, Postgres, Redis, each reported).
// The listener faces the internet (Meta posts webhooks to it), so /readyz names a check
// that fails but never shows its error, which would tell hosts, ports and users; the
// error goes to the log when a check starts failing or its error changes. Requests are
// bounded in time (ReadTimeout, WriteTimeout), so a slow client cannot hold a
// connection and its body for long. Shutdown stops accepting connections and waits for
// in-flight requests, so a webhook being appended is answered before the process exits.
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
	// ReadTimeout (HTTP_READ_TIMEOUT) bounds reading a whole request, headers and body: a
	// client that trickles a body in is cut off then, instead of holding a connection and
	// up to WEBHOOK_MAX_BODY_BYTES of memory for as long as it likes.
	ReadTimeout time.Duration
	// WriteTimeout (HTTP_WRITE_TIMEOUT) bounds a request from the end of its headers to the
	// end of its answer, so a client that does not read its answer is cut off too.
	WriteTimeout time.Duration
	CheckTimeout time.Duration // how long one readiness check may take
}

// Defaults returns the configuration used when nothing is set.
func Defaults() Config {
	return Config{Addr: ":8080", ShutdownTimeout: 10 * time.Second, ReadTimeout: 15 * time.Second,
		WriteTimeout: 30 * time.Second, CheckTimeout: 2 * time.Second}
}

// Validate reports the first invalid value, naming its variable.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("HTTP_ADDR must be host:port or :port, got %q: %w", c.Addr, err)
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("HTTP_SHUTDOWN_TIMEOUT must be positive, got %s", c.ShutdownTimeout)
	}
	if c.ReadTimeout <= 0 {
		return fmt.Errorf("HTTP_READ_TIMEOUT must be positive, got %s", c.ReadTimeout)
	}
	if c.WriteTimeout <= 0 {
		return fmt.Errorf("HTTP_WRITE_TIMEOUT must be positive, got %s", c.WriteTimeout)
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
	// failing is the last error of each failing check, so that the log says when a check
	// starts failing or fails otherwise, not at every probe.
	failing map[string]string
	ready   chan struct{} // closed once listening
	addr    string
}

// New builds a server; gatherer is what /metrics serves.
func New(cfg Config, gatherer prometheus.Gatherer, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = 2 * time.Second
	}
	s := &Server{cfg: cfg, log: log, mux: http.NewServeMux(), checks: map[string]Check{},
		failing: map[string]string{}, ready: make(chan struct{})}
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

// readiness is /readyz's answer: "ok" or "error" per check, never the error itself.
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
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Go(func() { errs[i] = checks[n](ctx) })
	}
	wg.Wait()
	for i, n := range names {
		res.Checks[n] = "ok"
		if errs[i] != nil {
			res.Checks[n], res.Status = "error", "unavailable"
		}
		s.logChange(n, errs[i])
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if res.Status != "ok" {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(res)
}

// logChange logs a check's error when it starts failing or its error changes, and its
// recovery. The errors are those of the clients (pgx, go-redis, franz-go), which name
// hosts and users but never passwords or tokens.
func (s *Server) logChange(name string, err error) {
	s.mu.Lock()
	last, wasFailing := s.failing[name]
	switch {
	case err != nil:
		s.failing[name] = err.Error()
	case wasFailing:
		delete(s.failing, name)
	}
	s.mu.Unlock()
	switch {
	case err != nil && err.Error() != last:
		s.log.Warn("readiness check failed", "check", name, "error", err)
	case err == nil && wasFailing:
		s.log.Info("readiness check ok again", "check", name)
	}
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
	srv := &http.Server{Handler: s.mux, ReadHeaderTimeout: min(10*time.Second, s.cfg.ReadTimeout),
		ReadTimeout: s.cfg.ReadTimeout, WriteTimeout: s.cfg.WriteTimeout, IdleTimeout: 2 * time.Minute}
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
