package main

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
)

// kafkaClient builds a client for one role, with its client id suffixed by the role and
// its metrics (kprom) on the app's registry. It is closed when the app ends.
func (a *app) kafkaClient(role string, opts ...kgo.Opt) (*kgo.Client, error) {
	id := a.s.Kafka.ClientID + "-" + role
	m := kprom.NewMetrics("convsync_kafka", kprom.Registerer(a.reg), kprom.WithClientLabel())
	all := append(a.s.Kafka.Opts(), kgo.ClientID(id), kgo.WithHooks(m))
	cl, err := kgo.NewClient(append(all, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client %s: %w", id, err)
	}
	a.onClose(cl.Close)
	return cl, nil
}
