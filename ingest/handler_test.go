package ingest

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/convsync/convsync/internal/loadgen"
	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/schemas"
)

const (
	testSecret = "app-secret-5b1f"
	testVerify = "vt-7Q2x"
)

type fixture struct {
	srv   *httptest.Server
	reg   *prometheus.Registry
	logs  *bytes.Buffer
	topic string
}

// newFixture serves a webhook endpoint appending to topic through a client of brokers.
func newFixture(t *testing.T, brokers []string, topic string, timeout time.Duration, opts ...kgo.Opt) *fixture {
	t.Helper()
	cl, err := kgo.NewClient(append(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, ProducerOpts()...), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	cfg := Defaults()
	cfg.AppSecret, cfg.VerifyToken, cfg.ProduceTimeout = testSecret, testVerify, timeout
	cfg.MaxBodyBytes = 64 << 10
	reg := prometheus.NewRegistry()
	logs := &bytes.Buffer{}
	w, err := New(cfg, topic, NewKafkaAppender(cl), reg, slog.New(slog.NewJSONHandler(&syncWriter{w: logs}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	w.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, reg: reg, logs: logs, topic: topic}
}

// syncWriter serialises writes from concurrent handlers; read the buffer once the
// requests are answered.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (f *fixture) post(t *testing.T, body []byte, sig string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/api/webhook", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set("X-Hub-Signature-256", sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /api/webhook: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (f *fixture) postSigned(t *testing.T, body string) (int, string) {
	return f.post(t, []byte(body), loadgen.Sign(testSecret, []byte(body)))
}

func TestVerifyHandshake(t *testing.T) {
	f := newFixture(t, []string{"127.0.0.1:1"}, "unused", time.Second)
	tests := []struct {
		query      string
		wantStatus int
		wantBody   string
	}{
		{"hub.mode=subscribe&hub.verify_token=vt-7Q2x&hub.challenge=5519038842", 200, "5519038842"},
		{"hub.mode=subscribe&hub.verify_token=vt-7Q2x&hub.challenge=00042", 200, "00042"}, // verbatim, not parsed as a number
		{"hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1", 403, "forbidden\n"},
		{"hub.mode=unsubscribe&hub.verify_token=vt-7Q2x&hub.challenge=1", 403, "forbidden\n"},
		{"hub.challenge=1", 403, "forbidden\n"},
	}
	for _, tt := range tests {
		resp, err := http.Get(f.srv.URL + "/api/webhook?" + tt.query)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.wantStatus || string(b) != tt.wantBody {
			t.Errorf("GET ?%s = %d %q, want %d %q", tt.query, resp.StatusCode, b, tt.wantStatus, tt.wantBody)
		}
	}
}

// A produce that Kafka does not acknowledge within the deadline gets 503, so Meta
// delivers again; once Kafka answers, the same delivery gets 200. Fault injected with
// kfake.
func TestProduceDeadlineGives503(t *testing.T) {
	c, err := kfake.NewCluster(kfake.SeedTopics(3, "events"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	release := make(chan struct{})
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		<-release // hold the produce request past the deadline
		return nil, nil, false
	})
	f := newFixture(t, c.ListenAddrs(), "events", 300*time.Millisecond)
	body := specPayloads["message text"]

	if code, msg := f.postSigned(t, body); code != http.StatusServiceUnavailable {
		t.Fatalf("POST with Kafka not acknowledging = %d %q, want 503", code, msg)
	}
	close(release)
	if code, msg := f.postSigned(t, body); code != http.StatusOK {
		t.Fatalf("POST after Kafka answers again = %d %q, want 200", code, msg)
	}
	if got := testutil.ToFloat64(f.requests(outcomeUnavailable)); got != 1 {
		t.Errorf("requests with outcome unavailable = %v, want 1", got)
	}
}

func (f *fixture) requests(outcome string) prometheus.Collector {
	return counterOf(f.reg, "convsync_webhook_request_duration_seconds", "outcome", outcome)
}

// counterOf returns, as a gauge, the sample count of a histogram or the value of a
// counter with the given label.
func counterOf(reg *prometheus.Registry, name, label, value string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x", Help: "x"})
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					if h := m.GetHistogram(); h != nil {
						g.Set(float64(h.GetSampleCount()))
					} else {
						g.Set(m.GetCounter().GetValue())
					}
				}
			}
		}
	}
	return g
}

