package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/schemas/deltas"
)

// Delivery modes of the processor (PROCESSOR_DELIVERY).
const (
	// AtLeastOnce produces each batch's deltas with the idempotent producer and marks the
	// consumed offsets once Kafka acknowledged them; the marks are committed every
	// second, on a rebalance and on shutdown. After a crash the events since the last
	// commit are folded again, so some deltas are written twice, which the projector's
	// merge (deltas are joins) absorbs: the read model is the same. It costs one produce
	// per batch.
	AtLeastOnce = "at-least-once"
	// ExactlyOnce commits each batch's deltas and consumed offsets in one Kafka
	// transaction: a reader with read_committed sees every event folded into exactly one
	// delta. It costs about six broker round trips per batch.
	ExactlyOnce = "exactly-once"
)

// Config is the processor's configuration.
type Config struct {
	Group string // PROCESSOR_GROUP: the consumer group of the events topic
	// Delivery (PROCESSOR_DELIVERY) is AtLeastOnce or ExactlyOnce: see those.
	Delivery string
	// TransactionalID (PROCESSOR_TRANSACTIONAL_ID) must be unique per running instance:
	// two instances with one id fence each other. Empty means <Group>-<hostname>-<pid>.
	TransactionalID string
	// MaxPollRecords (PROCESSOR_MAX_POLL_RECORDS) bounds the records of one batch, and so
	// of one transaction and the memory it holds. Larger batches compact more.
	MaxPollRecords int
	// TransactionTimeout (PROCESSOR_TRANSACTION_TIMEOUT): the broker aborts a transaction
	// that has not ended by then. It also bounds how long a batch may wait for Kafka, and
	// how long a new instance waits for the transaction of one that crashed.
	TransactionTimeout time.Duration
	// MaxDeltaBytes (PROCESSOR_MAX_DELTA_BYTES): a page's delta larger than this is split
	// into several, so no record exceeds what the brokers accept (max.message.bytes).
	MaxDeltaBytes int
}

// Defaults returns the configuration used when nothing is set.
func Defaults() Config {
	return Config{
		Group:              "convsync-processor",
		Delivery:           AtLeastOnce,
		MaxPollRecords:     5000,
		TransactionTimeout: 30 * time.Second,
		MaxDeltaBytes:      512 << 10,
	}
}

// Validate reports the first invalid value, naming its variable.
func (c Config) Validate() error {
	switch {
	case strings.TrimSpace(c.Group) == "":
		return errors.New("PROCESSOR_GROUP must not be empty")
	case c.Delivery != AtLeastOnce && c.Delivery != ExactlyOnce:
		return fmt.Errorf("PROCESSOR_DELIVERY must be %s or %s, got %q", AtLeastOnce, ExactlyOnce, c.Delivery)
	case c.TransactionalID != strings.TrimSpace(c.TransactionalID):
		return fmt.Errorf("PROCESSOR_TRANSACTIONAL_ID must not begin or end with spaces, got %q", c.TransactionalID)
	case c.MaxPollRecords < 1 || c.MaxPollRecords > 100_000:
		return fmt.Errorf("PROCESSOR_MAX_POLL_RECORDS must be between 1 and 100000, got %d", c.MaxPollRecords)
	case c.TransactionTimeout < time.Second || c.TransactionTimeout > 15*time.Minute:
		return fmt.Errorf("PROCESSOR_TRANSACTION_TIMEOUT must be between 1s and 15m (the brokers' default transaction.max.timeout.ms), got %s", c.TransactionTimeout)
	case c.MaxDeltaBytes < 1024 || c.MaxDeltaBytes > 1_000_000:
		return fmt.Errorf("PROCESSOR_MAX_DELTA_BYTES must be between 1024 and 1000000 (Kafka's default max.message.bytes), got %d", c.MaxDeltaBytes)
	}
	return nil
}

// Processor consumes the event log and writes deltas, at least once or exactly once.
type Processor struct {
	cfg   Config
	kc    kafka.Config
	txnID string
	codec *schemas.Codec
	opts  []kgo.Opt
	m     *metrics
	log   *slog.Logger
	now   func() time.Time
	// commitTimeout bounds an at-least-once commit of marked offsets.
	commitTimeout time.Duration

	batches atomic.Int64 // batches committed, for rejoinBackoff

	mu      sync.Mutex
	started bool
	cl      *kgo.Client // while Run runs, for Ping
}

