package processor

import (
	"encoding/binary"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/schemas"
)

// fakeKafka is an in-process cluster with the three topics, for fault injection.
func fakeKafka(t *testing.T, extra ...kfake.Opt) (*kfake.Cluster, kafka.Config) {
	t.Helper()
	opts := append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(3, "events", "deltas", "dlq")}, extra...)
	if debugOpts != nil {
		opts = append(opts, kfake.WithLogger(kfake.BasicLogger(os.Stderr, kfake.LogLevelDebug)))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	kc := kafka.Defaults()
	kc.Brokers, kc.ClientID = c.ListenAddrs(), "convsync-test"
	kc.EventsTopic, kc.DeltasTopic, kc.DLQTopic, kc.Partitions = "events", "deltas", "dlq", 3
	return c, kc
}

// faultCase is a kfake cluster whose events topic holds n events of the load
// generator's mix (seed, pages), and a test configuration for delivery with batches of
// 10 records, for the fault-injection tests.
type faultCase struct {
	c      *kfake.Cluster
	kc     kafka.Config
	codec  *schemas.Codec
	events []*kgo.Record
	cfg    Config
}

func newFaultCase(t *testing.T, delivery string, seed uint64, pages, n int, extra ...kfake.Opt) faultCase {
	t.Helper()
	c, kc := fakeKafka(t, extra...)
	cfg := testConfig()
	cfg.Delivery = delivery
	cfg.MaxPollRecords = 10
	return faultCase{c: c, kc: kc, codec: newCodec(t), cfg: cfg,
		events: produce(t, kc.Brokers, records(t, kc.EventsTopic, 0, loadgenEvents(t, seed, pages, n)))}
}

// Kafka answers a delta produce with an error after appending it, a TxnOffsetCommit
// with a timeout after storing it, and refuses a commit: the retries and the abort
// leave every event in exactly one committed delta.
func TestKafkaFaultsNeitherLoseNorDuplicateDeltas(t *testing.T) {
	fc := newFaultCase(t, ExactlyOnce, 3, 5, 150)
	c, kc, codec, events, cfg := fc.c, fc.kc, fc.codec, fc.events, fc.cfg
	faults := map[string]*kfake.FaultHandle{
		"produce appended, answered NOT_ENOUGH_REPLICAS_AFTER_APPEND": c.Fault(kfake.Fault{
			Keys: []kmsg.Key{kmsg.Produce}, Topic: kc.DeltasTopic, Err: kerr.NotEnoughReplicasAfterAppend,
		}),
		"offsets stored, answered REQUEST_TIMED_OUT": c.Fault(kfake.Fault{
			Keys: []kmsg.Key{kmsg.TxnOffsetCommit}, Group: cfg.Group, Err: kerr.RequestTimedOut,
		}),
		"commit refused with UNKNOWN_SERVER_ERROR": c.Fault(kfake.Fault{
			Keys: []kmsg.Key{kmsg.EndTxn}, TopLevel: true, Err: kerr.UnknownServerError,
			When: func(r kmsg.Request) bool { return r.(*kmsg.EndTxnRequest).Commit },
		}),
	}
	p := newProcessor(t, cfg, kc, prometheus.NewRegistry())
	r := start(t, p)
	adm := admin(t, kc.Brokers)
	eventually(t, time.Minute, "the processor committing every event's offset", func() bool {
		return caughtUp(adm, cfg.Group, kc.EventsTopic)
	})
	r.stop(t)

	for name, h := range faults {
		if h.Hits() != 1 {
			t.Errorf("fault %q hit %d times, want 1", name, h.Hits())
		}
	}
	if got := testutil.ToFloat64(p.m.txns.WithLabelValues(outcomeAborted)); got < 1 {
		t.Errorf("convsync_processor_transactions_total{outcome=aborted} = %v after a refused commit, want at least 1", got)
	}
	ds := deltasOf(t, readAll(t, kc.Brokers, kc.DeltasTopic))
	checkEachEventOnce(t, ds, events)
	if diff := diffDeltas(ds, decodeAll(t, codec, events)); diff != "" {
		t.Errorf("committed deltas merged differ from deltas.Fold over the events (-fold +deltas):\n%s", diff)
	}
}

