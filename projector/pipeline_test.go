package projector_test

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/logging"
	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/pipelinetest"
	"github.com/convsync/convsync/processor"
	"github.com/convsync/convsync/projector"
	"github.com/convsync/convsync/schemas"
)

// stage runs a processor and a projector on the test's topics until stop is called.
type stage struct {
	stop func()
	done chan struct{}
}

func startPipeline(t *testing.T, kc kafka.Config, pool *pgxpool.Pool, procGroup, projGroup string) *stage {
	t.Helper()
	codec, err := schemas.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	pcfg := processor.Defaults()
	pcfg.Group = procGroup
	pcfg.TransactionalID = procGroup + "-" + testenv.ID()
	proc, err := processor.New(pcfg, kc, codec, nil, prometheus.NewRegistry(), logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	jcfg := projector.Defaults()
	jcfg.Group = projGroup
	proj, err := projector.New(jcfg, kc, pool, nil, nil, prometheus.NewRegistry(), logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &stage{done: make(chan struct{})}
	errs := make(chan error, 2)
	go func() { errs <- proc.Run(ctx) }()
	go func() { errs <- proj.Run(ctx) }()
	go func() {
		for range 2 {
			if err := <-errs; err != nil {
				t.Errorf("pipeline stage returned %v, want nil on cancel", err)
			}
		}
		close(s.done)
	}()
	s.stop = func() { cancel(); <-s.done }
	t.Cleanup(s.stop)
	return s
}

func produce(t *testing.T, kc kafka.Config, evs []pipelinetest.Event) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.Brokers...), kgo.DefaultProduceTopic(kc.EventsTopic), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, len(evs))
	for i, e := range evs {
		recs[i] = &kgo.Record{Key: []byte(e.Env.PageID), Value: e.Raw}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatalf("produce events: %v", err)
	}
}

// waitRows polls the read model until it equals want or the deadline passes, and returns
// the last rows read.
func waitRows(t *testing.T, pool *pgxpool.Pool, want projector.Rows, d time.Duration) projector.Rows {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got, err := projector.Dump(context.Background(), pool)
		if err != nil {
			t.Fatal(err)
		}
		if RowsDiff(want, got) == "" || time.Now().After(deadline) {
			return got
		}
		time.Sleep(100 * time.Millisecond) // polling a condition with a deadline
	}
}

// reportBySeed fails the test naming every seed whose rows differ, with its diff, so a
// failing seed can be replayed alone.
func reportBySeed(t *testing.T, refs map[uint64]projector.Rows, got projector.Rows) {
	t.Helper()
	for seed, want := range refs {
		prefix := "s" + strconv.FormatUint(seed, 10) + "-"
		if diff := RowsDiff(want, filter(got, prefix)); diff != "" {
			t.Errorf("seed %d: rows differ from the reference fold (-want +got):\n%s", seed, diff)
		}
	}
}

func filter(r projector.Rows, prefix string) projector.Rows {
	var out projector.Rows
	for _, p := range r.Pages {
		if strings.HasPrefix(p.PageID, prefix) {
			out.Pages = append(out.Pages, p)
		}
	}
	for _, c := range r.Conversations {
		if strings.HasPrefix(c.PageID, prefix) {
			out.Conversations = append(out.Conversations, c)
		}
	}
	for _, m := range r.Messages {
		if strings.HasPrefix(m.PageID, prefix) {
			out.Messages = append(out.Messages, m)
		}
	}
	for _, e := range r.Events {
		if strings.HasPrefix(e.PageID, prefix) {
			out.Events = append(out.Events, e)
		}
	}
	return out
}

func histories(t *testing.T, n int, from uint64) ([]pipelinetest.Event, map[uint64]projector.Rows, projector.Rows) {
	t.Helper()
	var all []pipelinetest.Event
	refs := map[uint64]projector.Rows{}
	for seed := from; seed < from+uint64(n); seed++ {
		evs, err := pipelinetest.History(seed, pipelinetest.DefaultHistoryConfig())
		if err != nil {
			t.Fatal(err)
		}
		refs[seed] = pipelinetest.Reference(evs)
		all = append(all, evs...)
	}
	rand.New(rand.NewPCG(from, 3)).Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	return all, refs, pipelinetest.Reference(all)
}

// Invariants 2, 3 and 4 end to end: hundreds of random histories, with duplicates and
// reordering, go through the real Kafka, processor and projector, and every row in
// Postgres equals the reference fold. -seeds=N runs more; a failing seed is named.
func TestPipelineMatchesReferenceFold(t *testing.T) {
	t.Parallel()
	kc := testenv.Kafka(t, 4)
	pool, _ := testenv.Postgres(t)
	all, refs, want := histories(t, *seeds, 1000)
	startPipeline(t, kc, pool, "proc-"+testenv.ID(), "proj-"+testenv.ID())
	produce(t, kc, all)
	got := waitRows(t, pool, want, 90*time.Second)
	reportBySeed(t, refs, got)
}

// Crashes in process: the processor and projector are stopped at random points while
// events flow and started again (new instances, same groups); no message is lost and
// none counted twice.
func TestPipelineSurvivesRestartsMidStream(t *testing.T) {
	t.Parallel()
	kc := testenv.Kafka(t, 4)
	pool, _ := testenv.Postgres(t)
	all, refs, want := histories(t, 60, 5000)
	procGroup, projGroup := "proc-"+testenv.ID(), "proj-"+testenv.ID()
	rng := rand.New(rand.NewPCG(9, 9))
	chunks := 5
	for i := range chunks {
		lo, hi := i*len(all)/chunks, (i+1)*len(all)/chunks
		s := startPipeline(t, kc, pool, procGroup, projGroup)
		produce(t, kc, all[lo:hi])
		// Crash at a random point: mid-batch, mid-transaction or idle.
		<-time.After(time.Duration(rng.IntN(500)) * time.Millisecond)
		s.stop()
	}
	startPipeline(t, kc, pool, procGroup, projGroup)
	got := waitRows(t, pool, want, 90*time.Second)
	reportBySeed(t, refs, got)
}