// New validates the configuration and builds a processor: no network, no goroutines.
//
// opts are client options from main: brokers, client id, kprom hooks, TLS, SASL. The
// client is built from, in order (a later option overrides an earlier one; hooks add
// up): kc.Opts(), the processor's defaults (lz4 compression, no linger), opts, and last
// what exactly-once rests on, which opts cannot change: the group, the topic, the
// transactional id and timeout, read_committed, acks=all and the rebalance callbacks.
func New(cfg Config, kc kafka.Config, codec *schemas.Codec, opts []kgo.Opt, reg prometheus.Registerer, log *slog.Logger) (*Processor, error) {
	schemas.Pretouch(deltas.Delta{}) // the delta codec compiled now, not on the first batch
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := kc.Validate(); err != nil {
		return nil, err
	}
	if codec == nil {
		return nil, errors.New("processor: no codec")
	}
	if reg == nil {
		return nil, errors.New("processor: no metrics registerer")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg, kc.EventsTopic)
	if err != nil {
		return nil, err
	}
	txnID := cfg.TransactionalID
	if txnID == "" {
		txnID = defaultTransactionalID(cfg.Group)
	}
	return &Processor{
		cfg: cfg, kc: kc, txnID: txnID, codec: codec, opts: opts, m: m,
		log: log.With("component", "processor"), now: time.Now, commitTimeout: 10 * time.Second,
	}, nil
}

// defaultTransactionalID is unique per process on a host. Two processors of one group in
// one process need ids of their own (Config.TransactionalID).
func defaultTransactionalID(group string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return fmt.Sprintf("%s-%s-%d", group, host, os.Getpid())
}

// TransactionalID is the transactional id the processor produces with.
func (p *Processor) TransactionalID() string { return p.txnID }

// Ping reports whether the processor is running and a broker answers: the /readyz check.
func (p *Processor) Ping(ctx context.Context) error {
	p.mu.Lock()
	cl := p.cl
	p.mu.Unlock()
	if cl == nil {
		return errors.New("processor has no Kafka client: not running, or joining the group again")
	}
	return cl.Ping(ctx)
}

func (p *Processor) setClient(cl *kgo.Client) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cl = cl
}

// Run joins the group and processes batches until ctx is cancelled; it may be called
// once. On cancellation it finishes the batch in flight (exactly once: commit, or abort
// when a worker could not finish it within TransactionTimeout; at least once: produce
// and commit the marked offsets), leaves the group, waits for every partition's
// goroutine and closes the client, then returns nil.
//
// At least once, a batch whose records Kafka refused is not marked, and Run joins the
// group again with a new client, which resumes from the committed offsets.
//
// Exactly once, when a transaction cannot be ended cleanly (Kafka failed or did not answer the
// commit), Run aborts it and joins the group again with a new client, which reads the
// committed offsets from Kafka: a commit whose answer was lost is then not done twice.
// An abort that fails too (fenced after the coordinator timed the transaction out, or
// Kafka away) also rejoins, with a new producer epoch; the backoff grows to 10 s. Run
// returns an error only when a client cannot be made.
func (p *Processor) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.started {
		p.mu.Unlock()
		return errors.New("processor: Run called twice")
	}
	p.started = true
	p.mu.Unlock()

	var backoff time.Duration
	for {
		done := p.batches.Load()
		err := p.session(ctx)
		if !errors.Is(err, errRejoin) {
			return err
		}
		backoff = rejoinBackoff(backoff, p.batches.Load() > done)
		p.log.Warn("joining the group again after a batch that did not end cleanly", "topic", p.kc.EventsTopic,
			"error", err, "backoff_ms", backoff.Milliseconds())
		if !sleep(ctx, backoff) {
			return nil
		}
	}
}

// rejoinBackoff is the wait before joining again after a session that ended with
// errRejoin: it doubles from minBackoff to maxBackoff while sessions fail one after
// another, and starts again from minBackoff after a session that committed a batch.
func rejoinBackoff(prev time.Duration, progressed bool) time.Duration {
	if progressed {
		prev = 0
	}
	return min(max(2*prev, minBackoff), maxBackoff)
}

