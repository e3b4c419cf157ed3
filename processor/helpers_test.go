package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/ingest"
	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/loadgen"
	"github.com/convsync/convsync/internal/logging"
	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/schemas/deltas"
)

const (
	page1 = "104400000000001"
	page2 = "104400000000002"
)

// t0 is when the test facts happen; records arrive an hour later, a millisecond apart,
// so each event's ReceivedMS tells which record it came from.
var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func newCodec(t testing.TB) *schemas.Codec {
	t.Helper()
	c, err := schemas.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// conversationEvents is a small conversation on two pages: messages, echoes, reads, a
// delivery, a reaction, an edit, a postback and a redelivered message.
func conversationEvents() []schemas.Data {
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	const u1, u2, u3 = "7300000000000011", "7300000000000012", "7300000000000021"
	hello := schemas.Message{PageID: page1, PSID: u1, MID: "m_a1", Text: "hello", SentAt: at(1)}
	return []schemas.Data{
		hello,
		schemas.Echo{PageID: page1, PSID: u1, MID: "m_a2", Text: "hi, how can we help?", AppID: "880000000000007", SentAt: at(2)},
		schemas.Read{PageID: page1, PSID: u1, Watermark: at(3)},
		schemas.Reaction{PageID: page1, PSID: u1, MID: "m_a2", Action: schemas.React, Reaction: "love", Emoji: "❤️", ReactedAt: at(4)},
		schemas.Edit{PageID: page1, PSID: u1, MID: "m_a1", Text: "hello there", NumEdit: 1, EditedAt: at(5)},
		hello, // Meta delivered the webhook twice
		schemas.Message{PageID: page1, PSID: u2, MID: "m_b1", Text: "are you open?", SentAt: at(6)},
		schemas.Echo{PageID: page1, PSID: u2, MID: "m_b2", Text: "yes, until 6", SentAt: at(7)},
		schemas.Delivery{PageID: page1, PSID: u2, MIDs: []string{"m_b2"}, Watermark: at(8)},
		schemas.Read{PageID: page1, PSID: u2, Watermark: at(9)},
		schemas.Message{PageID: page2, PSID: u3, MID: "m_c1", Text: "price?", SentAt: at(3)},
		schemas.Echo{PageID: page2, PSID: u3, MID: "m_c2", Text: "10 EUR", SentAt: at(4)},
		schemas.Read{PageID: page2, PSID: u3, Watermark: at(5)},
		schemas.Postback{PageID: page2, PSID: u3, Title: "Buy", Payload: "BUY", OccurredAt: at(6)},
	}
}

// loadgenEvents is n events of the load generator's mix (redeliveries included) on a
// few pages.
func loadgenEvents(t testing.TB, seed uint64, pages, n int) []schemas.Data {
	cfg := loadgen.DefaultGenConfig()
	cfg.Seed, cfg.Pages, cfg.UsersPerPage = seed, pages, 20
	return genEvents(t, cfg, n)
}

// genEvents is the first n events the load generator makes for cfg, as ingest parses
// them.
func genEvents(t testing.TB, cfg loadgen.GenConfig, n int) []schemas.Data {
	t.Helper()
	gen := loadgen.NewGenerator(cfg)
	var out []schemas.Data
	for len(out) < n {
		d, err := gen.Next()
		if err != nil {
			t.Fatal(err)
		}
		evs, err := ingest.Parse(d.Body, t0)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, evs...)
	}
	return out[:n]
}

// records encodes data as event records for topic, record i received at t0+1h+(first+i)ms.
func records(t testing.TB, topic string, first int, data []schemas.Data) []*kgo.Record {
	t.Helper()
	out := make([]*kgo.Record, 0, len(data))
	for i, d := range data {
		v, env, err := schemas.Encode(schemas.SourceWebhook, receivedAt(first+i), d)
		if err != nil {
			t.Fatalf("encode %s: %v", d.EventType(), err)
		}
		out = append(out, &kgo.Record{Topic: topic, Key: []byte(env.PageID), Value: v})
	}
	return out
}

func receivedAt(i int) time.Time { return t0.Add(time.Hour + time.Duration(i)*time.Millisecond) }

// decodeAll decodes event records as the processor does, failing on any that does not.
func decodeAll(t testing.TB, codec *schemas.Codec, recs []*kgo.Record) []deltas.Event {
	t.Helper()
	out := make([]deltas.Event, 0, len(recs))
	for _, r := range recs {
		env, d, err := codec.Decode(r.Value)
		if err != nil {
			t.Fatalf("a test event does not decode: %v", err)
		}
		out = append(out, deltas.Event{Env: env, Data: d})
	}
	return out
}