func TestSignedRequestAppendsRecordsToRealKafka(t *testing.T) {
	t.Parallel()
	kc := testenv.Kafka(t, 4)
	f := newFixture(t, kc.Brokers, kc.EventsTopic, 3*time.Second)
	codec, err := schemas.NewCodec()
	if err != nil {
		t.Fatal(err)
	}

	body := specPayloads["several entries and items"]
	if code, msg := f.postSigned(t, body); code != http.StatusOK || msg != "EVENT_RECEIVED" {
		t.Fatalf("POST signed = %d %q, want 200 EVENT_RECEIVED", code, msg)
	}
	recs := testenv.Consume(t, kc.Brokers, kc.EventsTopic, 3, 30*time.Second)
	if len(recs) != 3 {
		t.Fatalf("event log holds %d records after one request of 3 events, want 3", len(recs))
	}
	want, _ := Parse([]byte(body), time.Now())
	wantIDs := map[string]string{} // id -> page
	for _, d := range want {
		wantIDs[schemas.ID(d)] = d.EventPageID()
	}
	partOf := map[string]int32{}
	for _, r := range recs {
		env, d, err := codec.Decode(r.Value)
		if err != nil {
			t.Fatalf("record at offset %d does not decode: %v", r.Offset, err)
		}
		if string(r.Key) != env.PageID || env.PageID != d.EventPageID() {
			t.Errorf("record key %q, envelope pageid %q, data page %q: want all equal", r.Key, env.PageID, d.EventPageID())
		}
		if page, ok := wantIDs[env.ID]; !ok || page != env.PageID {
			t.Errorf("record id %s (page %s) is not one of the expected deterministic ids %v", env.ID, env.PageID, wantIDs)
		}
		if env.Source != schemas.SourceWebhook || env.SpecVersion != "1.0" || env.Type != schemas.TypeMessage {
			t.Errorf("envelope = %+v, want a CloudEvents 1.0 message from the webhook source", env)
		}
		if p, ok := partOf[env.PageID]; ok && p != r.Partition {
			t.Errorf("page %s has records in partitions %d and %d, want one partition per page", env.PageID, p, r.Partition)
		}
		partOf[env.PageID] = r.Partition
		wantPart := kgo.StickyKeyPartitioner(nil).ForTopic(kc.EventsTopic).Partition(&kgo.Record{Key: r.Key}, 4)
		if int(r.Partition) != wantPart {
			t.Errorf("page %s went to partition %d, want %d (murmur2 of the key, as Java clients do)", env.PageID, r.Partition, wantPart)
		}
	}

	// The same delivery again (Meta retries) gives the same event ids.
	if code, _ := f.postSigned(t, body); code != http.StatusOK {
		t.Fatalf("second POST = %d, want 200", code)
	}
	again := testenv.Consume(t, kc.Brokers, kc.EventsTopic, 6, 30*time.Second)
	ids := map[string]int{}
	for _, r := range again {
		env, _, err := codec.Decode(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		ids[env.ID]++
	}
	if len(ids) != 3 {
		t.Errorf("two deliveries of the same 3 events gave %d distinct ids, want 3: %v", len(ids), ids)
	}
	for id, n := range ids {
		if n != 2 {
			t.Errorf("event %s appears %d times after two deliveries, want 2", id, n)
		}
	}

	logs := f.logs.String()
	for _, secret := range []string{testSecret, `"a"`, `"text"`} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q; message text and secrets must never be logged:\n%s", secret, logs)
		}
	}
	if !strings.Contains(logs, `"outcome":"ok"`) || !strings.Contains(logs, `"events":3`) {
		t.Errorf("logs at debug lack the per-request line with outcome and events:\n%s", logs)
	}
	if got := testutil.ToFloat64(counterOf(f.reg, "convsync_webhook_events_total", "type", "message")); got != 6 {
		t.Errorf("convsync_webhook_events_total{type=message} = %v, want 6", got)
	}
}

