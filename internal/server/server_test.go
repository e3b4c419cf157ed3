package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
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
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"broken":"error"`) || !strings.Contains(body, `"kafka":"ok"`) {
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

// The listener faces the internet (Meta posts webhooks to it), so /readyz names the
// check that failed but never its error: a driver's error tells hosts, ports and users.
// The error goes to the log, once per change, for the operator.
func TestReadyzNamesTheFailedCheckWithoutItsError(t *testing.T) {
	t.Parallel()
	var logs testenv.LogBuffer
	srv, err := server.New(server.Defaults(), prometheus.NewRegistry(), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	const detail = "failed to connect to `user=convsync database=convsync`: 10.0.7.12:5432 (db-primary.internal): dial error"
	srv.AddCheck("postgres", func(context.Context) error { return errors.New(detail) })
	srv.AddCheck("kafka", func(context.Context) error { return nil })
	for range 2 {
		code, body := get(t, srv.Handler(), "/readyz")
		var r struct {
			Status string
			Checks map[string]string
		}
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatalf("/readyz body %q is not JSON: %v", body, err)
		}
		if code != http.StatusServiceUnavailable || r.Status != "unavailable" || r.Checks["postgres"] != "error" || r.Checks["kafka"] != "ok" {
			t.Errorf("/readyz with a failing postgres check = %d %s, want 503 with postgres \"error\" and kafka \"ok\"", code, body)
		}
		for _, secret := range []string{"10.0.7.12", "db-primary", "user=", "dial error"} {
			if strings.Contains(body, secret) {
				t.Errorf("/readyz answer %s shows %q of the check's error", body, secret)
			}
		}
	}
	if got := logs.String(); strings.Count(got, "readiness check failed") != 1 || !strings.Contains(got, "check=postgres") || !strings.Contains(got, "dial error") {
		t.Errorf("log after two failing probes = %q, want one line naming the postgres check with its error", got)
	}
}

// A client that sends its headers and then trickles the body (or stops) holds a
// connection and the body read so far: the server cuts it off after ReadTimeout.
func TestSlowBodyIsCutOff(t *testing.T) {
	t.Parallel()
	cfg := server.Defaults()
	cfg.Addr = "127.0.0.1:0"
	cfg.ReadTimeout = 300 * time.Millisecond
	srv, err := server.New(cfg, prometheus.NewRegistry(), logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	readErr := make(chan error, 1)
	srv.Handle("POST /upload", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		readErr <- err
		if err != nil {
			http.Error(w, "body not read", http.StatusBadRequest)
		}
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-srv.Ready()

	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4194304\r\n\r\n{\"object\":"); err != nil {
		t.Fatal(err)
	}
	// The rest of the body never comes. Within the deadline the server must give up on
	// it and close the connection; without a read timeout it waits for ever.
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection with a stalled body still open after 10s (ReadTimeout %s): the server never cut it off", cfg.ReadTimeout)
	}
	select {
	case err := <-readErr:
		if err == nil {
			t.Errorf("reading the stalled body succeeded, want an error")
		}
	default:
		t.Errorf("the connection closed before the handler's body read returned")
	}
}
