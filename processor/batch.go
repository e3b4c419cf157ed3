package processor

import (
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/internal/kafka"
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
//
// Every record it returns fits a produce request (kafka.ProducerBatchMaxBytes): one that
// would not (a dead letter that its headers push over the limit, the delta of a single
// event that outgrows it) would fail the transaction of every polled partition, again
// at each retry. Such a record goes to the DLQ instead, cut to fit, as too_large.
func (p *Processor) transform(recs []*kgo.Record, now time.Time) ([]*kgo.Record, batchResult, error) {
	return p.transformWith(recs, now, nil)
}

// transformWith is transform with edit applied to each decoded event (record index i):
// tests make events no codec would let through.
func (p *Processor) transformWith(recs []*kgo.Record, now time.Time, edit func(i int, e *deltas.Event)) ([]*kgo.Record, batchResult, error) {
	var res batchResult
	var out []*kgo.Record
	deadLetter := func(src *kgo.Record, category, field, eventID string, err error) {
		dl := dlq.New(src, p.kc.DLQTopic, category, err, now)
		if size := dlq.Size(dl); size > kafka.ProducerBatchMaxBytes {
			category = dlq.CategoryTooLarge
			dl = dlq.New(src, p.kc.DLQTopic, category,
				fmt.Errorf("dead letter of %d bytes is over the %d a record may have, its value is cut: %w", size, kafka.ProducerBatchMaxBytes, err), now)
			dlq.Truncate(dl, kafka.ProducerBatchMaxBytes)
		}
		out = append(out, dl)
		if res.dlq == nil {
			res.dlq = map[string]int{}
		}
		res.dlq[category]++
		res.dead = append(res.dead, deadLettered{src: src, category: category, field: field, eventID: eventID})
	}
	events := make([]deltas.Event, 0, len(recs))
	srcs := make([]int, 0, len(recs)) // the record of each event
	for i, r := range recs {
		env, data, err := p.codec.Decode(r.Value)
		if err != nil {
			cat, field, id := classify(r.Value, err)
			deadLetter(r, cat, field, id, err)
			continue
		}
		e := deltas.Event{Env: env, Data: data}
		if edit != nil {
			edit(i, &e)
		}
		events = append(events, e)
		srcs = append(srcs, i)
	}
	encs, err := encodeDeltas(events, srcs, p.cfg.MaxDeltaBytes)
	if err != nil {
		return nil, batchResult{}, err
	}
	res.events = len(events)
	for _, d := range encs {
		if d.err != nil { // the delta of this one event cannot be encoded
			res.events--
			deadLetter(recs[d.src], dlq.CategorySchema, "", events[d.first].Env.ID, d.err)
			continue
		}
		rec := &kgo.Record{Topic: p.kc.DeltasTopic, Key: []byte(d.page), Value: d.value, Headers: deltas.Headers()}
		if size := dlq.Size(rec); size > kafka.ProducerBatchMaxBytes {
			// Only a delta of one event can be this large: encodeDeltas splits the others.
			src := recs[d.src]
			res.events--
			deadLetter(src, dlq.CategoryTooLarge, "", events[d.first].Env.ID,
				fmt.Errorf("the event's delta is %d bytes, over the %d a record may have", size, kafka.ProducerBatchMaxBytes))
			continue
		}
		out = append(out, rec)
		res.perDelta = append(res.perDelta, d.events)
	}
	return out, res, nil
}

// encoded is one delta as it goes on the wire.
type encoded struct {
	page   string
	value  []byte
	events int
	// first is the index in events of the delta's first event, src its record's index
	// in the batch: what a delta of one event too large to produce dead-letters.
	first, src int
	// err says the delta of this one event cannot be encoded: it is dead-lettered.
	err error
}

// encodeDeltas folds events and marshals one delta per page. A delta larger than
// maxBytes (a busy page in a large batch: Kafka refuses records over max.message.bytes)
// is folded again from each half of its page's events, as often as needed: deltas merge
// as joins, so several deltas of a page in one batch mean the same as one. A delta of a
// single event is returned whatever its size. A delta that cannot be encoded is split the
// same way, down to the event that breaks it, returned with its error. srcs[i] is the
// record of events[i].
func encodeDeltas(events []deltas.Event, srcs []int, maxBytes int) ([]encoded, error) {
	return encodeSome(events, srcs, indexes(len(events)), maxBytes)
}

func indexes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// encodeSome is encodeDeltas of the events at idx.
func encodeSome(all []deltas.Event, srcs, idx []int, maxBytes int) ([]encoded, error) {
	events := make([]deltas.Event, len(idx))
	for i, x := range idx {
		events[i] = all[x]
	}
	first := map[string]int{} // each page's first event
	for _, x := range idx {
		if _, ok := first[all[x].Data.EventPageID()]; !ok {
			first[all[x].Data.EventPageID()] = x
		}
	}
	var out []encoded
	for _, d := range deltas.Fold(events) {
		b, err := deltas.Encode(d)
		if err == nil && len(b) <= maxBytes || d.Events <= 1 {
			x := first[d.PageID]
			out = append(out, encoded{page: d.PageID, value: b, events: d.Events, first: x, src: srcs[x], err: err})
			continue
		}
		// Too large, or not encodable: fold each half of the page's events again, so
		// that what cannot be encoded ends up alone.
		var page []int
		for _, x := range idx {
			if all[x].Data.EventPageID() == d.PageID {
				page = append(page, x)
			}
		}
		half := len(page) / 2
		for _, part := range [][]int{page[:half], page[half:]} {
			sub, err := encodeSome(all, srcs, part, maxBytes)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
		}
	}
	return out, nil
}
