//go:build faults

package faults

import (
	"net/http"
	"testing"
	"time"

	"github.com/convsync/convsync/internal/testenv"
)

// The control: the same load and checks with no fault. When it fails, the harness or the
// pipeline is wrong, not the handling of a fault.
func TestNoFaultControl(t *testing.T) {
	kc := testenv.Kafka(t, 4)
	pool, dbURL := testenv.Postgres(t)
	r := newRig(t, kc, dbURL, pool)
	r.start("process", "process")
	r.start("project", "project")
	in := r.start("ingest", "ingest")
	in.waitHTTP("/readyz", time.Minute)
	l := startLoad(t, func() string { return "http://" + in.Addr + "/api/webhook" }, 100, 4*time.Second, 1)
	res, acked := l.wait(t)
	if res.Status[http.StatusOK] != res.Requests {
		t.Errorf("without a fault, %d of %d requests were acknowledged: %v", res.Status[http.StatusOK], res.Requests, res.Status)
	}
	r.verify(acked, time.Minute)
}

// Fault 6 of issue 13: `convsync ingest` gets kill -9 twice mid-load and starts again on
// the same address. Every event answered 200 is in the events topic, and with a
// processor and a projector running, in the read model once.
func TestIngestKillNineMidLoad(t *testing.T) {
	kc := testenv.Kafka(t, 4)
	pool, dbURL := testenv.Postgres(t)
	r := newRig(t, kc, dbURL, pool)
	r.start("process", "process")
	r.start("project", "project")
	addr := testenv.FreeAddr(t)
	in := r.startAt("ingest", "ingest", addr)
	in.waitHTTP("/readyz", time.Minute)
	l := startLoad(t, func() string { return "http://" + addr + "/api/webhook" }, 120, 10*time.Second, 2)
	for i, at := range []int64{150, 500} {
		l.waitAcked(t, at)
		in.kill9()
		before := l.sent.Load()
		// The load keeps going while no ingest listens: those requests fail, as Meta's
		// would, and are redelivered by Meta (here: not acknowledged, not expected).
		if !testenv.Poll(30*time.Second, func() bool { return l.sent.Load() > before+20 }) {
			t.Fatal("the load stopped sending while ingest was down")
		}
		in = r.startAt("ingest-"+string(rune('a'+i)), "ingest", addr)
		in.waitHTTP("/readyz", time.Minute)
	}
	res, acked := l.wait(t)
	if res.Status[0] == 0 {
		t.Errorf("no request failed while ingest was killed: the kill did not land mid-load (%v)", res.Status)
	}
	r.verify(acked, time.Minute)
}
