package kafka_test

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/testenv"
)

func TestEnsureTopicsTwiceAgainstRealKafka(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	cfg := kafka.Defaults()
	cfg.Brokers = brokers
	id := testenv.ID()
	cfg.EventsTopic, cfg.DeltasTopic, cfg.DLQTopic = "ensure."+id+".events", "ensure."+id+".deltas", "ensure."+id+".dlq"
	cfg.Partitions = 3
	adm := testenv.Admin(t, cfg)
	ctx := testenv.Context(t, time.Minute)
	t.Cleanup(func() { _, _ = adm.DeleteTopics(ctx, cfg.EventsTopic, cfg.DeltasTopic, cfg.DLQTopic) })

	first, err := kafka.EnsureTopics(ctx, adm, cfg)
	if err != nil {
		t.Fatalf("EnsureTopics() error = %v", err)
	}
	second, err := kafka.EnsureTopics(ctx, adm, cfg)
	if err != nil {
		t.Fatalf("second EnsureTopics() error = %v, want nil", err)
	}
	if len(first) != 3 || len(second) != 3 {
		t.Fatalf("EnsureTopics() described %d then %d topics, want 3 and 3", len(first), len(second))
	}
	for i := range first {
		if !first[i].Created || second[i].Created {
			t.Errorf("topic %s created = %v then %v, want true then false", first[i].Name, first[i].Created, second[i].Created)
		}
		if second[i].Partitions != 3 || second[i].ReplicationFactor != 1 {
			t.Errorf("topic %s has %d partitions, replication %d; want 3 and 1", second[i].Name, second[i].Partitions, second[i].ReplicationFactor)
		}
	}

	// The event log keeps everything: replays read it from the start.
	rc, err := adm.DescribeTopicConfigs(ctx, cfg.EventsTopic)
	if err != nil {
		t.Fatal(err)
	}
	c, err := rc.On(cfg.EventsTopic, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := configValue(c, "retention.ms"); got != "-1" {
		t.Errorf("%s retention.ms = %q, want -1", cfg.EventsTopic, got)
	}
}

func configValue(rc kadm.ResourceConfig, key string) string {
	for _, c := range rc.Configs {
		if c.Key == key && c.Value != nil {
			return *c.Value
		}
	}
	return ""
}

func TestConfigValidateNamesTheVariable(t *testing.T) {
	tests := []struct {
		mutate func(*kafka.Config)
		want   string
	}{
		{func(c *kafka.Config) { c.Brokers = nil }, "KAFKA_BROKERS"},
		{func(c *kafka.Config) { c.Partitions = 0 }, "KAFKA_PARTITIONS"},
		{func(c *kafka.Config) { c.ReplicationFactor = 0 }, "KAFKA_REPLICATION_FACTOR"},
	}
	for _, tt := range tests {
		c := kafka.Defaults()
		tt.mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate() = %v, want an error naming %s", err, tt.want)
		}
	}
}
