package projector_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/internal/loadgen"
	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/pipelinetest"
	"github.com/convsync/convsync/schemas/deltas"
	"github.com/convsync/convsync/schemas/dlq"
)

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last seen: %s)", what, d, last)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}
}

// A delta that Postgres refuses (here a conversation whose psid is too long for the
// primary key's index, SQLSTATE 54000, and one whose message breaks a CHECK, 23514, as
// another producer could write them) must not stop its partition: each refused part goes
// to the DLQ with its reason and source offset, the rest of the delta and the next
// deltas are applied.
func TestRefusedDeltaIsDeadLetteredAndThePartitionMovesOn(t *testing.T) {
	t.Parallel()
	kc := testenv.Kafka(t, 1)
	pool, _ := testenv.Postgres(t)
	ctx, cancel := context.WithCancel(context.Background())
	projReg := prometheus.NewRegistry()
	stop := pipelinetest.Pipeline(t, ctx, kc, pool, prometheus.NewRegistry(), projReg, nil)
	defer func() { cancel(); stop() }()

	const page = "104400000000901"
	at := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	bad := noise(6000) // a btree index row holds at most 2704 bytes, compressed
	msg := func(mid string, sec int) deltas.MessageDelta {
		return deltas.MessageDelta{MID: mid, ContentSource: deltas.SourceWebhook, Direction: "inbound", Text: mid, SentAt: at.Add(time.Duration(sec) * time.Second)}
	}
	conv := func(psid, mid string, sec int) deltas.ConversationDelta {
		return deltas.ConversationDelta{PSID: psid, LastAt: at.Add(time.Duration(sec) * time.Second), LastMID: mid, LastDirection: "inbound",
			Messages: []deltas.MessageDelta{msg(mid, sec)}}
	}
	sideways := conv("7300000000000003", "m_sideways", 4)
	sideways.Messages[0].Direction = "sideways" // messages.direction has a CHECK: SQLSTATE 23514
	first := deltas.Delta{PageID: page, Events: 3, Conversations: []deltas.ConversationDelta{conv(bad, "m_bad", 1), conv("7300000000000001", "m_good", 2), sideways}}
	second := deltas.Delta{PageID: page, Events: 1, Conversations: []deltas.ConversationDelta{conv("7300000000000002", "m_next", 3)}}
	var recs []*kgo.Record
	for _, d := range []deltas.Delta{first, second} {
		b, err := deltas.Encode(d)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: kc.DeltasTopic, Key: []byte(page), Value: b, Headers: deltas.Headers()})
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	waitFor(t, 30*time.Second, "the next delta and the good part of the refused one are applied", func() (bool, string) {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM messages WHERE page_id = $1 AND mid IN ('m_good', 'm_next')`, page).Scan(&n)
		return err == nil && n == 2, fmt.Sprintf("%d of 2 messages, error %v", n, err)
	})
	var convs int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM conversations WHERE page_id = $1`, page).Scan(&convs); err != nil || convs != 2 {
		t.Errorf("page has %d conversations (error %v), want 2: the refused one is not there", convs, err)
	}

	dead := readTopic(t, kc.Brokers, kc.DLQTopic, 2)
	wantCode := map[string]string{bad: "54000", "7300000000000003": "23514"}
	for _, r := range dead {
		info, ok := dlq.Read(r)
		if !ok || info.Category != dlq.CategoryRefused || info.SourceTopic != kc.DeltasTopic || info.SourceOffset != 0 {
			t.Errorf("dead letter headers = %+v (ok %v), want category refused, source %s offset 0", info, ok, kc.DeltasTopic)
		}
		d, err := deltas.Decode(r.Value)
		if err != nil || len(d.Conversations) != 1 {
			t.Fatalf("dead letter value = %s (error %v), want one refused conversation alone", r.Value, err)
		}
		psid := d.Conversations[0].PSID
		if code, ok := wantCode[psid]; !ok || !strings.Contains(info.Reason, code) {
			t.Errorf("dead letter of conversation %.20s… says %q, want SQLSTATE %s", psid, info.Reason, wantCode[psid])
		}
		delete(wantCode, psid)
	}
	if got := testutil.ToFloat64(dlqCounter(t, projReg, kc.DeltasTopic, dlq.CategoryRefused)); got != 2 {
		t.Errorf("convsync_dlq_records_total{reason=refused} = %v, want 2", got)
	}
}

