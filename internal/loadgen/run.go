package loadgen

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// RunConfig bounds a run: it stops at Duration or after Requests, whichever comes first.
type RunConfig struct {
	URL         string        // the webhook endpoint, e.g. http://127.0.0.1:8080/api/webhook
	Secret      string        // META_APP_SECRET, to sign bodies
	Rate        float64       // requests per second; 0 sends as fast as Concurrency allows
	Duration    time.Duration // at most this long
	Requests    int           // at most this many requests; 0 = Rate*Duration (or 1,000,000)
	Concurrency int           // requests in flight at most
	Timeout     time.Duration // per request
	Gen         GenConfig
}

// Validate reports the first invalid value.
func (c RunConfig) Validate() error {
	switch {
	case c.URL == "":
		return errors.New("loadgen: --url is required")
	case c.Duration <= 0 || c.Duration > time.Hour:
		return fmt.Errorf("loadgen: --duration must be between 0 and 1h, got %s", c.Duration)
	case c.Rate < 0:
		return fmt.Errorf("loadgen: --rate must not be negative, got %v", c.Rate)
	case c.Concurrency < 1:
		return fmt.Errorf("loadgen: --concurrency must be at least 1, got %d", c.Concurrency)
	}
	return nil
}

// Result summarises a run. Latencies are in milliseconds and, for a fixed rate, measured
// from when the request was due, so a stalled server cannot hide its queue
// (no coordinated omission).
type Result struct {
	Requests      int         `json:"requests"`
	Events        int         `json:"events"`
	Errors        int         `json:"errors"` // transport errors and non-2xx answers
	Status        map[int]int `json:"status"`
	Seconds       float64     `json:"seconds"`
	TargetRate    float64     `json:"target_rate"`
	RequestsPerS  float64     `json:"requests_per_second"`
	EventsPerS    float64     `json:"events_per_second"`
	P50, P95, P99 float64     `json:"-"`
	Max           float64     `json:"-"`
	Latency       Latency     `json:"latency_ms"`
}

// Latency holds percentiles in milliseconds.
type Latency struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// String renders r as the text report.
func (r Result) String() string {
	return fmt.Sprintf("requests %d (%d events) in %.1fs: %.0f req/s, %.0f events/s, %d errors\nlatency ms: p50 %.2f  p95 %.2f  p99 %.2f  max %.2f\nstatus: %v",
		r.Requests, r.Events, r.Seconds, r.RequestsPerS, r.EventsPerS, r.Errors,
		r.Latency.P50, r.Latency.P95, r.Latency.P99, r.Latency.Max, r.Status)
}

// poolSize bounds the deliveries generated ahead of a run (and so its memory).
const poolSize = 100_000

type signed struct {
	body   []byte
	sig    string
	events int
}

// Run sends the traffic and reports. The deliveries are generated and signed before the
// clock starts, so the generator's cost is not measured.
func Run(ctx context.Context, cfg RunConfig, client *http.Client) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	n := cfg.Requests
	if n <= 0 {
		n = poolSize * 10
		if cfg.Rate > 0 {
			n = int(cfg.Rate*cfg.Duration.Seconds()) + 1
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	// Beyond poolSize the deliveries repeat, as redeliveries would.
	gen := NewGenerator(cfg.Gen)
	reqs := make([]signed, min(n, poolSize))
	for i := range reqs {
		d, err := gen.Next()
		if err != nil {
			return Result{}, err
		}
		reqs[i] = signed{d.Body, Sign(cfg.Secret, d.Body), d.Events}
	}

	res := Drive(ctx, Pace{Rate: cfg.Rate, Duration: cfg.Duration, Requests: n, Concurrency: cfg.Concurrency},
		func(ctx context.Context, i int) (int, int) {
			r := reqs[i%len(reqs)]
			return send(ctx, client, cfg, r), r.events
		})
	return res, nil
}

// Pace bounds and paces a run of requests.
type Pace struct {
	Rate        float64       // requests per second; 0: as fast as Concurrency allows
	Duration    time.Duration // scheduling stops after it
	Requests    int           // at most this many
	Concurrency int           // in flight at most
}

// Drive calls do for request 0, 1, ... at the pace given, and summarises. do returns
// the HTTP status (0 for a transport error) and how many events the request carried.
// With a rate, latency is measured from when the request was due (no coordinated
// omission). Scheduling stops at the deadline; requests already sent finish, so the end
// of a run does not show up as errors.
func Drive(ctx context.Context, p Pace, do func(ctx context.Context, i int) (status, events int)) Result {
	sched, cancel := context.WithTimeout(ctx, p.Duration)
	defer cancel()
	type sample struct {
		lat    time.Duration
		status int
		events int
	}
	samples := make([]sample, p.Requests)
	var sent int
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(1, p.Concurrency))
	pace := newPacer()
	defer pace.Close()
	start := time.Now()
	run := func(i int, due time.Time) {
		defer wg.Done()
		defer func() { <-sem }()
		status, events := do(ctx, i)
		samples[i] = sample{time.Since(due), status, events}
	}
loop:
	for i := range p.Requests {
		due := start
		if p.Rate > 0 {
			due = start.Add(time.Duration(float64(i) / p.Rate * float64(time.Second)))
			if time.Until(due) > 0 && !pace.sleepUntil(sched, due) {
				break loop
			}
		}
		if sched.Err() != nil {
			break loop
		}
		select {
		case sem <- struct{}{}:
		case <-sched.Done():
			break loop
		}
		if p.Rate <= 0 {
			due = time.Now()
		}
		wg.Add(1)
		sent++
		go run(i, due)
	}
	wg.Wait()
	elapsed := time.Since(start)

	res := Result{Requests: sent, Status: map[int]int{}, Seconds: elapsed.Seconds(), TargetRate: p.Rate}
	lats := make([]time.Duration, 0, sent)
	for _, s := range samples[:sent] {
		res.Status[s.status]++
		if s.status < 200 || s.status > 399 {
			res.Errors++
			continue
		}
		res.Events += s.events
		lats = append(lats, s.lat)
	}
	slices.Sort(lats)
	res.Latency = Latency{P50: pct(lats, 0.50), P95: pct(lats, 0.95), P99: pct(lats, 0.99)}
	if len(lats) > 0 {
		res.Latency.Max = ms(lats[len(lats)-1])
	}
	res.P50, res.P95, res.P99, res.Max = res.Latency.P50, res.Latency.P95, res.Latency.P99, res.Latency.Max
	res.RequestsPerS = float64(sent) / elapsed.Seconds()
	res.EventsPerS = float64(res.Events) / elapsed.Seconds()
	return res
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// pct is the nearest-rank percentile of sorted.
func pct(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return ms(sorted[min(max(i, 0), len(sorted)-1)])
}

// send posts one delivery; 0 stands for a transport error.
func send(ctx context.Context, client *http.Client, cfg RunConfig, r signed) int {
	rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, cfg.URL, bytes.NewReader(r.body))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Hub-Signature-256", r.sig)
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// Sign is the X-Hub-Signature-256 value Meta sends for body: lowercase hex HMAC-SHA256
// of the exact bytes, keyed with the app secret.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Client is an HTTP client that keeps enough idle connections for concurrency.
func Client(concurrency int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = concurrency * 2
	t.MaxIdleConnsPerHost = concurrency * 2
	return &http.Client{Transport: t}
}
