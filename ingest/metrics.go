package ingest

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/convsync/convsync/schemas"
)

// Request outcomes, the values of the outcome label.
const (
	outcomeOK           = "ok"            // 200: every event appended
	outcomeUnauthorized = "bad_signature" // 401
	outcomeTooLarge     = "too_large"     // 413
	outcomeBadRequest   = "bad_request"   // 400
	outcomeUnavailable  = "unavailable"   // 503: Kafka failed or the deadline passed
)

type metrics struct {
	requests  *prometheus.HistogramVec
	produce   *prometheus.HistogramVec
	events    *prometheus.CounterVec
	inFlight  prometheus.Gauge
	bodyBytes prometheus.Histogram
	verify    *prometheus.CounterVec
}

// latencyBuckets resolve the sub-millisecond to 5 s range a webhook can take.
var latencyBuckets = []float64{.0005, .001, .002, .003, .005, .0075, .01, .015, .025, .05, .1, .25, .5, 1, 2.5, 5}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "convsync_webhook_request_duration_seconds",
			Help:    "Time to answer a webhook POST, by outcome (ok, bad_signature, too_large, bad_request, unavailable).",
			Buckets: latencyBuckets,
		}, []string{"outcome"}),
		produce: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "convsync_webhook_produce_duration_seconds",
			Help:    "Time from producing a request's events to Kafka's acknowledgement of all of them, by outcome (ok, error).",
			Buckets: latencyBuckets,
		}, []string{"outcome"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "convsync_webhook_events_total",
			Help: "Events appended to the event log from webhooks, by event type (message, echo, ..., unknown).",
		}, []string{"type"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "convsync_webhook_requests_in_flight",
			Help: "Webhook POSTs being handled.",
		}),
		bodyBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "convsync_webhook_request_body_bytes",
			Help:    "Size of webhook bodies.",
			Buckets: prometheus.ExponentialBuckets(256, 4, 8),
		}),
		verify: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "convsync_webhook_verifications_total",
			Help: "Subscription handshakes (GET), by outcome (ok, forbidden).",
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.requests, m.produce, m.events, m.inFlight, m.bodyBytes, m.verify)
	// Every bounded label value from the start, so that dashboards show zeros and
	// increase() sees the first occurrence.
	for _, o := range []string{outcomeOK, outcomeUnauthorized, outcomeTooLarge, outcomeBadRequest, outcomeUnavailable} {
		m.requests.WithLabelValues(o)
	}
	for _, o := range []string{"ok", "error"} {
		m.produce.WithLabelValues(o)
	}
	for _, typ := range schemas.Types() {
		if strings.HasPrefix(typ, "convsync.messenger.") { // what webhooks append
			m.events.WithLabelValues(shortType(typ))
		}
	}
	for _, o := range []string{"ok", "forbidden"} {
		m.verify.WithLabelValues(o)
	}
	return m
}