func TestBadRequestsAppendNothing(t *testing.T) {
	t.Parallel()
	kc := testenv.Kafka(t, 2)
	f := newFixture(t, kc.Brokers, kc.EventsTopic, 3*time.Second)
	good := specPayloads["message text"]
	big := `{"object":"page","entry":[{"id":"1","messaging":[],"pad":"` + strings.Repeat("x", 70<<10) + `"}]}`
	tests := []struct {
		name string
		body string
		sig  string
		want int
	}{
		{"no signature", good, "", http.StatusUnauthorized},
		{"wrong signature", good, loadgen.Sign("other-secret", []byte(good)), http.StatusUnauthorized},
		{"signature not hex", good, "sha256=zz", http.StatusUnauthorized},
		{"sha1 only", good, "sha1=" + strings.Repeat("0", 40), http.StatusUnauthorized},
		{"signature of other bytes", good, loadgen.Sign(testSecret, []byte(good+" ")), http.StatusUnauthorized},
		{"oversize", big, loadgen.Sign(testSecret, []byte(big)), http.StatusRequestEntityTooLarge},
		{"malformed json", `{"object":"page","entry":[`, loadgen.Sign(testSecret, []byte(`{"object":"page","entry":[`)), http.StatusBadRequest},
		{"not a page object", `{"object":"instagram","entry":[]}`, loadgen.Sign(testSecret, []byte(`{"object":"instagram","entry":[]}`)), http.StatusBadRequest},
	}
	for _, tt := range tests {
		if code, msg := f.post(t, []byte(tt.body), tt.sig); code != tt.want {
			t.Errorf("POST %s = %d %q, want %d", tt.name, code, msg, tt.want)
		}
	}
	if n := testenv.EndOffsets(t, kc.Brokers, kc.EventsTopic); n != 0 {
		t.Errorf("event log holds %d records after only bad requests, want 0", n)
	}
	if got := testutil.ToFloat64(f.requests(outcomeUnauthorized)); got != 5 {
		t.Errorf("requests with outcome bad_signature = %v, want 5", got)
	}
}

// With the broker stopped the answer is 503 (Meta will deliver again); after the broker
// is back the same delivery is appended. A broker of the test's own is stopped, not the
// shared one.
func TestKafkaStoppedGives503ThenSameRequestSucceeds(t *testing.T) {
	t.Parallel()
	b := testenv.PrivateKafka(t)
	kc := testenv.Kafka(t, 1)
	kc.Brokers = []string{b.Addr}
	adm := testenv.Admin(t, kc)
	if _, err := adm.CreateTopic(context.Background(), 2, 1, nil, kc.EventsTopic); err != nil {
		t.Fatalf("create topic on the private broker: %v", err)
	}
	f := newFixture(t, kc.Brokers, kc.EventsTopic, time.Second)
	body := specPayloads["message text"]
	if code, msg := f.postSigned(t, body); code != http.StatusOK {
		t.Fatalf("POST with the broker up = %d %q, want 200", code, msg)
	}

	b.Stop()
	if code, msg := f.postSigned(t, body); code != http.StatusServiceUnavailable {
		t.Fatalf("POST with the broker stopped = %d %q, want 503", code, msg)
	}
	b.Start()
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, msg := f.postSigned(t, body)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("POST after the broker restarted = %d %q, want 200 within 60s", code, msg)
		}
	}
	codec, _ := schemas.NewCodec()
	recs := testenv.Consume(t, kc.Brokers, kc.EventsTopic, 2, 30*time.Second)
	if len(recs) < 2 {
		t.Fatalf("event log holds %d records, want the first delivery and the redelivery", len(recs))
	}
	want := schemas.ID(mustParse(t, body)[0])
	for _, r := range recs {
		env, _, err := codec.Decode(r.Value)
		if err != nil || env.ID != want {
			t.Errorf("record %d = id %s, err %v; want every copy to carry id %s", r.Offset, env.ID, err, want)
		}
	}
}

func mustParse(t *testing.T, body string) []schemas.Data {
	t.Helper()
	d, err := Parse([]byte(body), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return d
}
