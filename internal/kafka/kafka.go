// Package kafka holds the Kafka configuration shared by every role (brokers, topic names,
// partitioning) and creates the topics with kadm. The topics are the event log
// (convsync.events.v1, kept forever: it is the source of truth and replays read it),
// the processor's compacted deltas (convsync.deltas.v1) and the dead-letter queue
// (convsync.dlq.v1). Every record is keyed by page id, so a page's events share a
// partition and keep their order.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config is the Kafka configuration.
type Config struct {
	Brokers           []string // KAFKA_BROKERS
	ClientID          string   // KAFKA_CLIENT_ID
	EventsTopic       string   // KAFKA_EVENTS_TOPIC
	DeltasTopic       string   // KAFKA_DELTAS_TOPIC
	DLQTopic          string   // KAFKA_DLQ_TOPIC
	Partitions        int      // KAFKA_PARTITIONS
	ReplicationFactor int      // KAFKA_REPLICATION_FACTOR
	// SessionTimeout is how long the group waits for a member that stopped heartbeating
	// (a crashed process) before giving its partitions to others.
	SessionTimeout time.Duration // KAFKA_SESSION_TIMEOUT
	// FetchMaxWait and FetchMinBytes batch what the consumers (processor, projector) fetch:
	// the broker answers a fetch once FetchMinBytes are there or FetchMaxWait has passed.
	// At a few thousand events a second a fetch for every record or two, and the small
	// transactions and commits that follow, cost more CPU than the events themselves
	// (issue 12: 1.52 against 1.21 CPU s per 1,000 events at 1,000/s); under a backlog the
	// bytes are there at once and nothing waits. 0 leaves franz-go's default (1 byte, 5 s).
	FetchMaxWait  time.Duration // KAFKA_FETCH_MAX_WAIT
	FetchMinBytes int           // KAFKA_FETCH_MIN_BYTES
}

// Defaults returns the configuration used when nothing is set.
func Defaults() Config {
	return Config{
		Brokers:           []string{"127.0.0.1:9092"},
		ClientID:          "convsync",
		EventsTopic:       "convsync.events.v1",
		DeltasTopic:       "convsync.deltas.v1",
		DLQTopic:          "convsync.dlq.v1",
		Partitions:        12,
		ReplicationFactor: 1,
		SessionTimeout:    45 * time.Second,
		FetchMaxWait:      10 * time.Millisecond,
		FetchMinBytes:     64 << 10,
	}
}

// Validate reports the first invalid value, naming its variable.
func (c Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("KAFKA_BROKERS is required (host:port, comma-separated)")
	case c.EventsTopic == "" || c.DeltasTopic == "" || c.DLQTopic == "":
		return errors.New("KAFKA_EVENTS_TOPIC, KAFKA_DELTAS_TOPIC and KAFKA_DLQ_TOPIC must not be empty")
	case c.Partitions < 1:
		return fmt.Errorf("KAFKA_PARTITIONS must be at least 1, got %d", c.Partitions)
	case c.ReplicationFactor < 1:
		return fmt.Errorf("KAFKA_REPLICATION_FACTOR must be at least 1, got %d", c.ReplicationFactor)
	case c.SessionTimeout < 6*time.Second || c.SessionTimeout > 30*time.Minute:
		return fmt.Errorf("KAFKA_SESSION_TIMEOUT must be between 6s (the broker's minimum) and 30m, got %s", c.SessionTimeout)
	case c.FetchMaxWait != 0 && (c.FetchMaxWait < 10*time.Millisecond || c.FetchMaxWait > 5*time.Second):
		return fmt.Errorf("KAFKA_FETCH_MAX_WAIT must be between 10ms (franz-go's minimum) and 5s, got %s", c.FetchMaxWait)
	case c.FetchMinBytes < 0 || c.FetchMinBytes > 16<<20:
		return fmt.Errorf("KAFKA_FETCH_MIN_BYTES must be between 0 and 16777216, got %d", c.FetchMinBytes)
	}
	return nil
}

