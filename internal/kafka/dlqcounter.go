package kafka

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

var dlqOpts = prometheus.CounterOpts{
	Name: "convsync_dlq_records_total",
	Help: "Records sent to the dead-letter topic, by the topic they came from and reason (decode, schema, unknown_type, refused, too_large).",
}

// DLQCounter registers convsync_dlq_records_total{topic, reason} on reg, or returns the
// one another stage of the process registered already.
func DLQCounter(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	dlq := prometheus.NewCounterVec(dlqOpts, []string{"topic", "reason"})
	if err := reg.Register(dlq); err != nil {
		are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err)
		if !ok {
			return nil, fmt.Errorf("register %s: %w", dlqOpts.Name, err)
		}
		if dlq, ok = are.ExistingCollector.(*prometheus.CounterVec); !ok {
			return nil, fmt.Errorf("register %s: registered as another kind of collector", dlqOpts.Name)
		}
	}
	return dlq, nil
}
