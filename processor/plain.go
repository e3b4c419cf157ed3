package processor

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// commitInterval is how often the at-least-once processor commits the offsets it has
// marked: after a crash, at most about this much of the log is folded again.
const commitInterval = time.Second

// plainSession is session for AtLeastOnce: a plain group consumer and the idempotent
// producer, no transaction. A batch's offsets are marked once Kafka acknowledged every
// record it produced, and only marked offsets are ever committed (every commitInterval,
// when partitions are revoked, and when the session ends), so an event is never
// committed before its delta is in the log.
//
// Rebalances wait for the batch in flight (BlockRebalanceOnPoll): a revoke finds no
// partition half done, and commits what the batches before it marked.
func (p *Processor) plainSession(ctx context.Context) error {
	ws := &workers{p: p, m: map[int32]*worker{}}
	cl, err := kgo.NewClient(p.clientOpts(ws)...)
	if err != nil {
		return fmt.Errorf("processor kafka client: %w", err)
	}
	p.setClient(cl)
	defer func() {
		p.setClient(nil)
		p.commitMarked(cl, "shutting down or joining again")
		cl.Close() // leaves the group, which revokes, so stops, every worker
		ws.stopAll()
	}()
	p.log.Info("processor joining", "topic", p.kc.EventsTopic, "group", p.cfg.Group, "delivery", p.cfg.Delivery)
	return p.loop(ctx, cl.PollRecords, func(f kgo.Fetches) (bool, error) { return false, p.plainBatch(cl, ws, f) }, cl.AllowRebalance)
}

// commitMarked commits the marked offsets, bounded in time. A failure only means more is
// folded again by the partitions' next owner.
func (p *Processor) commitMarked(cl *kgo.Client, why string) {
	ctx, cancel := context.WithTimeout(context.Background(), p.commitTimeout)
	defer cancel()
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		p.log.Warn("offsets not committed; the next owner of the partitions folds their events again",
			"topic", p.kc.EventsTopic, "group", p.cfg.Group, "when", why, "error", err)
	}
}

// markOpts are the at-least-once options: only marked offsets are committed, every
// commitInterval and on revoke, and rebalances wait for the batch in flight.
func (p *Processor) markOpts(ws *workers) []kgo.Opt {
	return []kgo.Opt{
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(commitInterval),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
			ws.revoked(ctx, cl, revoked)
			p.commitMarked(cl, "partitions revoked")
		}),
	}
}

// plainBatch folds one batch, produces its deltas and dead letters, and marks its
// offsets once Kafka acknowledged them all. When a record could not be produced, or a
// partition was lost mid-batch, nothing of the batch is marked and it returns errRejoin:
// the client has fetched past the batch, so a new one resumes from the committed
// offsets and folds it again. Deltas it did produce are then written twice, which the
// projector's merge absorbs.
func (p *Processor) plainBatch(cl *kgo.Client, ws *workers, fetches kgo.Fetches) error {
	start := time.Now()
	res, partitions := dispatch(ws, fetches)
	if res.err == nil && len(res.out) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), p.cfg.TransactionTimeout)
		defer cancel()
		if err := cl.ProduceSync(ctx, res.out...).FirstErr(); err != nil {
			res.err = fmt.Errorf("produce %d records for %d partitions of %s: %w", len(res.out), partitions, p.kc.EventsTopic, err)
		}
	}
	if res.err != nil {
		p.m.txns.WithLabelValues(outcomeAborted).Inc()
		p.log.Warn("batch not produced; its records come again", "topic", p.kc.EventsTopic, "records", fetches.NumRecords(), "error", res.err)
		return fmt.Errorf("%w: %w", errRejoin, res.err)
	}
	var last []*kgo.Record
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if n := len(fp.Records); n > 0 {
			last = append(last, fp.Records[n-1])
		}
	})
	cl.MarkCommitRecords(last...)
	elapsed := time.Since(start)
	p.m.committed(p.kc.EventsTopic, res)
	p.batches.Add(1)
	p.m.batch.Observe(elapsed.Seconds())
	p.logBatch(res, fetches, partitions, elapsed)
	return nil
}
