package projector

import "sync"

// A round is one fetch's partitions on their way to the writers. Each partition's worker
// settles its share once it has handed its batch to its writer (or holds nothing to
// hand), and a writer's part of the round completes when every share of the partitions
// it serves is settled. A writer that took a batch of a round gathers until its part
// completes, so one fetch's partitions commit in one transaction, rather than the first
// one alone while the others are still decoding: at 1,000 events/s about half the
// transactions, and half the fsyncs. Config.GatherWait bounds the wait: a worker may be
// slow to hand in (dead-lettering a delta, a core busy elsewhere).
type round struct {
	mu    sync.Mutex
	owing map[int32]bool  // partitions enrolled that have not settled
	left  []int           // per writer: shares not settled, the dispatcher's included
	done  []chan struct{} // per writer: closed when its shares are all settled
}

// newRound starts a round with one share per writer, the dispatcher's: it settles them
// once every partition of the fetch is dispatched, so no part of the round completes
// before then.
func newRound(writers int) *round {
	r := &round{owing: map[int32]bool{}, left: make([]int, writers), done: make([]chan struct{}, writers)}
	for i := range writers {
		r.left[i] = 1
		r.done[i] = make(chan struct{})
	}
	return r
}

// enrol adds a share for partition, served by writer.
func (r *round) enrol(partition int32, writer int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.owing[partition] = true
	r.left[writer]++
}

// settle settles partition's share; a nil round (a batch of no fetch: linger, shutdown,
// retry) has none.
func (r *round) settle(partition int32, writer int) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.owing[partition] {
		delete(r.owing, partition)
		r.leave(writer)
	}
}

// dispatched settles the dispatcher's shares.
func (r *round) dispatched() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for w := range r.left {
		r.leave(w)
	}
}

// leave settles one share of writer's part; the caller holds mu.
func (r *round) leave(writer int) {
	if r.left[writer]--; r.left[writer] == 0 {
		close(r.done[writer])
	}
}

// owes reports whether partition has yet to settle its share.
func (r *round) owes(partition int32) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.owing[partition]
}
