//go:build faults

package faults

import (
	"strconv"
	"testing"
	"time"

	"github.com/convsync/convsync/internal/testenv"
)

// Fault 5 of issue 13: three `convsync process` and three `convsync project` in their
// groups on six partitions; mid-load a fourth of each joins, one of each leaves with
// SIGTERM (and must exit 0), one of each gets kill -9, and the killed ones come back.
// Nothing acknowledged is lost and nothing counted twice, in both processor deliveries:
// at least once (the default), the killed processor's uncommitted second is folded
// again by the partitions' next owner; exactly once, it comes back with the same
// transactional id, as a StatefulSet ordinal would, which fences its open transaction.
func TestScaleOutAddAndRemoveInstancesMidLoad(t *testing.T) {
	for _, delivery := range []string{"at-least-once", "exactly-once"} {
		t.Run(delivery, func(t *testing.T) { scaleOutAddAndRemove(t, delivery) })
	}
}

func scaleOutAddAndRemove(t *testing.T, delivery string) {
	kc := testenv.Kafka(t, 6)
	pool, dbURL := testenv.Postgres(t)
	r := newRig(t, kc, dbURL, pool)
	group := "faults-scale-" + testenv.ID()
	r.env = append(r.env, "PROCESSOR_GROUP="+group, "PROCESSOR_DELIVERY="+delivery)
	processor := func(slot int) *proc {
		return r.start("process-"+strconv.Itoa(slot), "process", "PROCESSOR_TRANSACTIONAL_ID="+group+"-"+strconv.Itoa(slot))
	}
	projector := func(slot int) *proc { return r.start("project-"+strconv.Itoa(slot), "project") }
	procs, projs := map[int]*proc{}, map[int]*proc{}
	for slot := range 3 {
		procs[slot], projs[slot] = processor(slot), projector(slot)
	}
	in := r.start("ingest", "ingest")
	in.waitHTTP("/readyz", time.Minute)
	l := startLoad(t, func() string { return "http://" + in.Addr + "/api/webhook" }, 100, 20*time.Second, 3)

	l.waitAcked(t, 200)
	t.Log("scale out: a fourth processor and projector join")
	procs[3], projs[3] = processor(3), projector(3)

	l.waitAcked(t, 600)
	t.Log("scale in: SIGTERM to processor 1 and projector 1")
	procs[1].term()
	projs[1].term()

	l.waitAcked(t, 1000)
	t.Log("crash: kill -9 of processor 2 and projector 2")
	procs[2].kill9()
	projs[2].kill9()

	l.waitAcked(t, 1400)
	t.Log("the killed slot comes back")
	procs[2], projs[2] = processor(2), projector(2)

	_, acked := l.wait(t)
	r.verify(acked, 2*time.Minute)
}
