package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/schemas/deltas"
	"github.com/convsync/convsync/schemas/dlq"
)

// Config is the projector's configuration.
type Config struct {
	Group        string        // PROJECTOR_GROUP
	BatchRecords int           // PROJECTOR_BATCH_RECORDS: deltas per transaction at most
	BatchBytes   int           // PROJECTOR_BATCH_BYTES: delta bytes per transaction at most
	Linger       time.Duration // PROJECTOR_LINGER: how long a partition waits to fill a batch
	// Writers (PROJECTOR_WRITERS) is how many transactions run in parallel; each commits
	// the waiting batches of the partitions it serves together.
	Writers int
	// GatherWait (PROJECTOR_GATHER_WAIT) bounds how long a writer that took a batch waits
	// for the other partitions of the same fetch to hand theirs in (round.go); 0: it
	// commits what is there.
	GatherWait time.Duration
}

// Defaults returns the configuration used when nothing is set.
func Defaults() Config {
	return Config{Group: "convsync-projector", BatchRecords: 2000, BatchBytes: 8 << 20, Linger: 0, Writers: 1, GatherWait: 5 * time.Millisecond}
}

// Validate reports the first invalid value, naming its variable.
func (c Config) Validate() error {
	switch {
	case c.Group == "":
		return errors.New("PROJECTOR_GROUP must not be empty")
	case c.BatchRecords < 1:
		return fmt.Errorf("PROJECTOR_BATCH_RECORDS must be at least 1, got %d", c.BatchRecords)
	case c.BatchBytes < 1024:
		return fmt.Errorf("PROJECTOR_BATCH_BYTES must be at least 1024, got %d", c.BatchBytes)
	case c.Linger < 0 || c.Linger > time.Second:
		return fmt.Errorf("PROJECTOR_LINGER must be between 0 and 1s, got %s", c.Linger)
	case c.Writers < 1 || c.Writers > 64:
		return fmt.Errorf("PROJECTOR_WRITERS must be between 1 and 64, got %d", c.Writers)
	case c.GatherWait < 0 || c.GatherWait > time.Second:
		return fmt.Errorf("PROJECTOR_GATHER_WAIT must be between 0 and 1s, got %s", c.GatherWait)
	}
	return nil
}

// Hook is called after each commit with what the batch touched, for cache maintenance.
// It runs on the writer's goroutine, before the next transaction: keep it short (readapi.Hook
// raises the cache markers in one round trip; the read API rebuilds entries itself).
type Hook func(ctx context.Context, t Touched)

// Projector consumes the deltas topic into the read model.
type Projector struct {
	cfg   Config
	kc    kafka.Config
	opts  []kgo.Opt
	pool  *pgxpool.Pool
	w     *Writer
	hook  Hook
	m     *metrics
	log   *slog.Logger
	ready chan struct{}

	cl      *kgo.Client
	mu      sync.Mutex
	workers map[int32]*worker
	gaps    map[int32]bool // partitions refused for a gap in the log (gap.go)

	writers     []chan commitReq
	writersDone chan struct{}
}

// New validates and allocates; Run does the work. opts are extra client options (client
// id, metrics hooks); brokers come from kc.
func New(cfg Config, kc kafka.Config, pool *pgxpool.Pool, opts []kgo.Opt, hook Hook, reg prometheus.Registerer, log *slog.Logger) (*Projector, error) {
	schemas.Pretouch(deltas.Delta{}) // the delta codec compiled now, not on the first batch
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := kc.Validate(); err != nil {
		return nil, err
	}
	if hook == nil {
		hook = func(context.Context, Touched) {}
	}
	m, err := newMetrics(reg, kc.DeltasTopic)
	if err != nil {
		return nil, err
	}
	return &Projector{cfg: cfg, kc: kc, opts: opts, pool: pool, w: NewWriter(pool), hook: hook,
		m: m, log: log, ready: make(chan struct{}), workers: map[int32]*worker{}, gaps: map[int32]bool{}}, nil
}

// Ready is closed once the consumer runs.
func (p *Projector) Ready() <-chan struct{} { return p.ready }

// Ping reports whether Postgres and a Kafka broker answer.
func (p *Projector) Ping(ctx context.Context) error {
	if err := p.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	p.mu.Lock()
	cl := p.cl
	p.mu.Unlock()
	if cl == nil {
		return errors.New("kafka: not started")
	}
	return cl.Ping(ctx)
}

