package ingest

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/schemas"
)

// Webhook is the Meta webhook endpoint.
type Webhook struct {
	cfg   Config
	topic string
	app   Appender
	m     *metrics
	log   *slog.Logger
	now   func() time.Time
}

// New validates cfg and builds the endpoint; records go to topic through app.
func New(cfg Config, topic string, app Appender, reg prometheus.Registerer, log *slog.Logger) (*Webhook, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if topic == "" {
		return nil, errors.New("ingest: no events topic")
	}
	return &Webhook{cfg: cfg, topic: topic, app: app, m: newMetrics(reg), log: log, now: time.Now}, nil
}

// Register mounts the routes existing deployments use.
func (w *Webhook) Register(mux interface {
	Handle(pattern string, h http.Handler)
}) {
	mux.Handle("GET /api/webhook", http.HandlerFunc(w.verify))
	mux.Handle("POST /api/webhook", http.HandlerFunc(w.receive))
}

// verify answers Meta's subscription handshake: the challenge back verbatim when the mode
// is subscribe and the token matches, else 403.
func (w *Webhook) verify(rw http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	token := q.Get("hub.verify_token")
	ok := q.Get("hub.mode") == "subscribe" &&
		subtle.ConstantTimeCompare([]byte(token), []byte(w.cfg.VerifyToken)) == 1
	if !ok {
		w.m.verify.WithLabelValues("forbidden").Inc()
		w.log.Warn("webhook verification refused", "mode", q.Get("hub.mode"))
		http.Error(rw, "forbidden", http.StatusForbidden)
		return
	}
	w.m.verify.WithLabelValues("ok").Inc()
	rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(rw, q.Get("hub.challenge"))
}

// validSignature checks X-Hub-Signature-256 over the exact bytes received, in constant
// time.
func (w *Webhook) validSignature(header string, body []byte) bool {
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, []byte(w.cfg.AppSecret))
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

type outcome struct {
	status int
	label  string
	msg    string
}

func (w *Webhook) receive(rw http.ResponseWriter, r *http.Request) {
	start := w.now()
	w.m.inFlight.Inc()
	defer w.m.inFlight.Dec()

	pages, events, res := w.handle(r, start)
	elapsed := time.Since(start)
	w.m.requests.WithLabelValues(res.label).Observe(elapsed.Seconds())
	attrs := []any{"outcome", res.label, "status", res.status, "pages", len(pages), "events", events,
		"duration_ms", float64(elapsed.Microseconds()) / 1000}
	if len(pages) == 1 {
		attrs = append(attrs, "page_id", pages[0])
	}
	if res.status == http.StatusOK {
		// Debug: at Meta's rates a line per accepted webhook was 4% of the ingest's CPU
		// (perf, issue 12); the request histogram counts them.
		w.log.Debug("webhook", attrs...)
	} else {
		w.log.Warn("webhook", append(attrs, "error", res.msg)...)
	}
	if res.status == http.StatusOK {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(rw, "EVENT_RECEIVED")
		return
	}
	http.Error(rw, res.msg, res.status)
}

// handle reads, verifies, parses and appends one request; it returns the pages and the
// number of events it appended, and the answer.
func (w *Webhook) handle(r *http.Request, start time.Time) ([]string, int, outcome) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, w.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, 0, outcome{http.StatusRequestEntityTooLarge, outcomeTooLarge,
				fmt.Sprintf("body larger than %d bytes", w.cfg.MaxBodyBytes)}
		}
		return nil, 0, outcome{http.StatusBadRequest, outcomeBadRequest, "could not read the body"}
	}
	w.m.bodyBytes.Observe(float64(len(body)))
	if !w.validSignature(r.Header.Get("X-Hub-Signature-256"), body) {
		return nil, 0, outcome{http.StatusUnauthorized, outcomeUnauthorized, "missing or invalid X-Hub-Signature-256"}
	}
	data, err := Parse(body, start)
	if err != nil {
		return nil, 0, outcome{http.StatusBadRequest, outcomeBadRequest, err.Error()}
	}
	recs, pages, err := w.records(data, start)
	if err != nil {
		return pages, 0, outcome{http.StatusBadRequest, outcomeBadRequest, err.Error()}
	}

	ctx, cancel := context.WithTimeout(r.Context(), w.cfg.ProduceTimeout)
	defer cancel()
	pstart := time.Now()
	err = w.app.Append(ctx, recs)
	if err != nil {
		w.m.produce.WithLabelValues("error").Observe(time.Since(pstart).Seconds())
		return pages, 0, outcome{http.StatusServiceUnavailable, outcomeUnavailable, "event log unavailable, retry: " + err.Error()}
	}
	w.m.produce.WithLabelValues("ok").Observe(time.Since(pstart).Seconds())
	for _, d := range data {
		w.m.events.WithLabelValues(shortType(d.EventType())).Inc()
	}
	return pages, len(recs), outcome{http.StatusOK, outcomeOK, ""}
}

// records encodes the events as Kafka records keyed by page id.
func (w *Webhook) records(data []schemas.Data, receivedAt time.Time) ([]*kgo.Record, []string, error) {
	recs := make([]*kgo.Record, 0, len(data))
	var pages []string
	seen := map[string]bool{}
	for _, d := range data {
		b, env, err := schemas.Encode(schemas.SourceWebhook, receivedAt, d)
		if err != nil {
			return nil, pages, err
		}
		if !seen[env.PageID] {
			seen[env.PageID] = true
			pages = append(pages, env.PageID)
		}
		recs = append(recs, &kgo.Record{
			Topic: w.topic,
			Key:   []byte(env.PageID),
			Value: b,
			Headers: []kgo.RecordHeader{
				{Key: "content-type", Value: []byte("application/cloudevents+json")},
				{Key: "ce_type", Value: []byte(env.Type)},
				{Key: "ce_id", Value: []byte(env.ID)},
			},
		})
	}
	return recs, pages, nil
}
