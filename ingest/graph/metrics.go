package graph

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Request kinds and outcomes, the values of the kind and outcome labels.
const (
	kindConversations = "conversations"
	kindMessages      = "messages"
	kindAccounts      = "accounts"
	kindBatch         = "batch"

	outcomeOK          = "ok"
	outcomeRateLimited = "rate_limited"
	outcomeToken       = "token"
	outcomeTransient   = "transient" // 5xx, codes 1 and 2, network errors
	outcomeError       = "error"     // any other error answer
	outcomeNull        = "null"      // batch operations: Graph answered null (not run), retried
)

// Values of the label sets, every one counted from registration.
var (
	kinds    = []string{kindConversations, kindMessages, kindAccounts, kindBatch}
	outcomes = []string{outcomeOK, outcomeRateLimited, outcomeToken, outcomeTransient, outcomeError}
)

type metrics struct {
	requests        *prometheus.CounterVec
	ops             *prometheus.CounterVec
	throttleWaits   *prometheus.CounterVec
	throttleSeconds prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "convsync_graph_requests_total",
			Help: "Graph API HTTP attempts, by kind (conversations, messages, accounts, batch) and outcome (ok, rate_limited, token, transient, error).",
		}, []string{"kind", "outcome"}),
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "convsync_graph_batch_operations_total",
			Help: "Batch operations answered, by outcome (ok, null, rate_limited, token, transient, error).",
		}, []string{"outcome"}),
		throttleWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "convsync_graph_throttle_waits_total",
			Help: "Times a call waited before going out, by reason (rate: the per-token window, pause: usage headers or a rate-limit answer).",
		}, []string{"reason"}),
		throttleSeconds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "convsync_graph_throttle_wait_seconds_total",
			Help: "Time calls spent waiting for the throttle.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.ops, m.throttleWaits, m.throttleSeconds} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register graph metrics: %w", err)
		}
	}
	// Every bounded label value from the start, so that dashboards show zeros and
	// increase() sees the first rate limit or token error.
	for _, o := range outcomes {
		for _, k := range kinds {
			m.requests.WithLabelValues(k, o)
		}
		m.ops.WithLabelValues(o)
	}
	m.ops.WithLabelValues(outcomeNull)
	m.throttleWaits.WithLabelValues(waitRate)
	m.throttleWaits.WithLabelValues(waitPause)
	return m, nil
}

// outcome classifies an attempt's error for the outcome label.
func outcome(err error) string {
	switch {
	case err == nil:
		return outcomeOK
	case IsRateLimit(err):
		return outcomeRateLimited
	case IsTokenError(err):
		return outcomeToken
	}
	var e *APIError
	if errors.As(err, &e) && !isTransient(e) {
		return outcomeError
	}
	return outcomeTransient
}
