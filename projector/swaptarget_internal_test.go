package projector

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/internal/testenv"
)

// At least once, the processor produces a batch's deltas before it commits the batch's
// offsets, and the live projector may apply them in between. The replay must then
// rebuild past the processor's committed offsets before it swaps: up to what the log
// holds when the swap locks the projector out. With the committed offsets alone as the
// target, the events of those deltas would be in neither the rebuilt tables nor any
// delta applied after the swap.
func TestSwapTargetCoversEventsPastTheProcessorsCommit(t *testing.T) {
	t.Parallel()
	kc := testenv.Kafka(t, 2)
	ctx := testenv.Context(t, time.Minute)
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := range 20 {
		recs = append(recs, &kgo.Record{Topic: kc.EventsTopic, Partition: int32(i % 2), Value: []byte("{}")})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// The processor folded everything but committed only the first 3 of each partition.
	group := "swap-target-" + testenv.ID()
	adm := kadm.NewClient(cl)
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: kc.EventsTopic, Partition: 0, At: 3})
	offs.Add(kadm.Offset{Topic: kc.EventsTopic, Partition: 1, At: 3})
	if res, err := adm.CommitOffsets(ctx, group, offs); err != nil || res.Error() != nil {
		t.Fatalf("commit the processor's offsets: %v %v", err, res.Error())
	}

	r := &rebuild{cfg: ReplayConfig{ProcessorGroup: group}, kc: kc, adm: adm, total: 20}
	target, err := r.processorOffsets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for part := range int32(2) {
		if target[part] != 10 {
			t.Errorf("swap target of partition %d = %d, want 10 (the log's end), not the processor's committed 3", part, target[part])
		}
	}
}