// errRejoin says a batch could not be ended cleanly (a transaction that had to be
// aborted, or an at-least-once batch not produced): the client's position is past what
// is committed, so a new client must join the group and resume from the commit.
var errRejoin = errors.New("transaction not ended cleanly")

// session runs one client (and group membership) until ctx is cancelled or the
// transaction state can no longer be trusted.
func (p *Processor) session(ctx context.Context) error {
	if p.cfg.Delivery == AtLeastOnce {
		return p.plainSession(ctx)
	}
	ws := &workers{p: p, m: map[int32]*worker{}}
	sess, err := kgo.NewGroupTransactSession(p.clientOpts(ws)...)
	if err != nil {
		return fmt.Errorf("processor kafka client: %w", err)
	}
	p.setClient(sess.Client())
	defer func() {
		p.setClient(nil)
		sess.Close() // leaves the group, which revokes, so stops, every worker
		ws.stopAll() // any a lost session left
	}()
	p.log.Info("processor joining", "topic", p.kc.EventsTopic, "group", p.cfg.Group, "transactional_id", p.txnID)
	return p.loop(ctx, sess.PollRecords, func(f kgo.Fetches) (bool, error) { return p.batch(sess, ws, f) }, func() {})
}

// sleep waits d, or less when ctx ends first; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// clientOpts are the client's options for either delivery: kc.Opts(), the processor's
// defaults, p.opts, then what the guarantees rest on, which p.opts cannot change.
func (p *Processor) clientOpts(ws *workers) []kgo.Opt {
	opts := append([]kgo.Opt{}, p.kc.Opts()...)
	opts = append(opts,
		kgo.ProducerBatchCompression(kgo.Lz4Compression(), kgo.NoCompression()),
		kgo.ProducerLinger(0), // a batch's records are all produced at once, then awaited
	)
	if p.cfg.Delivery == ExactlyOnce {
		// A transaction begun right after the last one ended meets CONCURRENT_TRANSACTIONS
		// until the broker has written the markers, about a millisecond here; at 1,000
		// events/s four transactions in five do. franz-go's default 20ms backoff would add
		// that much to each (freshness); 2ms gave a p50 of 18-19 ms, 500µs 13-17 ms. The
		// retry is one small request.
		opts = append(opts, kgo.ConcurrentTransactionsBackoff(500*time.Microsecond))
	}
	opts = append(opts, p.opts...)
	opts = append(opts,
		kgo.ConsumerGroup(p.cfg.Group),
		kgo.ConsumeTopics(p.kc.EventsTopic),
		// The event log is kept forever: a new group starts from its beginning.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// A record Kafka cannot take fails rather than holding the batch forever.
		kgo.RecordDeliveryTimeout(p.cfg.TransactionTimeout),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.OnPartitionsAssigned(ws.assigned),
		// Lost partitions may have a new owner already: nothing to commit for them.
		kgo.OnPartitionsLost(ws.revoked),
	)
	if p.cfg.Delivery == ExactlyOnce {
		return append(opts,
			kgo.TransactionalID(p.txnID),
			kgo.TransactionTimeout(p.cfg.TransactionTimeout),
			kgo.OnPartitionsRevoked(ws.revoked),
		)
	}
	return append(opts, p.markOpts(ws)...)
}

// Backoff after a batch that failed (not a rebalance): Kafka refused a record or is
// away. The records come again after it.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
)

// loop polls batches and runs each until ctx is cancelled. allow is called once a polled
// batch is done with (or none came): BlockRebalanceOnPoll's AllowRebalance, or nothing.
func (p *Processor) loop(ctx context.Context, poll func(context.Context, int) kgo.Fetches,
	batch func(kgo.Fetches) (failed bool, err error), allow func()) error {
	var backoff time.Duration
	for {
		if backoff > 0 && !sleep(ctx, backoff) {
			return nil
		}
		fetches := poll(ctx, p.cfg.MaxPollRecords)
		if ctx.Err() != nil {
			allow()
			return nil // what was polled is not committed: it comes again
		}
		if fetches.IsClientClosed() {
			return errors.New("processor: kafka client closed")
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			p.log.Warn("fetch failed", "topic", topic, "partition", partition, "error", err)
		})
		if fetches.NumRecords() == 0 {
			allow()
			continue
		}
		failed, err := batch(fetches)
		allow()
		switch {
		case err != nil:
			return err
		case failed:
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
		default:
			backoff = 0
		}
	}
}

