package projector_test

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/projector"
	"github.com/convsync/convsync/schemas/deltas"
)

// One fetch that brings deltas of several partitions commits them in one transaction:
// the writer waits for every partition of the fetch to hand its batch in, rather than
// committing the first one alone while the others are still decoding (two transactions
// and two fsyncs where one does).
func TestOneFetchOfManyPartitionsCommitsInOneTransaction(t *testing.T) {
	t.Parallel()
	const partitions, rounds = 6, 12
	kc := testenv.Kafka(t, partitions)
	pool, _ := testenv.Postgres(t)
	ctx := testenv.Context(t, 2*time.Minute)
	at := time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC)
	rec := func(part, round int) *kgo.Record {
		page := fmt.Sprintf("1044000000%05d", part)
		mid := fmt.Sprintf("m_%d_%d", part, round)
		b, err := deltas.Encode(deltas.Delta{PageID: page, Events: 1, Conversations: []deltas.ConversationDelta{{PSID: "7300000000000921",
			LastAt: at, LastMID: mid, LastDirection: "inbound",
			Messages: []deltas.MessageDelta{{MID: mid, ContentSource: deltas.SourceWebhook, Direction: "inbound", Text: mid, SentAt: at}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Topic: kc.DeltasTopic, Partition: int32(part), Key: []byte(page), Value: b, Headers: deltas.Headers()}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	cfg := projector.Defaults()
	cfg.Group = "rounds-" + testenv.ID()
	cfg.GatherWait = time.Second // a worker delayed by a busy machine is waited for, not timed out
	reg := prometheus.NewRegistry()
	p, err := projector.New(cfg, kc, pool, nil, nil, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	runInBackground(t, p)

	for r := range rounds {
		// Each round is one produce request with a delta for every partition, which the
		// projector's next fetch (it waits up to KAFKA_FETCH_MAX_WAIT) brings at once.
		recs := make([]*kgo.Record, partitions)
		for part := range partitions {
			recs[part] = rec(part, r)
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		want := (r + 1) * partitions
		waitFor(t, 30*time.Second, fmt.Sprintf("round %d's messages in Postgres", r), func() (bool, string) {
			var n int
			err := pool.QueryRow(ctx, `SELECT count(*) FROM messages`).Scan(&n)
			return err == nil && n == want, fmt.Sprintf("%d of %d messages (%v)", n, want, err)
		})
	}
	txns := histogramCount(reg, "convsync_projector_batch_deltas")
	// A fetch may now and then bring a round's partitions apart (the produce lands
	// between two fetches): a split in one round of four is allowed. Without the wait,
	// each fetch is two transactions or more.
	if txns > rounds+rounds/4 {
		t.Errorf("%d projector transactions for %d fetches of %d partitions each, want about one a fetch", txns, rounds, partitions)
	}
	t.Logf("%d transactions for %d rounds", txns, rounds)
}
