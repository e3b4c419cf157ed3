package app

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/convsync/convsync/internal/kafka"
)

// kafkaOpts are the options of a client a component creates itself (processor,
// projector): the role's client id and its metrics on the process's registry.
func (a *Process) kafkaOpts(role string) []kgo.Opt {
	m := kprom.NewMetrics("convsync_kafka", kprom.Registerer(a.reg), kprom.WithClientLabel())
	return []kgo.Opt{kgo.ClientID(a.s.Kafka.ClientID + "-" + role), kgo.WithHooks(m)}
}

// kafkaClient builds a client for one role, with its client id suffixed by the role and
// its metrics (kprom) on the process's registry. It is closed when the process ends.
func (a *Process) kafkaClient(role string, opts ...kgo.Opt) (*kgo.Client, error) {
	all := append(a.s.Kafka.Opts(), a.kafkaOpts(role)...)
	cl, err := kgo.NewClient(append(all, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client %s-%s: %w", a.s.Kafka.ClientID, role, err)
	}
	a.onClose(cl.Close)
	return cl, nil
}

// watchLag adds group to the process's consumer-lag collector, creating it (and its
// admin client) the first time.
func (a *Process) watchLag(group string) error {
	if a.lag == nil {
		cl, err := a.kafkaClient("admin")
		if err != nil {
			return err
		}
		a.lag = kafka.NewLagCollector(kadm.NewClient(cl))
		a.reg.MustRegister(a.lag)
	}
	a.lag.Add(group)
	return nil
}
