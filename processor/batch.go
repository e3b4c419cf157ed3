package processor

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/schemas/deltas"
	"github.com/convsync/convsync/schemas/dlq"
)

// batchResult is what one partition's share of a batch produced; the loop adds them up
// and counts them once the transaction commits.
type batchResult struct {
	events   int            // events folded
	dlq      map[string]int // dead letters by category
	perDelta []int          // events in each delta written
	dead     []deadLettered // for the log, once committed
	out      []*kgo.Record  // the deltas and dead letters to produce in the transaction
	err      error          // the batch cannot commit: the transaction must abort
}

func (r *batchResult) add(o batchResult) {
	r.events += o.events
	for c, n := range o.dlq {
		if r.dlq == nil {
			r.dlq = map[string]int{}
		}
		r.dlq[c] += n
	}
	r.perDelta = append(r.perDelta, o.perDelta...)
	r.dead = append(r.dead, o.dead...)
	r.out = append(r.out, o.out...)
	if r.err == nil {
		r.err = o.err
	}
}

// deadLettered is one poison record, for the log.
type deadLettered struct {
	src      *kgo.Record
	category string
	field    string
	eventID  string
}

// transform turns one partition's records into the records to produce: a dead letter
// for each record that does not decode, and the deltas of the rest. It does no I/O.
func (p *Processor) transform(recs []*kgo.Record, now time.Time) ([]*kgo.Record, batchResult, error) {
	var res batchResult
	var out []*kgo.Record
	events := make([]deltas.Event, 0, len(recs))
	for _, r := range recs {
		env, data, err := p.codec.Decode(r.Value)
		if err != nil {
			cat, field, id := classify(r.Value, err)
			out = append(out, dlq.New(r, p.kc.DLQTopic, cat, err, now))
			if res.dlq == nil {
				res.dlq = map[string]int{}
			}
			res.dlq[cat]++
			res.dead = append(res.dead, deadLettered{src: r, category: cat, field: field, eventID: id})
			continue
		}
		events = append(events, deltas.Event{Env: env, Data: data})
	}
	encs, err := encodeDeltas(events, p.cfg.MaxDeltaBytes)
	if err != nil {
		return nil, batchResult{}, err
	}
	res.events = len(events)
	for _, d := range encs {
		out = append(out, &kgo.Record{Topic: p.kc.DeltasTopic, Key: []byte(d.page), Value: d.value, Headers: deltas.Headers()})
		res.perDelta = append(res.perDelta, d.events)
	}
	return out, res, nil
}

// encoded is one delta as it goes on the wire.
type encoded struct {
	page   string
	value  []byte
	events int
}

// encodeDeltas folds events and marshals one delta per page. A delta larger than
// maxBytes (a busy page in a large batch: Kafka refuses records over max.message.bytes)
// is folded again from each half of its page's events, as often as needed: deltas merge
// as joins, so several deltas of a page in one batch mean the same as one. A delta of a
// single event is written whatever its size.
func encodeDeltas(events []deltas.Event, maxBytes int) ([]encoded, error) {
	var out []encoded
	for _, d := range deltas.Fold(events) {
		b, err := deltas.Encode(d)
		if err != nil {
			return nil, err
		}
		if len(b) <= maxBytes || d.Events <= 1 {
			out = append(out, encoded{page: d.PageID, value: b, events: d.Events})
			continue
		}
		page := make([]deltas.Event, 0, d.Events)
		for _, e := range events {
			if e.Data.EventPageID() == d.PageID {
				page = append(page, e)
			}
		}
		half := len(page) / 2
		for _, part := range [][]deltas.Event{page[:half], page[half:]} {
			sub, err := encodeDeltas(part, maxBytes)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
		}
	}
	return out, nil
}
