package processor

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/schemas/deltas"
)

// checkAtLeastOnce reads the deltas topic and fails unless every event is folded into
// some delta and nothing else is, and the deltas merged equal the fold of the events;
// it returns how many events were folded more than once.
func checkAtLeastOnce(t *testing.T, kc kafka.Config, codec *schemas.Codec, events []*kgo.Record) (twice int) {
	t.Helper()
	ds := deltasOf(t, readAll(t, kc.Brokers, kc.DeltasTopic))
	counts := receivedCounts(ds)
	for i := range events {
		ms := receivedAt(i).UnixMilli()
		switch c := counts[ms]; {
		case c == 0:
			t.Errorf("event record %d is in no delta: lost", i)
		case c > 1:
			twice++
		}
		delete(counts, ms)
	}
	if len(counts) > 0 {
		t.Errorf("deltas hold %d arrival times of no produced event", len(counts))
	}
	if diff := diffMerged(ds, decodeAll(t, codec, events)); diff != "" {
		t.Errorf("deltas merged differ from deltas.Fold over the events (-fold +deltas):\n%s", diff)
	}
	t.Logf("%d deltas; %d of %d events folded twice", len(ds), twice, len(events))
	return twice
}

// diffMerged is diffDeltas for deltas that may repeat events: the read model's columns
// only, as Events and ReceivedMS count each copy (checkAtLeastOnce checks them).
func diffMerged(got []deltas.Delta, events []deltas.Event) string {
	want, merged := deltas.Fold(events), mergeDeltas(got)
	for _, ds := range [][]deltas.Delta{want, merged} {
		for i := range ds {
			ds[i].Events, ds[i].ReceivedMS = 0, nil
		}
	}
	return cmp.Diff(want, merged, cmpopts.EquateEmpty())
}

// Kafka refuses some of the at-least-once processor's delta produces for good (the
// records fail): the offsets of those batches must not be committed, so their events
// are folded again by the client that joins after, and none is lost. Marking a batch's
// offsets before its deltas are acknowledged loses them here.
func TestAtLeastOnceCommitsNoOffsetBeforeItsDeltas(t *testing.T) {
	fc := newFaultCase(t, AtLeastOnce, 11, 5, 150)
	c, kc, codec, events, cfg := fc.c, fc.kc, fc.codec, fc.events, fc.cfg
	refused := c.Fault(kfake.Fault{
		Keys: []kmsg.Key{kmsg.Produce}, Topic: kc.DeltasTopic, Err: kerr.InvalidRecord, Count: 3,
	})
	p := newProcessor(t, cfg, kc, prometheus.NewRegistry())
	r := start(t, p)
	adm := admin(t, kc.Brokers)
	eventually(t, time.Minute, "the processor committing every event's offset", func() bool {
		return caughtUp(adm, cfg.Group, kc.EventsTopic)
	})
	r.stop(t)
	if refused.Hits() == 0 {
		t.Fatal("no produce was refused: the test failed nothing")
	}
	if got := testutil.ToFloat64(p.m.txns.WithLabelValues(outcomeAborted)); got < 1 {
		t.Errorf("convsync_processor_transactions_total{outcome=aborted} = %v after refused produces, want at least 1", got)
	}
	checkAtLeastOnce(t, kc, codec, events)
}

// The at-least-once processor dies with none of its offsets committed (every commit is
// refused, and it is killed rather than stopped). A second instance starts from the
// group's committed offsets and folds those events again: some deltas are written twice,
// none is missing, and merged they equal the fold of the events.
func TestAtLeastOnceCrashFoldsAgainAndLosesNothing(t *testing.T) {
	fc := newFaultCase(t, AtLeastOnce, 13, 5, 120)
	c, kc, codec, events, cfg := fc.c, fc.kc, fc.codec, fc.events, fc.cfg

	var dead atomic.Bool
	dead.Store(true)
	refuse := c.Fault(kfake.Fault{
		Keys: []kmsg.Key{kmsg.OffsetCommit}, Group: cfg.Group, Err: kerr.CoordinatorNotAvailable, Count: -1,
		When: func(kmsg.Request) bool { return dead.Load() },
	})
	p1 := newProcessor(t, cfg, kc, prometheus.NewRegistry())
	p1.commitTimeout = time.Second
	r1 := start(t, p1)
	eventually(t, time.Minute, "the first instance producing deltas", func() bool {
		return testutil.ToFloat64(p1.m.deltas) >= 5
	})
	t.Logf("first instance's Run: %v", r1.halt(t))
	adm := admin(t, kc.Brokers)
	if got := committedOffsets(t, adm, cfg.Group, kc.EventsTopic); got != 0 {
		t.Fatalf("the first instance committed %d offsets, want none (its commits refused)", got)
	}
	if refuse.Hits() == 0 {
		t.Fatal("no commit was refused: the test crashed nothing")
	}
	dead.Store(false)

	p2 := newProcessor(t, cfg, kc, prometheus.NewRegistry())
	r2 := start(t, p2)
	eventually(t, time.Minute, "the second instance committing every event's offset", func() bool {
		return caughtUp(adm, cfg.Group, kc.EventsTopic)
	})
	r2.stop(t)

	if checkAtLeastOnce(t, kc, codec, events) == 0 {
		t.Error("no event was folded twice: the second instance did not redo the first one's uncommitted work")
	}
}

// Against the real broker: an at-least-once processor stopped midway commits what it
// produced, so a restart neither loses nor repeats an event, and a second instance
// joining while the first runs takes half the partitions without loss.
func TestAtLeastOnceRebalanceLosesNothing(t *testing.T) {
	t.Parallel()
	kc := testenv.Kafka(t, 6)
	codec := newCodec(t)
	data := loadgenEvents(t, 17, 12, 3000)
	events := produce(t, kc.Brokers, records(t, kc.EventsTopic, 0, data[:300]))
	cfg := testConfig()
	cfg.Delivery = AtLeastOnce
	cfg.MaxPollRecords = 5
	adm := admin(t, kc.Brokers)

	p1 := newProcessor(t, cfg, kc, prometheus.NewRegistry())
	r1 := start(t, p1)
	eventually(t, time.Minute, "the first instance folding some events", func() bool {
		return testutil.ToFloat64(p1.m.txns.WithLabelValues(outcomeCommitted)) >= 3
	})
	// The second instance joins; events keep coming until it has folded some.
	p2 := newProcessor(t, cfg, kc, prometheus.NewRegistry())
	r2 := start(t, p2)
	eventually(t, 2*time.Minute, "the second instance folding events", func() bool {
		if testutil.ToFloat64(p2.m.txns.WithLabelValues(outcomeCommitted)) > 0 {
			return true
		}
		if n := len(events); n < len(data) {
			events = append(events, produce(t, kc.Brokers, records(t, kc.EventsTopic, n, data[n:n+100]))...)
		}
		return false
	})
	eventually(t, 2*time.Minute, "the two instances committing every event's offset", func() bool {
		return caughtUp(adm, cfg.Group, kc.EventsTopic)
	})
	r1.stop(t)
	r2.stop(t)

	checkAtLeastOnce(t, kc, codec, events)
}
