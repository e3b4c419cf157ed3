package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/convsync/convsync/app"
	"github.com/convsync/convsync/internal/loadgen"
	"github.com/convsync/convsync/internal/logging"
	"github.com/convsync/convsync/internal/testenv"
)

// Start refuses the settings Run refuses, every failing value named at once, before it
// opens anything.
func TestStartValidatesAsRunDoes(t *testing.T) {
	s := app.Defaults()
	_, err := app.Start(t.Context(), &s, logging.Discard(), app.Options{}, app.Ingest, app.API)
	if err == nil {
		t.Fatal("Start(ingest, api) with the defaults = nil error, want the missing secret, database and tokens")
	}
	for _, want := range []string{"invalid configuration", "META_APP_SECRET is required", "DATABASE_URL is required", "API_TOKENS is required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Start(ingest, api) with the defaults = %q, want it to say %q", err, want)
		}
	}
	if _, err := app.Start(t.Context(), &s, logging.Discard(), app.Options{}, app.Role("cron")); err == nil || !strings.Contains(err.Error(), `unknown role "cron"`) {
		t.Errorf("Start(cron) = %v, want unknown role", err)
	}
}

// Every role in one process, as `convsync all` runs them, started in process: a signed
// webhook is acknowledged, folded, projected and served back by the read API on the same
// listener, whose /readyz reports each role's dependencies; the process stops cleanly
// when its context ends.
func TestStartAllRolesServesAWebhookBackThroughTheReadAPI(t *testing.T) {
	t.Parallel()
	s := app.Defaults()
	s.Kafka = testenv.Kafka(t, 2)
	s.PG.URL = testenv.Schema(t)
	s.HTTP.Addr = "127.0.0.1:0"
	s.Ingest.AppSecret, s.Ingest.VerifyToken = "app-secret", "app-verify"
	s.API.Tokens = []string{"app-token-0123456789"}
	s.Processor.Group = "app-proc-" + testenv.ID()
	s.Processor.TransactionalID = s.Processor.Group
	s.Projector.Group = "app-proj-" + testenv.ID()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := prometheus.NewRegistry()
	p, err := app.Start(ctx, &s, logging.Discard(), app.Options{Registry: reg}, app.AllRoles()...)
	if err != nil {
		t.Fatalf("Start(all) = %v", err)
	}
	addr := p.Addr()
	if addr == "" {
		t.Fatalf("the process stopped before it listened: %v", p.Wait())
	}
	base := "http://" + addr

	const page, psid = "104400000000951", "7300000000000951"
	body := []byte(`{"object":"page","entry":[{"id":"` + page + `","time":1777626000000,"messaging":[{"sender":{"id":"` + psid +
		`"},"recipient":{"id":"` + page + `"},"timestamp":1777626000000,"message":{"mid":"m_app","text":"through app"}}]}]}`)
	req, _ := http.NewRequest(http.MethodPost, base+"/api/webhook", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Hub-Signature-256", loadgen.Sign("app-secret", body))
	if code, _ := do(t, req); code != http.StatusOK {
		t.Fatalf("POST /api/webhook = %d, want 200", code)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/pages/"+page+"/conversations/"+psid, nil)
		req.Header.Set("Authorization", "Bearer app-token-0123456789")
		code, got := do(t, req)
		if code == http.StatusOK && strings.Contains(got, "through app") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the read API did not serve the webhook's message within 30s: last %d %s", code, got)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}

	// The conversation was read: a second message rebuilds its entry in the background
	// (the read API keeps what it serves warm; the projector only raises markers).
	body = bytes.Replace(body, []byte(`"mid":"m_app","text":"through app"`), []byte(`"mid":"m_app_2","text":"kept warm"`), 1)
	req, _ = http.NewRequest(http.MethodPost, base+"/api/webhook", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Hub-Signature-256", loadgen.Sign("app-secret", body))
	if code, _ := do(t, req); code != http.StatusOK {
		t.Fatalf("second POST /api/webhook = %d, want 200", code)
	}
	for deadline := time.Now().Add(30 * time.Second); warmStored(t, reg) < 1; time.Sleep(50 * time.Millisecond) { // polling a condition with a deadline
		if time.Now().After(deadline) {
			t.Fatal("the conversation the read API served was not rebuilt after a second message within 30s")
		}
	}

	req, _ = http.NewRequest(http.MethodGet, base+"/readyz", nil)
	code, got := do(t, req)
	var ready struct{ Checks map[string]string }
	if err := json.Unmarshal([]byte(got), &ready); err != nil || code != http.StatusOK {
		t.Fatalf("GET /readyz = %d %s (%v), want 200", code, got, err)
	}
	var checks []string
	for name := range ready.Checks {
		checks = append(checks, name)
	}
	slices.Sort(checks)
	if want := []string{"kafka", "kafka-processor", "kafka-projector", "memory", "postgres"}; !slices.Equal(checks, want) {
		t.Errorf("/readyz checks = %v, want %v", checks, want)
	}

	cancel()
	done := make(chan error, 1)
	go func() { done <- p.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Wait() after the context ended = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Wait() did not return within 30s of the context's end")
	}
}

// warmStored is convsync_cache_warm_refreshes_total{result="stored"} in reg.
func warmStored(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "convsync_cache_warm_refreshes_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == "stored" {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}
