package projector

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// refuseGap handles a partition whose stored offset the deltas log no longer holds: the
// deltas between it and the log's start were deleted (retention.ms, a recreated topic)
// before the projector applied them, so the read model lacks them for good. Resuming
// from the log's start would hide that; the partition stops instead (the client keeps it
// unconsumed), convsync_projector_offset_gaps counts it, and an error log line names
// the partition, both offsets and the way out: convsync replay rebuilds the read model
// from the event log, which is kept forever. A rebalance that moves the partition here
// again after the replay resumes it from the offsets the replay stored.
func (p *Projector) refuseGap(ctx context.Context, cl *kgo.Client, topic string, part int32) {
	p.mu.Lock()
	seen := p.gaps[part]
	p.gaps[part] = true
	p.mu.Unlock()
	if seen {
		return
	}
	p.m.gaps.Inc()
	var stored int64 = -1
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = p.pool.QueryRow(qctx, `SELECT next_offset FROM projector_offsets WHERE consumer_group = $1 AND topic = $2 AND partition = $3`,
		p.cfg.Group, topic, part).Scan(&stored)
	var start int64 = -1
	if offs, err := kadm.NewClient(cl).ListStartOffsets(qctx, topic); err == nil {
		if o, ok := offs.Lookup(topic, part); ok && o.Err == nil {
			start = o.Offset
		}
	}
	p.log.Error("gap in the deltas log: its start is past the offset stored with the read model, so deltas were lost before they were applied; "+
		"the partition stops rather than skip them. Run convsync replay to rebuild the read model from the event log",
		"topic", topic, "partition", part, "stored_offset", stored, "log_start_offset", start)
}

// clearGap forgets a refused partition once it is revoked: a new assignment looks again.
// The caller holds p.mu.
func (p *Projector) clearGap(part int32) {
	if p.gaps[part] {
		delete(p.gaps, part)
		p.m.gaps.Dec()
	}
}
