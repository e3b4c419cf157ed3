package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/internal/logging"
	"github.com/convsync/convsync/internal/server"
	"github.com/convsync/convsync/internal/testenv"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

func TestReadyzReportsEachRealDependency(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t, time.Minute)
	pool, err := pgxpool.New(ctx, testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	rdb, _ := testenv.Redis(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(testenv.KafkaBrokers(t)...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)

	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "convsync_test_total", Help: "t"}))
	srv, err := server.New(server.Defaults(), reg, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	srv.AddCheck("postgres", pool.Ping)
	srv.AddCheck("redis", func(ctx context.Context) error { return rdb.Ping(ctx).Err() })
	srv.AddCheck("kafka", cl.Ping)

	code, body := get(t, srv.Handler(), "/readyz")
	var r struct {
		Status string
		Checks map[string]string
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("/readyz body %q is not JSON: %v", body, err)
	}
	if code != http.StatusOK || r.Status != "ok" || len(r.Checks) != 3 {
		t.Fatalf("/readyz = %d %s, want 200 with three ok checks", code, body)
	}

	srv.AddCheck("broken", func(context.Context) error { return errors.New("connection refused") })
	code, body = get(t, srv.Handler(), "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"broken":"error: connection refused"`) || !strings.Contains(body, `"kafka":"ok"`) {
		t.Errorf("/readyz with a failing check = %d %s, want 503 naming the failing check and the others ok", code, body)
	}

	if code, body := get(t, srv.Handler(), "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d %s, want 200", code, body)
	}
	if code, body := get(t, srv.Handler(), "/metrics"); code != http.StatusOK || !strings.Contains(body, "convsync_test_total") {
		t.Errorf("/metrics = %d, want 200 with the registry's metrics; body:\n%s", code, body)
	}
}

func TestRunServesUntilCancelledAndDrains(t *testing.T) {
	t.Parallel()
	cfg := server.Defaults()
	cfg.Addr = "127.0.0.1:0"
	srv, err := server.New(cfg, prometheus.NewRegistry(), logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	release := make(chan struct{})
	srv.Handle("GET /slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		_, _ = w.Write([]byte("done"))
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	<-srv.Ready()

	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + srv.Addr() + "/slow")
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- string(b)
	}()
	<-started
	cancel() // shutdown begins while the request is in flight
	release <- struct{}{}
	if body := <-got; body != "done" {
		t.Errorf("in-flight request during shutdown got %q, want it answered with \"done\"", body)
	}
	if err := <-done; err != nil {
		t.Errorf("Run() after cancel = %v, want nil", err)
	}
}

func TestValidateNamesTheVariable(t *testing.T) {
	cfg := server.Defaults()
	cfg.Addr = "8080"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "HTTP_ADDR") {
		t.Errorf("Validate(Addr=8080) = %v, want an error naming HTTP_ADDR", err)
	}
}
