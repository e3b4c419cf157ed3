package kafka_test

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

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
		{func(c *kafka.Config) { c.FetchMaxWait = time.Millisecond }, "KAFKA_FETCH_MAX_WAIT"},
		{func(c *kafka.Config) { c.FetchMinBytes = -1 }, "KAFKA_FETCH_MIN_BYTES"},
	}
	for _, tt := range tests {
		c := kafka.Defaults()
		tt.mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate() = %v, want an error naming %s", err, tt.want)
		}
	}
}

// Every client built from Opts batches its fetches as configured; 0 leaves franz-go's
// default.
func TestOptsCarryTheFetchBatching(t *testing.T) {
	c := kafka.Defaults()
	cl, err := kgo.NewClient(c.Opts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if got := cl.OptValue(kgo.FetchMaxWait); got != 10*time.Millisecond {
		t.Errorf("FetchMaxWait = %v, want 10ms", got)
	}
	if got := cl.OptValue(kgo.FetchMinBytes); got != int32(64<<10) {
		t.Errorf("FetchMinBytes = %v, want 65536", got)
	}
	c.FetchMaxWait, c.FetchMinBytes = 0, 0
	off, err := kgo.NewClient(c.Opts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	if got := off.OptValue(kgo.FetchMinBytes); got != int32(1) {
		t.Errorf("FetchMinBytes with 0 = %v, want franz-go's 1", got)
	}
}