// Run consumes until ctx is cancelled, then lets every partition finish its batch and
// returns nil.
func (p *Projector) Run(ctx context.Context) error {
	opts := append(p.kc.Opts(), p.opts...)
	opts = append(opts,
		kgo.ConsumerGroup(p.cfg.Group),
		kgo.ConsumeTopics(p.kc.DeltasTopic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Kafka's committed offsets only show lag; Postgres holds the real ones.
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(time.Second),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(p.assigned),
		kgo.OnPartitionsRevoked(p.revoked),
		kgo.OnPartitionsLost(p.revoked),
		kgo.AdjustFetchOffsetsFn(p.resume),
		// An offset the log no longer holds is never skipped silently: the partition
		// stops and says so (gap.go).
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
	)
	p.writersDone = make(chan struct{})
	var wg sync.WaitGroup
	for i := range p.cfg.Writers {
		ch := make(chan commitReq)
		p.writers = append(p.writers, ch)
		wg.Go(func() { p.write(i, ch) })
	}
	defer func() {
		close(p.writersDone) // after every partition goroutine has stopped
		wg.Wait()
	}()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("projector kafka client: %w", err)
	}
	p.mu.Lock()
	p.cl = cl
	p.mu.Unlock()
	close(p.ready)
	defer func() {
		cl.CloseAllowingRebalance() // revokes: every worker finishes and stops
		p.stopAll()
	}()
	for {
		fetches := cl.PollRecords(ctx, 10_000)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(t string, part int32, err error) {
			if errors.Is(err, kerr.OffsetOutOfRange) {
				p.refuseGap(ctx, cl, t, part)
				return
			}
			p.log.Warn("fetch", "topic", t, "partition", part, "error", err)
		})
		var r *round
		if fetches.NumRecords() > 0 {
			r = newRound(len(p.writers))
		}
		fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
			if len(ftp.Records) == 0 {
				return
			}
			p.mu.Lock()
			w := p.workers[ftp.Partition]
			p.mu.Unlock()
			if w == nil {
				return // revoked meanwhile
			}
			d := delivery{recs: ftp.Records}
			if len(w.in) == 0 {
				// A worker with deliveries queued hands this one in only after them: its
				// writer would wait for it in vain.
				d.round = r
				r.enrol(w.partition, w.writer)
			}
			select {
			case w.in <- d:
			case <-w.quit:
				d.round.settle(w.partition, w.writer)
			case <-ctx.Done():
				d.round.settle(w.partition, w.writer)
			}
		})
		if r != nil {
			r.dispatched()
		}
		cl.AllowRebalance()
	}
}

// resume replaces Kafka's committed offsets with those stored in Postgres next to the
// rows: the read model, not the group, says where to go on.
func (p *Projector) resume(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	for topic, parts := range offsets {
		for part := range parts {
			var next int64
			err := p.pool.QueryRow(ctx, `SELECT next_offset FROM projector_offsets
				WHERE consumer_group = $1 AND topic = $2 AND partition = $3`, p.cfg.Group, topic, part).Scan(&next)
			switch {
			case err == nil:
				parts[part] = kgo.NewOffset().At(next).WithEpoch(-1)
			case errors.Is(err, pgx.ErrNoRows):
				parts[part] = kgo.NewOffset().AtStart().WithEpoch(-1)
			default:
				return nil, fmt.Errorf("load offsets %s/%d: %w", topic, part, err)
			}
			p.log.Info("resume partition", "topic", topic, "partition", part, "offset", parts[part].EpochOffset().Offset)
		}
	}
	return offsets, nil
}

func (p *Projector) assigned(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, parts := range assigned {
		for _, part := range parts {
			w := &worker{p: p, partition: part, writer: int(part) % len(p.writers), in: make(chan delivery, 4), quit: make(chan struct{}), done: make(chan struct{})}
			p.workers[part] = w
			go w.run(cl)
		}
	}
}

func (p *Projector) revoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	var stopping []*worker
	p.mu.Lock()
	for _, parts := range revoked {
		for _, part := range parts {
			if w := p.workers[part]; w != nil {
				delete(p.workers, part)
				p.clearGap(part)
				stopping = append(stopping, w)
			}
		}
	}
	p.mu.Unlock()
	for _, w := range stopping {
		close(w.quit)
	}
	for _, w := range stopping {
		<-w.done
	}
}

func (p *Projector) stopAll() {
	p.mu.Lock()
	all := p.workers
	p.workers = map[int32]*worker{}
	p.mu.Unlock()
	for _, w := range all {
		close(w.quit)
	}
	for _, w := range all {
		<-w.done
	}
}

// worker owns one partition: it batches by count, bytes and linger, and applies each
// batch in one transaction. On quit it applies what it holds, then stops.
type worker struct {
	p         *Projector
	partition int32
	writer    int // the index of the writer its batches go to
	in        chan delivery
	quit      chan struct{}
	done      chan struct{}
	// stored is the partition's next offset in Postgres as of this worker's last commit;
	// nil before its first, and after a failure (the writer then reads it).
	stored *int64
	// cur is the round of the delivery being worked on, until its share is settled.
	cur *round
}

