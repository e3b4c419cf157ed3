package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/convsync/convsync/internal/loadgen"
)

// pacedEnv, when set, makes the test binary the paced GET client instead of running
// benchmarks: wrk cannot hold a fixed rate (wrk2 is not in Debian), and a client in the
// benchmark's own process would share its runtime with the measuring.
const pacedEnv = "CONVSYNC_BENCH_PACED_GET"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(pacedEnv); cfg != "" {
		if err := pacedGet(cfg, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// paced is the paced GET client's configuration.
type paced struct {
	URL         string        `json:"url"`
	Token       string        `json:"token"`
	Rate        float64       `json:"rate"`
	Duration    time.Duration `json:"duration"`
	Concurrency int           `json:"concurrency"`
}

// pacedGet sends GETs at a fixed rate with loadgen's pacer (open loop, latency from
// each request's due time) and prints loadgen's result as JSON.
func pacedGet(raw string, out io.Writer) error {
	var p paced
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		return fmt.Errorf("%s: %w", pacedEnv, err)
	}
	client := loadgen.Client(p.Concurrency)
	auth := "Bearer " + p.Token
	res := loadgen.Drive(context.Background(), loadgen.Pace{Rate: p.Rate, Duration: p.Duration,
		Requests: int(p.Rate*p.Duration.Seconds()) + 1, Concurrency: p.Concurrency},
		func(ctx context.Context, _ int) (int, int) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
			if err != nil {
				return 0, 0
			}
			req.Header.Set("Authorization", auth)
			resp, err := client.Do(req)
			if err != nil {
				return 0, 0
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			return resp.StatusCode, 0
		})
	return json.NewEncoder(out).Encode(res)
}

// runPaced runs the paced GET client as a process of its own: this test binary again.
func runPaced(b *testing.B, p paced) loadgen.Result {
	b.Helper()
	raw, err := json.Marshal(p)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.Duration+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), pacedEnv+"="+string(raw))
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("paced GET client: %v\n%s", err, out)
	}
	var res loadgen.Result
	if err := json.Unmarshal(out, &res); err != nil {
		b.Fatalf("paced GET client output: %v\n%s", err, out)
	}
	return res
}