// mergeDeltas is the reference merge of deltas, written for the tests from schemas/deltas'
// rules: the deltas of each page merged into one, pages sorted, ReceivedMS sorted.
func mergeDeltas(ds []deltas.Delta) []deltas.Delta {
	byPage := map[string]*deltas.Delta{}
	for _, d := range ds {
		acc := byPage[d.PageID]
		if acc == nil {
			acc = &deltas.Delta{PageID: d.PageID}
			byPage[d.PageID] = acc
		}
		mergeDelta(acc, d)
	}
	out := make([]deltas.Delta, 0, len(byPage))
	for _, d := range byPage {
		slices.Sort(d.ReceivedMS)
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PageID < out[j].PageID })
	return out
}

func mergeDelta(a *deltas.Delta, b deltas.Delta) {
	a.LastSyncedAt = maxTime(a.LastSyncedAt, b.LastSyncedAt)
	if b.PageName != "" && later(b.PageNameAt, b.PageName, a.PageNameAt, a.PageName) {
		a.PageName, a.PageNameAt = b.PageName, b.PageNameAt
	}
	a.Events += b.Events
	a.ReceivedMS = append(a.ReceivedMS, b.ReceivedMS...)
	others := map[string]deltas.Other{}
	for _, o := range append(slices.Clone(a.Others), b.Others...) {
		others[o.ID] = o
	}
	a.Others = nil
	for _, o := range others {
		a.Others = append(a.Others, o)
	}
	sort.Slice(a.Others, func(i, j int) bool { return a.Others[i].ID < a.Others[j].ID })
	for _, bc := range b.Conversations {
		i := slices.IndexFunc(a.Conversations, func(c deltas.ConversationDelta) bool { return c.PSID == bc.PSID })
		if i < 0 {
			a.Conversations = append(a.Conversations, deltas.ConversationDelta{PSID: bc.PSID})
			i = len(a.Conversations) - 1
		}
		ac := &a.Conversations[i]
		deltas.MergeConversation(ac, bc)
		for _, bm := range bc.Messages {
			j := slices.IndexFunc(ac.Messages, func(m deltas.MessageDelta) bool { return m.MID == bm.MID })
			if j < 0 {
				ac.Messages = append(ac.Messages, deltas.MessageDelta{MID: bm.MID})
				j = len(ac.Messages) - 1
			}
			deltas.MergeMessage(&ac.Messages[j], bm)
		}
		sort.Slice(ac.Messages, func(x, y int) bool { return ac.Messages[x].MID < ac.Messages[y].MID })
	}
	sort.Slice(a.Conversations, func(i, j int) bool { return a.Conversations[i].PSID < a.Conversations[j].PSID })
}

// diffDeltas compares the merged deltas with one deltas.Fold over every event, ReceivedMS order
// aside.
func diffDeltas(got []deltas.Delta, events []deltas.Event) string {
	want := deltas.Fold(events)
	for i := range want {
		slices.Sort(want[i].ReceivedMS)
	}
	return cmp.Diff(want, mergeDeltas(got), cmpopts.EquateEmpty())
}

func deltasOf(t testing.TB, recs []*kgo.Record) []deltas.Delta {
	t.Helper()
	out := make([]deltas.Delta, 0, len(recs))
	for _, r := range recs {
		var d deltas.Delta
		if err := json.Unmarshal(r.Value, &d); err != nil {
			t.Fatalf("delta at %s/%d@%d is not JSON: %v", r.Topic, r.Partition, r.Offset, err)
		}
		out = append(out, d)
	}
	return out
}

// receivedCounts counts each ReceivedMS of the deltas: a record's event folded once
// counts 1.
func receivedCounts(ds []deltas.Delta) map[int64]int {
	out := map[int64]int{}
	for _, d := range ds {
		for _, ms := range d.ReceivedMS {
			out[ms]++
		}
	}
	return out
}

// checkEachEventOnce fails unless the deltas account for every record of events exactly
// once.
func checkEachEventOnce(t *testing.T, ds []deltas.Delta, events []*kgo.Record) {
	t.Helper()
	sum := 0
	for _, d := range ds {
		sum += d.Events
	}
	if sum != len(events) {
		t.Errorf("committed deltas account for %d events, want the %d produced", sum, len(events))
	}
	counts := receivedCounts(ds)
	for i := range events {
		ms := receivedAt(i).UnixMilli()
		if counts[ms] != 1 {
			t.Errorf("event record %d is folded into %d committed deltas, want exactly 1", i, counts[ms])
		}
		delete(counts, ms)
	}
	if len(counts) > 0 {
		t.Errorf("committed deltas hold %d arrival times of no produced event", len(counts))
	}
}

// produce appends recs and returns them with partition and offset set.
func produce(t testing.TB, brokers []string, recs []*kgo.Record) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := cl.ProduceSync(ctx, recs...)
	if err := res.FirstErr(); err != nil {
		t.Fatalf("produce %d test records: %v", len(recs), err)
	}
	out := make([]*kgo.Record, len(res))
	for i, r := range res {
		out[i] = r.Record
	}
	return out
}