// delivery is one fetch's records of the partition.
type delivery struct {
	recs  []*kgo.Record
	round *round
}

// settle settles the current delivery's share of its round: its batch is with the
// writer, or there is none to hand in now.
func (w *worker) settle() {
	w.cur.settle(w.partition, w.writer)
	w.cur = nil
}

func (w *worker) run(cl *kgo.Client) {
	defer close(w.done)
	// The worker's context outlives a rebalance until its batch is committed; only the
	// process ending cancels it (through the client closing and quit).
	ctx := context.Background()
	var batch []*kgo.Record
	bytes := 0
	var linger <-chan time.Time
	flush := func() bool {
		if len(batch) == 0 {
			return true
		}
		err := w.apply(ctx, cl, batch)
		batch, bytes, linger = batch[:0], 0, nil
		if err != nil {
			w.p.log.Error("apply batch: partition stops until the next rebalance", "topic", w.p.kc.DeltasTopic, "partition", w.partition, "error", err)
			return false
		}
		return true
	}
	for {
		select {
		case d := <-w.in:
			w.cur = d.round
			for _, r := range d.recs {
				batch = append(batch, r)
				bytes += len(r.Value)
				if len(batch) >= w.p.cfg.BatchRecords || bytes >= w.p.cfg.BatchBytes {
					if !flush() {
						w.drain()
						return
					}
				}
			}
			switch {
			case len(batch) == 0 || linger != nil:
			case w.p.cfg.Linger == 0:
				if !flush() {
					w.drain()
					return
				}
			default:
				linger = time.After(w.p.cfg.Linger)
			}
			w.settle()
		case <-linger:
			if !flush() {
				w.drain()
				return
			}
		case <-w.quit:
			flush()
			w.discard()
			return
		}
	}
}

// drain discards what arrives after a failed batch until quit: the partition resumes
// from Postgres's offsets at the next assignment, so nothing is lost.
func (w *worker) drain() {
	w.settle()
	for {
		select {
		case d := <-w.in:
			d.round.settle(w.partition, w.writer)
		case <-w.quit:
			w.discard()
			return
		}
	}
}

// discard settles the deliveries still queued when the worker stops.
func (w *worker) discard() {
	for {
		select {
		case d := <-w.in:
			d.round.settle(w.partition, w.writer)
		default:
			return
		}
	}
}

func (w *worker) apply(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) error {
	start := time.Now()
	in := make([]Input, 0, len(recs))
	for _, r := range recs {
		d, err := deltas.Decode(r.Value)
		if err != nil {
			if err := w.deadLetter(ctx, cl, r, err); err != nil {
				return err
			}
			continue
		}
		in = append(in, Input{Offset: r.Offset, Delta: d})
	}
	last := recs[len(recs)-1]
	pos := &Position{Group: w.p.cfg.Group, Topic: last.Topic, Partition: last.Partition, From: recs[0].Offset, Next: last.Offset + 1, Stored: w.stored}
	// Postgres away (a failover, a restart) is waited out: the batch is retried with a
	// capped backoff until it commits or the partition is taken away. Only a fence (the
	// partition's offsets moved under us, read under a lock: another instance owns it now)
	// gives up; a fence against the offset this worker remembered is retried at once
	// with the stored one, as the first batch of an assignment reads it.
	var err error
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err = w.commit(ctx, Part{Pos: pos, In: in}, len(recs), start)
		if refused(err) {
			err = w.isolate(ctx, cl, recs, in, pos, start)
		}
		if errors.Is(err, ErrFenced) && pos.Stored != nil {
			pos.Stored = nil
			continue
		}
		if err == nil || errors.Is(err, ErrFenced) {
			break
		}
		pos.Stored = nil // the commit may have happened: read what is stored
		w.p.m.retries.Inc()
		w.p.log.Warn("apply batch, retrying", "topic", last.Topic, "partition", last.Partition, "attempt", attempt, "backoff", backoff, "error", err)
		select {
		case <-time.After(backoff):
		case <-w.quit:
			return err
		}
		backoff = min(2*backoff, 10*time.Second)
	}
	if err != nil {
		w.stored = nil
		return err
	}
	w.stored = pos.Stored
	w.p.observeStages(recs, in, start, time.Now())
	cl.MarkCommitRecords(last)
	return nil
}

// commitReq is one partition's batch waiting for a writer.
type commitReq struct {
	part  Part
	nd    int
	start time.Time
	round *round // of the fetch it came in; nil: none to wait for
	done  chan error
}

