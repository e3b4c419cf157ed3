package projector

import "testing"

// A writer waits for the rest of a round only while that can end: not when a partition
// whose batch it holds still owes the round a share (its worker waits for this very
// commit before it can take the round's delivery), and not once the round is complete.
func TestOpenRoundWaitsOnlyWhenTheRoundCanComplete(t *testing.T) {
	req := func(partition int32, r *round) commitReq {
		return commitReq{part: Part{Pos: &Position{Partition: partition}}, round: r}
	}
	r := newRound(1)
	r.enrol(1, 0)
	r.enrol(2, 0)
	r.dispatched()

	held := []commitReq{req(1, r).taken(0)}
	if openRound(held, 0) == nil {
		t.Fatal("with partition 2 still to hand in, openRound = nil, want the round's done channel")
	}
	// Partition 2's worker hands in a batch of an earlier fetch first, and waits for it.
	held = append(held, req(2, nil).taken(0))
	if openRound(held, 0) != nil {
		t.Error("openRound waits for partition 2, whose worker waits for this commit, want nil")
	}
	held = append(held[:1], req(2, r).taken(0))
	if openRound(held, 0) != nil {
		t.Error("openRound after every share is settled, want nil")
	}
	select {
	case <-r.done[0]:
	default:
		t.Error("the round's done channel is open after every share is settled")
	}
}

// Shares are per writer: a writer waits only for the partitions it serves, not for one
// that goes to another writer (and so can never join its transaction).
func TestRoundSharesArePerWriter(t *testing.T) {
	r := newRound(2)
	r.enrol(0, 0)
	r.enrol(1, 1)
	r.dispatched()
	r.settle(0, 0)
	select {
	case <-r.done[0]:
	default:
		t.Error("writer 0's part is open after its only partition settled, while writer 1's partition is out")
	}
	select {
	case <-r.done[1]:
		t.Error("writer 1's part is complete before its partition settled")
	default:
	}
	r.settle(1, 1)
	r.settle(1, 1) // settling twice counts once
	select {
	case <-r.done[1]:
	default:
		t.Error("writer 1's part is open after its partition settled")
	}
}
