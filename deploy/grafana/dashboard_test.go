// Package grafana holds convsync's Grafana dashboard and provisioning files; its test
// runs the real binary under load, scrapes it with the real Prometheus, and finds data
// for every query of the dashboard.
package grafana

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/convsync/convsync/internal/graphsim"
	"github.com/convsync/convsync/internal/loadgen"
	"github.com/convsync/convsync/internal/testenv"
)

type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitHTTP(t *testing.T, u string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer 200 within %s", u, d)
		}
		time.Sleep(100 * time.Millisecond) // polling a condition with a deadline
	}
}

// Every query of the dashboard returns data from a Prometheus that scrapes a running
// convsync under load (webhooks, reads, a backfill).
func TestDashboardQueriesHaveData(t *testing.T) {
	if _, err := exec.LookPath("prometheus"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("prometheus is not installed: run `make services-up`")
		}
		t.Skip("prometheus is not installed")
	}
	b, err := os.ReadFile("dashboards/convsync.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash dashboard
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}

	// The binary, on the test's own topics, schema and cache prefix.
	bin := testenv.Binary(t)
	kc := testenv.Kafka(t, 2)
	pool, dbURL := testenv.Postgres(t)
	sim, err := graphsim.New(graphsim.Config{Pages: 2, Conversations: 5, Messages: 3, Seed: 4, Until: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	gs := httptest.NewServer(sim.Handler())
	defer gs.Close()
	for _, p := range sim.Pages() {
		if _, err := pool.Exec(context.Background(), `INSERT INTO facebook_pages (page_id, access_token) VALUES ($1, $2)`, p.ID, p.AccessToken); err != nil {
			t.Fatal(err)
		}
	}
	addr := freeAddr(t)
	const token = "dashboard-token-0123456789"
	cmd := exec.Command(bin, "all")
	cmd.Env = append(os.Environ(),
		"HTTP_ADDR="+addr, "DATABASE_URL="+dbURL, "KAFKA_BROKERS="+strings.Join(kc.Brokers, ","),
		"KAFKA_EVENTS_TOPIC="+kc.EventsTopic, "KAFKA_DELTAS_TOPIC="+kc.DeltasTopic, "KAFKA_DLQ_TOPIC="+kc.DLQTopic,
		"PROCESSOR_GROUP=dash-proc-"+testenv.ID(), "PROJECTOR_GROUP=dash-proj-"+testenv.ID(),
		"REDIS_URL="+testenv.Env("REDIS_URL"), "CACHE_PREFIX=dash-"+testenv.ID()+":",
		"META_APP_SECRET=dash-secret", "WEBHOOK_VERIFY_TOKEN=dash-verify", "API_TOKENS="+token,
		"GRAPH_API_URL="+gs.URL, "LOG_LEVEL=warn", "KAFKA_SESSION_TIMEOUT=6s")
	logs := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("convsync logs:\n%s", logs.String())
		}
	}()
	base := "http://" + addr
	waitHTTP(t, base+"/healthz", time.Minute)

	// Prometheus scraping it every second.
	promAddr := freeAddr(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n  - job_name: convsync\n    static_configs: [{targets: [%q]}]\n", addr)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := exec.Command("prometheus", "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+promAddr)
	prom.Stdout, prom.Stderr = io.Discard, io.Discard
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = prom.Process.Kill(); _ = prom.Wait() }()
	waitHTTP(t, "http://"+promAddr+"/-/ready", time.Minute)

	// Load: webhooks, a backfill, reads.
	req, _ := http.NewRequest(http.MethodPost, base+"/api/conversations/sync-all", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("sync-all = %v, %v", resp, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = loadgen.Run(context.Background(), loadgen.RunConfig{URL: base + "/api/webhook", Secret: "dash-secret",
			Rate: 50, Duration: 20 * time.Second, Concurrency: 4, Gen: loadgen.GenConfig{Pages: 2}}, loadgen.Client(4))
	}()
	defer func() { <-done }()
	reads := func() {
		for _, p := range sim.Pages() {
			r, _ := http.NewRequest(http.MethodGet, base+"/v1/pages/"+p.ID+"/conversations", nil)
			r.Header.Set("Authorization", "Bearer "+token)
			if resp, err := http.DefaultClient.Do(r); err == nil {
				resp.Body.Close()
			}
		}
	}

	// Every query finds data within a minute.
	deadline := time.Now().Add(90 * time.Second)
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			for {
				reads()
				n, err := query("http://"+promAddr, target.Expr)
				if err == nil && n > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("panel %q: query %s has no data (%v)", p.Title, target.Expr, err)
				}
				time.Sleep(500 * time.Millisecond) // polling a condition with a deadline
			}
		}
	}
}

// query runs an instant query and returns how many series it gave (NaN values do not
// count: a quantile of nothing is not data).
func query(prom, expr string) (int, error) {
	resp, err := http.Get(prom + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var v struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return 0, err
	}
	if v.Status != "success" {
		return 0, fmt.Errorf("query failed: %s", v.Error)
	}
	n := 0
	for _, r := range v.Data.Result {
		if s, ok := r.Value[1].(string); ok && s != "NaN" {
			n++
		}
	}
	return n, nil
}