// commit hands the partition's batch to its writer, with the delivery's share of its
// round, and waits until the batch is committed. A partition always goes to the
// same writer, so its batches commit in order.
func (w *worker) commit(ctx context.Context, part Part, nd int, start time.Time) error {
	p := w.p
	req := commitReq{part: part, nd: nd, start: start, round: w.cur, done: make(chan error, 1)}
	select {
	case p.writers[w.writer] <- req:
		w.cur = nil // the writer settles the share as it takes the batch
	case <-p.writersDone:
		return errors.New("projector stopped")
	}
	return <-req.done
}

// taken settles the share of the batch's round as the writer takes it: from then on
// the round waits for no more of this partition, and the writer that holds it does not
// take it for one still to come.
func (r commitReq) taken(writer int) commitReq {
	r.round.settle(r.part.Pos.Partition, writer)
	return r
}

// write is one writer: it takes the batches waiting for it, from every partition it
// serves, and commits them in one transaction (group commit), so that many small
// batches at low load cost one transaction, not one each. Several writers run in
// parallel (PROJECTOR_WRITERS).
func (p *Projector) write(writer int, in <-chan commitReq) {
	for {
		var reqs []commitReq
		select {
		case r := <-in:
			reqs = append(reqs, r.taken(writer))
		case <-p.writersDone:
			return
		}
		reqs = p.gather(in, writer, reqs)
		err := p.applyGroup(reqs)
		if err != nil && len(reqs) > 1 {
			// One partition's batch may be what failed (or was fenced): commit the others
			// without it, so a bad batch holds back only its own partition. The group's
			// commit may have happened though its answer was lost: read the offsets.
			for _, r := range reqs {
				r.part.Pos.Stored = nil
				r.done <- p.applyGroup([]commitReq{r})
			}
			continue
		}
		for _, r := range reqs {
			r.done <- err
		}
	}
}

// gather adds the batches waiting for the writer to reqs, up to BatchRecords deltas, and
// waits (GatherWait at most) for the rest of the rounds they came in: until the
// writer's part of each is complete, or waiting is in vain because a partition whose
// batch it holds (so whose worker waits for this commit) still owes a share.
func (p *Projector) gather(in <-chan commitReq, writer int, reqs []commitReq) []commitReq {
	nd := reqs[0].nd
	var timeout <-chan time.Time
	for nd < p.cfg.BatchRecords {
		select {
		case r := <-in:
			reqs = append(reqs, r.taken(writer))
			nd += r.nd
			continue
		default:
		}
		wait := openRound(reqs, writer)
		if wait == nil {
			return reqs
		}
		if timeout == nil {
			if p.cfg.GatherWait == 0 {
				return reqs
			}
			timeout = time.After(p.cfg.GatherWait)
		}
		select {
		case r := <-in:
			reqs = append(reqs, r.taken(writer))
			nd += r.nd
		case <-wait:
		case <-timeout:
			return reqs
		}
	}
	return reqs
}

// openRound is the done channel of a round of reqs whose part for writer is not
// complete and worth waiting for; nil when there is none.
func openRound(reqs []commitReq, writer int) <-chan struct{} {
	for _, r := range reqs {
		if r.round == nil {
			continue
		}
		done := r.round.done[writer]
		select {
		case <-done:
			continue
		default:
		}
		for _, held := range reqs {
			if r.round.owes(held.part.Pos.Partition) {
				return nil
			}
		}
		return done
	}
	return nil
}

func (p *Projector) applyGroup(reqs []commitReq) error {
	parts := make([]Part, len(reqs))
	nd := 0
	for i, r := range reqs {
		parts[i] = r.part
		nd += r.nd
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := p.w.ApplyMany(ctx, parts)
	if err != nil {
		return err
	}
	p.observe(res, nd, time.Since(reqs[0].start))
	p.hook(ctx, res.Touched)
	return nil
}

// deadLetter sends a delta that does not decode to the DLQ with the reason, and waits
// for the acknowledgement: the batch commits past it only once it is safe there.
func (w *worker) deadLetter(ctx context.Context, cl *kgo.Client, r *kgo.Record, cause error) error {
	dl := dlq.New(r, w.p.kc.DLQTopic, dlq.CategoryDecode, cause, time.Now())
	if err := cl.ProduceSync(ctx, dl).FirstErr(); err != nil {
		return fmt.Errorf("dead-letter delta %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
	}
	w.p.m.deadLetters.WithLabelValues(r.Topic, dlq.CategoryDecode).Inc()
	w.p.log.Warn("undecodable delta sent to the DLQ", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "error", cause)
	return nil
}
