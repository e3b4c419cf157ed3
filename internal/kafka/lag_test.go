package kafka_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/testenv"
)

// The lag collector reports, per partition, the records a group has yet to commit.
func TestLagCollectorReportsCommittedLag(t *testing.T) {
	t.Parallel()
	kc := testenv.Kafka(t, 1)
	ctx := testenv.Context(t, time.Minute)
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.Brokers...), kgo.DefaultProduceTopic(kc.EventsTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for range 10 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	adm := kadm.NewClient(cl)
	group := "lag-" + testenv.ID()
	offsets := kadm.Offsets{}
	offsets.AddOffset(kc.EventsTopic, 0, 4, -1)
	if _, err := adm.CommitOffsets(ctx, group, offsets); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(kafka.NewLagCollector(adm, group))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var lag, up float64 = -1, -1
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "convsync_kafka_consumer_lag":
				lag = m.GetGauge().GetValue()
			case "convsync_kafka_consumer_lag_up":
				up = m.GetGauge().GetValue()
			}
		}
	}
	if lag != 6 || up != 1 {
		t.Errorf("lag = %v, up = %v after 10 records and a commit at 4; want 6 and 1", lag, up)
	}
}