// The first instance dies with a transaction open: its deltas and offsets are written
// into the transaction, and neither its commit nor its abort gets an answer. A new
// instance, with another transactional id, waits for the broker to abort the orphan and
// redoes its records: nothing lost, nothing twice.
func TestCrashWithAnOpenTransactionLosesAndDuplicatesNothing(t *testing.T) {
	fc := newFaultCase(t, ExactlyOnce, 5, 5, 120)
	c, kc, codec, events, cfg := fc.c, fc.kc, fc.codec, fc.events, fc.cfg
	cfg.TransactionTimeout = 2 * time.Second

	// From its third commit on, the coordinator answers nothing of the first instance's
	// transactions: neither the commit nor the abort and new producer epoch it tries next.
	var hang atomic.Bool
	var commits, swallowed atomic.Int32
	var txnID atomic.Pointer[string]
	swallow := func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		id := txnID.Load()
		var mine bool
		switch req := req.(type) {
		case *kmsg.EndTxnRequest:
			mine = id != nil && req.TransactionalID == *id
			if mine && req.Commit && commits.Add(1) == 3 {
				hang.Store(true)
			}
		case *kmsg.InitProducerIDRequest:
			mine = id != nil && req.TransactionalID != nil && *req.TransactionalID == *id
		}
		if hang.Load() && mine {
			swallowed.Add(1)
			return nil, nil, true // no answer: the instance is gone as far as Kafka can tell
		}
		return nil, nil, false
	}
	c.ControlKey(int16(kmsg.EndTxn), swallow)
	c.ControlKey(int16(kmsg.InitProducerID), swallow)

	p1 := newProcessor(t, cfg, kc, prometheus.NewRegistry())
	txnID.Store(new(p1.TransactionalID()))
	r1 := start(t, p1)
	eventually(t, time.Minute, "the first instance giving up on a commit", func() bool {
		return testutil.ToFloat64(p1.m.txns.WithLabelValues(outcomeAborted)) >= 1
	})
	// Whatever it does now, it cannot end or fence its transaction: the process dies.
	t.Logf("first instance's Run: %v", r1.halt(t))
	hang.Store(false)
	if swallowed.Load() == 0 {
		t.Fatal("no commit was left unanswered: the test did not crash a transaction")
	}
	adm := admin(t, kc.Brokers)
	if caughtUp(adm, cfg.Group, kc.EventsTopic) {
		t.Fatal("the first instance committed every offset before its crash: the test crashed nothing")
	}

	cfg2 := cfg
	cfg2.TransactionalID = cfg.Group + "-restarted"
	p2 := newProcessor(t, cfg2, kc, prometheus.NewRegistry())
	r2 := start(t, p2)
	eventually(t, time.Minute, "the second instance committing every event's offset", func() bool {
		return caughtUp(adm, cfg.Group, kc.EventsTopic)
	})
	r2.stop(t)

	ds := deltasOf(t, readAll(t, kc.Brokers, kc.DeltasTopic))
	checkEachEventOnce(t, ds, events)
	if diff := diffDeltas(ds, decodeAll(t, codec, events)); diff != "" {
		t.Errorf("committed deltas merged differ from deltas.Fold over the events (-fold +deltas):\n%s", diff)
	}
}

// Kafka commits a transaction but its answer never reaches the processor, which gives
// up on it: the processor must learn the committed offsets from Kafka (it joins the
// group again) rather than redo the batch from what it last knew.
func TestCommitWhoseAnswerIsLostIsNotRedone(t *testing.T) {
	lost := &answerDropper{dropNth: 3} // the third EndTxn: the third commit
	fc := newFaultCase(t, ExactlyOnce, 9, 5, 100, kfake.ListenFn(lost.listen))
	kc, codec, events, cfg := fc.kc, fc.codec, fc.events, fc.cfg
	cfg.TransactionTimeout = 2 * time.Second

	p := newProcessor(t, cfg, kc, prometheus.NewRegistry())
	r := start(t, p)
	adm := admin(t, kc.Brokers)
	eventually(t, time.Minute, "the processor committing every event's offset", func() bool {
		return caughtUp(adm, cfg.Group, kc.EventsTopic)
	})
	r.stop(t)
	if lost.dropped.Load() == 0 {
		t.Fatal("no commit answer was dropped: the test lost nothing")
	}
	if got := testutil.ToFloat64(p.m.txns.WithLabelValues(outcomeAborted)); got < 1 {
		t.Fatalf("convsync_processor_transactions_total{outcome=aborted} = %v, want the commit without an answer counted as aborted", got)
	}
	deltas := deltasOf(t, readAll(t, kc.Brokers, kc.DeltasTopic))
	checkEachEventOnce(t, deltas, events)
	if diff := diffDeltas(deltas, decodeAll(t, codec, events)); diff != "" {
		t.Errorf("committed deltas merged differ from deltas.Fold over the events (-fold +deltas):\n%s", diff)
	}
}

// answerDropper sits in kfake's listener: the broker handles every request, but from
// the dropNth EndTxn on, no answer to an EndTxn leaves it (the connections stay up), as
// when a network fails right after Kafka committed and stays down while the client
// retries. It heals when the client asks for a new producer epoch, its abort.
type answerDropper struct {
	dropNth  int32
	endTxns  atomic.Int32
	blackout atomic.Bool
	dropped  atomic.Int32
}

func (d *answerDropper) listen(network, addr string) (net.Listener, error) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	return &dropListener{Listener: ln, d: d}, nil
}

type dropListener struct {
	net.Listener
	d *answerDropper
}

func (l *dropListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &dropConn{Conn: c, d: l.d, drop: map[int32]bool{}}, nil
}

// dropConn frames the requests it reads and the responses written (4-byte size, then
// for a request the key, version and correlation id; for a response the correlation id).
type dropConn struct {
	net.Conn
	d       *answerDropper
	mu      sync.Mutex
	in, out []byte
	drop    map[int32]bool
}

func (c *dropConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.in = append(c.in, b[:n]...)
	for len(c.in) >= 4 {
		size := int(binary.BigEndian.Uint32(c.in))
		if len(c.in) < 4+size {
			break
		}
		if frame := c.in[4 : 4+size]; size >= 8 {
			switch kmsg.Key(binary.BigEndian.Uint16(frame)) {
			case kmsg.EndTxn:
				if c.d.endTxns.Add(1) == c.d.dropNth {
					c.d.blackout.Store(true)
				}
				if c.d.blackout.Load() {
					c.drop[int32(binary.BigEndian.Uint32(frame[4:8]))] = true
				}
			case kmsg.InitProducerID:
				c.d.blackout.Store(false)
			}
		}
		c.in = c.in[4+size:]
	}
	return n, err
}

func (c *dropConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.out = append(c.out, b...)
	var send []byte
	for len(c.out) >= 8 {
		size := int(binary.BigEndian.Uint32(c.out))
		if len(c.out) < 4+size {
			break
		}
		if corr := int32(binary.BigEndian.Uint32(c.out[4:8])); c.drop[corr] {
			delete(c.drop, corr)
			c.d.dropped.Add(1)
		} else {
			send = append(send, c.out[:4+size]...)
		}
		c.out = c.out[4+size:]
	}
	c.mu.Unlock()
	if len(send) > 0 {
		if _, err := c.Conn.Write(send); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}