// errRevoked says a partition was revoked before its worker answered: a rebalance, after
// which the transaction aborts and the records go to the partition's next owner.
var errRevoked = errors.New("partition revoked during the batch")

// batch runs one transaction: each partition's records go to its worker, and the deltas
// and dead letters they produce commit together with the consumed offsets, or not at
// all. failed reports an abort for another reason than a rebalance; err, that the
// transaction could not be ended (errRejoin when it could at least be aborted).
func (p *Processor) batch(sess *kgo.GroupTransactSession, ws *workers, fetches kgo.Fetches) (failed bool, err error) {
	start := time.Now()
	if err := sess.Begin(); err != nil {
		return false, fmt.Errorf("begin transaction: %w", err)
	}
	res, partitions := dispatch(ws, fetches)

	// End must run even after Run's ctx is cancelled; the broker gives up on the
	// transaction after TransactionTimeout, and so do we.
	endCtx, cancel := context.WithTimeout(context.Background(), p.cfg.TransactionTimeout)
	defer cancel()
	if res.err == nil && len(res.out) > 0 {
		if err := sess.Client().ProduceSync(endCtx, res.out...).FirstErr(); err != nil {
			res.err = fmt.Errorf("produce %d records for %d partitions of %s: %w", len(res.out), partitions, p.kc.EventsTopic, err)
		}
	}
	committed, err := sess.End(endCtx, kgo.TransactionEndTry(res.err == nil))
	if err != nil {
		p.m.txns.WithLabelValues(outcomeAborted).Inc()
		err = fmt.Errorf("end transaction of %d records from %s: %w", fetches.NumRecords(), p.kc.EventsTopic, err)
		// The documented recovery: end again with an abort, which fences off whatever
		// is left of the transaction (a new producer epoch).
		abortCtx, cancel := context.WithTimeout(context.Background(), p.cfg.TransactionTimeout)
		defer cancel()
		if _, aerr := sess.End(abortCtx, kgo.TryAbort); aerr != nil {
			// Fenced (the coordinator timed the transaction out and bumped the epoch,
			// as when a broker froze) or unreachable: a new client starts with a new
			// epoch, which aborts whatever is left; nothing was committed, so the
			// records come again. Stopping instead would stall the pipeline.
			return false, fmt.Errorf("%w: %w; abort after it: %w", errRejoin, err, aerr)
		}
		return false, fmt.Errorf("%w: %w", errRejoin, err)
	}
	elapsed := time.Since(start)
	if !committed {
		p.m.txns.WithLabelValues(outcomeAborted).Inc()
		failed = res.err != nil && !errors.Is(res.err, errRevoked)
		if failed {
			p.log.Warn("batch aborted; its records come again", "topic", p.kc.EventsTopic, "records", fetches.NumRecords(), "error", res.err)
		} else {
			p.log.Info("batch not committed (a rebalance, or Kafka refused the commit); its records come again",
				"topic", p.kc.EventsTopic, "records", fetches.NumRecords())
		}
		return failed, nil
	}
	p.m.committed(p.kc.EventsTopic, res)
	p.batches.Add(1)
	p.m.batch.Observe(elapsed.Seconds())
	p.logBatch(res, fetches, partitions, elapsed)
	return false, nil
}

// logBatch logs each dead letter of a batch that is done, and the batch at debug.
func (p *Processor) logBatch(res batchResult, fetches kgo.Fetches, partitions int, elapsed time.Duration) {
	for _, d := range res.dead {
		p.log.Warn("record dead-lettered", "topic", d.src.Topic, "partition", d.src.Partition, "offset", d.src.Offset,
			"event_id", d.eventID, "reason", d.category, "field", d.field, "dlq_topic", p.kc.DLQTopic)
	}
	p.log.Debug("batch committed", "topic", p.kc.EventsTopic, "partitions", partitions, "records", fetches.NumRecords(),
		"events", res.events, "dead_letters", len(res.dead), "deltas", len(res.perDelta),
		"duration_ms", float64(elapsed.Microseconds())/1000)
}