// The example: an attachment payload holding a lone UTF-16 surrogate is valid
// JSON and passes the schema, but jsonb refuses it. It is made valid (U+FFFD), so it and
// the next message of the page are both in the read model.
func TestWebhookWithALoneSurrogateDoesNotStopThePage(t *testing.T) {
	t.Parallel()
	kc := testenv.Kafka(t, 1)
	pool, _ := testenv.Postgres(t)
	ctx, cancel := context.WithCancel(context.Background())
	stop := pipelinetest.Pipeline(t, ctx, kc, pool, prometheus.NewRegistry(), prometheus.NewRegistry(), nil)
	defer func() { cancel(); stop() }()
	url := pipelinetest.Webhook(t, kc)

	const page, psid = "104400000000902", "7300000000000902"
	bodies := []string{
		`{"object":"page","entry":[{"id":"` + page + `","time":1777626000000,"messaging":[{"sender":{"id":"` + psid + `"},"recipient":{"id":"` + page + `"},"timestamp":1777626000000,` +
			`"message":{"mid":"m_surrogate","text":"see \ud83d attached","attachments":[{"type":"file","payload":{"url":"https://cdn.example/f","note":"\ud83d broken half","nul":"a\u0000b"}}]},` +
			`"referral":{"ref":"\udc00"}},` +
			`{"sender":{"id":"` + psid + `"},"recipient":{"id":"` + page + `"},"timestamp":1777626000100,"postback":{"mid":"m_pb","title":"\ud83d","payload":"P","referral":{"ref":"\ud800x"}}},` +
			`{"sender":{"id":"` + psid + `"},"recipient":{"id":"` + page + `"},"timestamp":1777626000200,"referral":{"ref":"r\u0000","source":"SHORTLINK","type":"OPEN_THREAD","extra":"\udfff"}},` +
			`{"sender":{"id":"` + psid + `"},"recipient":{"id":"` + page + `"},"timestamp":1777626000300,"optin":{"type":"notification_messages","payload":"\ud83d","notification_messages_token":"t"}},` +
			`{"sender":{"id":"` + psid + `"},"recipient":{"id":"` + page + `"},"timestamp":1777626000400,"policy_enforcement":{"action":"block","reason":"\udbff"}}]}]}`,
		`{"object":"page","entry":[{"id":"` + page + `","time":1777626001000,"messaging":[{"sender":{"id":"` + psid + `"},"recipient":{"id":"` + page + `"},"timestamp":1777626001000,` +
			`"message":{"mid":"m_after","text":"ordinary"}}]}]}`,
	}
	for i, body := range bodies {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader([]byte(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Hub-Signature-256", loadgen.Sign(pipelinetest.Secret, []byte(body)))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("webhook %d answered %d, want 200", i, res.StatusCode)
		}
	}
	waitFor(t, 30*time.Second, "both messages of the page are in the read model", func() (bool, string) {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM messages WHERE page_id = $1`, page).Scan(&n)
		return err == nil && n == 2, fmt.Sprintf("%d of 2, error %v", n, err)
	})
	var events int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM conversation_events WHERE page_id = $1`, page).Scan(&events); err != nil || events != 4 {
		t.Errorf("page has %d stored events (error %v), want 4: the postback, referral, opt-in and unknown kind with their raw JSON", events, err)
	}
	var note string
	if err := pool.QueryRow(ctx, `SELECT attachments->0->'payload'->>'note' FROM messages WHERE page_id = $1 AND mid = 'm_surrogate'`, page).Scan(&note); err != nil || note != "\uFFFD broken half" {
		t.Errorf("stored note = %q (error %v), want the lone surrogate as U+FFFD", note, err)
	}
}

// noise is n letters and digits that do not compress.
func noise(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b)
}

// readTopic reads n records of topic from the start, read_committed, or fails.
func readTopic(t *testing.T, brokers []string, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s holds %d records, want %d", topic, len(out), n)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

func dlqCounter(t *testing.T, reg *prometheus.Registry, topic, reason string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "convsync_dlq_records_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["topic"] == topic && labels["reason"] == reason {
				return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x", Help: "x"}, func() float64 { return m.GetCounter().GetValue() })
			}
		}
	}
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x", Help: "x"}, func() float64 { return 0 })
}
