package projector

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/schemas/deltas"
	"github.com/convsync/convsync/schemas/dlq"
)

// refusedClasses are the SQLSTATE classes of a value Postgres will never store, however
// often it is sent: data exceptions (22: bad JSON, a timestamp out of range), integrity
// violations (23: a CHECK), cardinality (21: one statement touching a row twice) and
// program limits (54: a key too long for its index). Anything else (a connection lost,
// a failover, a timeout) is waited out.
var refusedClasses = map[string]bool{"21": true, "22": true, "23": true, "54": true}

// refused reports whether err is Postgres refusing the data rather than being away.
func refused(err error) bool {
	pe, ok := errors.AsType[*pgconn.PgError](err)
	return ok && len(pe.Code) == 5 && refusedClasses[pe.Code[:2]]
}

// isolate handles a batch that Postgres refused: it applies the batch delta by delta,
// and a refused delta part by part (deltas.Split); each part it still refuses goes to
// the DLQ with the reason and the delta's offset, so one bad value costs only its own
// conversation, page fields or event. Then the offsets move past the batch, with no
// rows. The deltas and parts go without offsets: applying a delta twice changes nothing
// (merges are joins), so a crash in between only redoes them.
func (w *worker) isolate(ctx context.Context, cl *kgo.Client, recs []*kgo.Record, in []Input, pos *Position, start time.Time) error {
	byOffset := make(map[int64]*kgo.Record, len(recs))
	for _, r := range recs {
		byOffset[r.Offset] = r
	}
	for _, x := range in {
		err := w.applyAlone(ctx, x.Delta)
		if err == nil || !refused(err) {
			if err != nil {
				return err
			}
			continue
		}
		for _, part := range deltas.Split(x.Delta) {
			err := w.applyAlone(ctx, part)
			switch {
			case err == nil:
			case !refused(err):
				return err
			default:
				if err := w.deadLetterPart(ctx, cl, byOffset[x.Offset], part, err); err != nil {
					return err
				}
			}
		}
	}
	pos.Stored = nil
	return w.commit(ctx, Part{Pos: pos}, len(recs), start)
}

// applyAlone applies one delta in a transaction of its own, without offsets, and keeps
// the cache in step with what it wrote.
func (w *worker) applyAlone(ctx context.Context, d deltas.Delta) error {
	actx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	res, err := w.p.w.Apply(actx, nil, []Input{{Delta: d}})
	if err != nil {
		return err
	}
	w.p.hook(actx, res.Touched)
	return nil
}

// deadLetterPart sends a part of the delta src that Postgres refused to the DLQ: the
// record's key and headers, the part as its value, the reason and src's offset in the
// dlq-* headers. It waits for the acknowledgement: the offsets move past src only once
// the part is safe there.
func (w *worker) deadLetterPart(ctx context.Context, cl *kgo.Client, src *kgo.Record, part deltas.Delta, cause error) error {
	value, err := deltas.Encode(part)
	if err != nil {
		return err
	}
	r := *src
	r.Value = value
	dl := dlq.New(&r, w.p.kc.DLQTopic, dlq.CategoryRefused, fmt.Errorf("postgres refused the delta: %w", cause), time.Now())
	if err := cl.ProduceSync(ctx, dl).FirstErr(); err != nil {
		return fmt.Errorf("dead-letter refused delta %s/%d@%d: %w", src.Topic, src.Partition, src.Offset, err)
	}
	w.p.m.deadLetters.WithLabelValues(src.Topic, dlq.CategoryRefused).Inc()
	w.p.log.Warn("delta refused by Postgres sent to the DLQ; the partition moves on", "topic", src.Topic, "partition", src.Partition,
		"offset", src.Offset, "page_id", part.PageID, "conversations", len(part.Conversations), "events", len(part.Others), "error", cause)
	return nil
}