// eachDelivery runs test once per delivery mode, in parallel subtests: a clean run
// writes each event into exactly one delta in both.
func eachDelivery(t *testing.T, test func(t *testing.T, delivery string)) {
	for _, d := range []string{AtLeastOnce, ExactlyOnce} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			test(t, d)
		})
	}
}

func testConfig() Config {
	cfg := Defaults()
	cfg.Group = "test-processor-" + testenv.ID()
	cfg.TransactionTimeout = 10 * time.Second
	return cfg
}

func newProcessor(t testing.TB, cfg Config, kc kafka.Config, reg prometheus.Registerer, opts ...kgo.Opt) *Processor {
	t.Helper()
	log := logging.Discard()
	if debugOpts != nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	p, err := New(cfg, kc, newCodec(t), append(opts, debugOpts...), reg, log)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// debugOpts are added to every test processor's client options: with KGO_DEBUG set,
// franz-go's logger; the processor then logs at debug and kfake logs too.
var debugOpts = func() []kgo.Opt {
	if os.Getenv("KGO_DEBUG") == "" {
		return nil
	}
	return []kgo.Opt{kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelInfo, nil))}
}()

// running is a processor's Run in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, p *Processor) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(time.Minute):
			t.Error("Run did not return within a minute of its context's cancellation")
		}
	})
	return r
}

// halt cancels Run and returns what it returned, failing unless it does within a minute.
func (r *running) halt(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(time.Minute):
		t.Fatal("Run did not return within a minute of its context's cancellation")
		return nil
	}
}

// stop cancels Run and fails unless it returns nil within a minute.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run returned %v after its context was cancelled, want nil", err)
		}
		r.done <- nil // for the cleanup
	case <-time.After(time.Minute):
		t.Fatal("Run did not return within a minute of its context's cancellation")
	}
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %s", what, d)
		}
		<-tick.C
	}
}

func admin(t testing.TB, brokers []string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// caughtUp reports whether group has committed, for every partition of topic, the
// topic's end offset.
func caughtUp(adm *kadm.Client, group, topic string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil || ends.Error() != nil {
		return false
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil || committed.Error() != nil {
		return false
	}
	ok := true
	ends.Each(func(end kadm.ListedOffset) {
		c, found := committed.Lookup(topic, end.Partition)
		if end.Offset > 0 && (!found || c.At != end.Offset) {
			ok = false
		}
	})
	return ok
}

// committedOffsets sums the offsets group has committed on topic.
func committedOffsets(t testing.TB, adm *kadm.Client, group, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("fetch offsets of group %s: %v", group, err)
	}
	var sum int64
	committed.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.At > 0 {
			sum += o.At
		}
	})
	return sum
}

// readAll reads the committed records of topic up to its end, as a read_committed
// consumer would, once no transaction on it is open: it keeps control records so it
// knows when it has passed the last commit marker.
func readAll(t testing.TB, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	adm := admin(t, brokers)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil || ends.Error() != nil {
		t.Fatalf("list end offsets of %s: %v %v", topic, err, ends.Error())
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: partitions %v not read to their end within a minute", topic, left)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset+1 >= left[r.Partition] {
				delete(left, r.Partition)
			}
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
		})
	}
	return out
}

// checkDeltaRecords fails unless every delta record is keyed by its page id, carries
// the delta headers, and all deltas of a page are in one partition.
func checkDeltaRecords(t *testing.T, recs []*kgo.Record, ds []deltas.Delta) {
	t.Helper()
	partOf := map[string]int32{}
	for i, r := range recs {
		if string(r.Key) != ds[i].PageID {
			t.Errorf("delta of page %s has key %q, want the page id", ds[i].PageID, r.Key)
		}
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
		}
		if h["content-type"] != "application/json" || h["convsync-delta"] != "v1" {
			t.Errorf("delta of page %s has headers %v, want content-type application/json and convsync-delta v1", ds[i].PageID, h)
		}
		if p, ok := partOf[ds[i].PageID]; ok && p != r.Partition {
			t.Errorf("ds of page %s are in partitions %d and %d, want one", ds[i].PageID, p, r.Partition)
		}
		partOf[ds[i].PageID] = r.Partition
	}
}

func describe(ds []deltas.Delta) string {
	s := ""
	for _, d := range ds {
		s += fmt.Sprintf("%s:%d ", d.PageID, d.Events)
	}
	return s
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// later reports whether (t1, s1) > (t2, s2).
func later(t1 time.Time, s1 string, t2 time.Time, s2 string) bool {
	if !t1.Equal(t2) {
		return t1.After(t2)
	}
	return s1 > s2
}