// Opts are the client options every convsync client starts from.
func (c Config) Opts() []kgo.Opt {
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.ClientID(c.ClientID)}
	if c.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(c.SessionTimeout))
	}
	if c.FetchMaxWait > 0 {
		opts = append(opts, kgo.FetchMaxWait(c.FetchMaxWait))
	}
	if c.FetchMinBytes > 0 {
		opts = append(opts, kgo.FetchMinBytes(int32(c.FetchMinBytes)))
	}
	return opts
}

// TopicSpec is one topic convsync needs and its configuration.
type TopicSpec struct {
	Name    string
	Configs map[string]*string
}

// Topics lists the topics with their configuration. The event log keeps every record
// (retention.ms=-1): replay rebuilds the read model from it.
func (c Config) Topics() []TopicSpec {
	minISR := strconv.Itoa(min(2, c.ReplicationFactor))
	return []TopicSpec{
		{c.EventsTopic, map[string]*string{"retention.ms": kadm.StringPtr("-1"), "min.insync.replicas": &minISR}},
		{c.DeltasTopic, map[string]*string{"retention.ms": kadm.StringPtr(strconv.Itoa(7 * 24 * 3600 * 1000)), "min.insync.replicas": &minISR}},
		{c.DLQTopic, map[string]*string{"retention.ms": kadm.StringPtr(strconv.Itoa(30 * 24 * 3600 * 1000)), "min.insync.replicas": &minISR}},
	}
}

// TopicState is a topic as the cluster has it.
type TopicState struct {
	Name              string
	Partitions        int
	ReplicationFactor int
	Created           bool // created by this call
}

// EnsureTopics creates the missing topics and leaves existing ones as they are (growing
// partitions would move pages to other partitions, so that stays a deliberate act).
// Running it again is harmless.
func EnsureTopics(ctx context.Context, adm *kadm.Client, c Config) ([]TopicState, error) {
	created := map[string]bool{}
	for _, t := range c.Topics() {
		resp, err := adm.CreateTopic(ctx, int32(c.Partitions), int16(c.ReplicationFactor), t.Configs, t.Name)
		switch {
		case err == nil:
			created[t.Name] = true
		case errors.Is(err, kerr.TopicAlreadyExists):
		default:
			return nil, fmt.Errorf("create topic %s: %w", t.Name, errors.Join(err, errorMessage(resp.ErrMessage)))
		}
	}
	names := make([]string, 0, 3)
	for _, t := range c.Topics() {
		names = append(names, t.Name)
	}
	// A new topic's metadata, and its partitions' leaders, reach the brokers a moment after
	// creation: wait for them.
	var states []TopicState
	var err error
	for attempt := 0; ; attempt++ {
		states, err = DescribeTopics(ctx, adm, names...)
		if err == nil || !errors.Is(err, kerr.UnknownTopicOrPartition) || attempt == 50 {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err != nil {
		return nil, err
	}
	for i := range states {
		states[i].Created = created[states[i].Name]
	}
	return states, nil
}

func errorMessage(m string) error {
	if m == "" {
		return nil
	}
	return errors.New(m)
}

// DescribeTopics reports the named topics' partitions and replication.
func DescribeTopics(ctx context.Context, adm *kadm.Client, names ...string) ([]TopicState, error) {
	details, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	out := make([]TopicState, 0, len(details))
	for _, d := range details.Sorted() {
		if d.Err != nil {
			return nil, fmt.Errorf("describe topic %s: %w", d.Topic, d.Err)
		}
		rf := 0
		for _, p := range d.Partitions {
			if p.Err != nil || p.Leader < 0 {
				return nil, fmt.Errorf("describe topic %s partition %d: %w", d.Topic, p.Partition, errors.Join(p.Err, kerr.UnknownTopicOrPartition))
			}
			rf = max(rf, len(p.Replicas))
		}
		out = append(out, TopicState{Name: d.Topic, Partitions: len(d.Partitions), ReplicationFactor: rf})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ProducerBatchMaxBytes is the most a convsync producer puts in one record batch, so
// the largest record it can write: franz-go's default, under the brokers' default
// max.message.bytes (1,048,588). The processor checks its records against it before it
// produces, rather than have Kafka refuse them in the middle of a transaction.
const ProducerBatchMaxBytes = 1_000_012