// dispatch hands each partition's records of a batch to its worker and adds up what
// they produced. The hand-offs and the waits select on the worker's stop, not on Run's
// ctx: a cancelled Run still finishes the batch in flight, and a revoke ends it at once.
func dispatch(ws *workers, fetches kgo.Fetches) (res batchResult, partitions int) {
	type sent struct {
		w *worker
		j job
	}
	var jobs []sent
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if len(fp.Records) == 0 {
			return
		}
		partitions++
		w := ws.get(fp.Partition)
		if w == nil {
			res.add(batchResult{err: errRevoked})
			return
		}
		j := job{recs: fp.Records, out: make(chan batchResult, 1)}
		select {
		case w.jobs <- j:
			jobs = append(jobs, sent{w, j})
		case <-w.stop:
			res.add(batchResult{err: errRevoked})
		}
	})
	for _, s := range jobs {
		select {
		case r := <-s.j.out:
			res.add(r)
		case <-s.w.done:
			select {
			case r := <-s.j.out:
				res.add(r)
			default:
				res.add(batchResult{err: errRevoked})
			}
		}
	}
	return res, partitions
}

// worker is the goroutine of one assigned partition: it turns that partition's share of
// each batch into the records the batch produces in the open transaction. One per
// partition keeps a page's events in order and the work bounded.
type worker struct {
	partition int32
	jobs      chan job
	stop      <-chan struct{} // closed when the worker is told to stop
	cancel    context.CancelFunc
	done      chan struct{} // closed when the goroutine has returned
}

// job is one partition's records of a batch.
type job struct {
	recs []*kgo.Record
	out  chan batchResult // buffered: the worker never blocks on it
}

// workers is the set of partition goroutines: started on assign, stopped and awaited on
// revoke or loss.
type workers struct {
	p  *Processor
	mu sync.Mutex
	m  map[int32]*worker
	wg sync.WaitGroup
}

func (ws *workers) get(partition int32) *worker {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.m[partition]
}

// assigned starts a worker per new partition. ctx is the client's, cancelled when it
// closes.
func (ws *workers) assigned(ctx context.Context, _ *kgo.Client, assigned map[string][]int32) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for _, partition := range assigned[ws.p.kc.EventsTopic] {
		if ws.m[partition] != nil {
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		w := &worker{partition: partition, jobs: make(chan job), stop: wctx.Done(), cancel: cancel, done: make(chan struct{})}
		ws.m[partition] = w
		ws.wg.Add(1)
		go func() {
			defer ws.wg.Done()
			ws.p.work(wctx, w)
		}()
	}
}

// revoked stops the partitions' workers and waits for them. The session has already
// marked the transaction in flight for abort.
func (ws *workers) revoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	ws.mu.Lock()
	var stopped []*worker
	for _, partition := range revoked[ws.p.kc.EventsTopic] {
		if w := ws.m[partition]; w != nil {
			delete(ws.m, partition)
			w.cancel()
			stopped = append(stopped, w)
		}
	}
	ws.mu.Unlock()
	for _, w := range stopped {
		<-w.done
	}
}

func (ws *workers) stopAll() {
	ws.mu.Lock()
	for partition, w := range ws.m {
		delete(ws.m, partition)
		w.cancel()
	}
	ws.mu.Unlock()
	ws.wg.Wait()
}

func (p *Processor) work(ctx context.Context, w *worker) {
	defer close(w.done)
	defer w.cancel()
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-w.jobs:
			j.out <- p.process(w.partition, j.recs)
		}
	}
}

// process decodes and folds one partition's records into the deltas and dead letters to
// produce; the batch produces every partition's together, so the partitions join the
// transaction together rather than each in a request of its own.
func (p *Processor) process(partition int32, recs []*kgo.Record) batchResult {
	out, res, err := p.transform(recs, p.now())
	if err != nil {
		return batchResult{err: fmt.Errorf("%s partition %d: %w", p.kc.EventsTopic, partition, err)}
	}
	res.out = out
	return res
}
