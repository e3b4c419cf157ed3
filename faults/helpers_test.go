//go:build faults

// Package faults is the fault matrix of issue 13: each test runs convsync's roles as
// subprocesses of the built binary under a load of signed webhooks, injects one fault
// mid-load (a process or a service killed, restarted, paused, a pooler in between), and
// then checks exactly: every event answered 200 is in the events topic, the read model
// equals the reference fold (pipelinetest.Reference) of every event in that topic, every
// acknowledged message is in it once, and every conversation's message_count equals its
// distinct messages. The tests run one at a time (no t.Parallel: the services they
// start are heavy) under the build tag faults: `make faults`.
package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/convsync/convsync/ingest"
	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/loadgen"
	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/pipelinetest"
	"github.com/convsync/convsync/projector"
	"github.com/convsync/convsync/schemas"
)

const (
	secret   = "faults-secret"
	apiToken = "faults-token-0123456789"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

func TestMain(m *testing.M) {
	testenv.QuietRedis()
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binary builds cmd/convsync once for the whole run.
func binary(t *testing.T) string {
	t.Helper()
	root := testenv.RepoRoot(t)
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "convsync-faults-bin-")
		if binErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-C", root, "-o", filepath.Join(binDir, "convsync"), "./cmd/convsync").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, "convsync")
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// proc is one convsync role running as a subprocess.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	Addr string // its HTTP_ADDR
	logs *testenv.LogBuffer
	done chan struct{}
}

// rig is a test's world: the binary, the topics, the roles' database URL, a pool that
// reads the read model, and the environment every role gets.
type rig struct {
	t     *testing.T
	bin   string
	kc    kafka.Config
	dbURL string
	pool  *pgxpool.Pool
	env   []string
	procs []*proc
}

// newRig builds the binary and the roles' environment for kc and dbURL; pool reads the
// read model (directly, not through any fault).
func newRig(t *testing.T, kc kafka.Config, dbURL string, pool *pgxpool.Pool, extra ...string) *rig {
	t.Helper()
	r := &rig{t: t, bin: binary(t), kc: kc, dbURL: dbURL, pool: pool}
	r.env = append([]string{
		"KAFKA_BROKERS=" + strings.Join(kc.Brokers, ","),
		"KAFKA_EVENTS_TOPIC=" + kc.EventsTopic,
		"KAFKA_DELTAS_TOPIC=" + kc.DeltasTopic,
		"KAFKA_DLQ_TOPIC=" + kc.DLQTopic,
		"DATABASE_URL=" + dbURL,
		"PROCESSOR_GROUP=faults-proc-" + testenv.ID(),
		"PROJECTOR_GROUP=faults-proj-" + testenv.ID(),
		// A killed member holds its partitions until the session times out, and its open
		// transaction until the transaction times out (or its id is reused).
		"KAFKA_SESSION_TIMEOUT=6s",
		"PROCESSOR_TRANSACTION_TIMEOUT=10s",
		"META_APP_SECRET=" + secret,
		"WEBHOOK_VERIFY_TOKEN=faults-verify",
		"API_TOKENS=" + apiToken,
		"REDIS_URL=",
		"LOG_FORMAT=json",
		"LOG_LEVEL=warn",
	}, extra...)
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range r.procs {
				t.Logf("logs of %s:\n%s", p.name, tail(p.logs.String(), 3000))
			}
		}
	})
	return r
}

// start runs `convsync <role>` with the rig's environment plus extra (later wins) on a
// free loopback address, and waits until its /healthz answers.
func (r *rig) start(name, role string, extra ...string) *proc {
	r.t.Helper()
	return r.startAt(name, role, testenv.FreeAddr(r.t), extra...)
}

func (r *rig) startAt(name, role, addr string, extra ...string) *proc {
	r.t.Helper()
	env := append(append(append(os.Environ(), r.env...), "HTTP_ADDR="+addr), extra...)
	p := &proc{t: r.t, name: name, Addr: addr, logs: &testenv.LogBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(r.bin, role)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		r.t.Fatalf("start convsync %s: %v", role, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	r.procs = append(r.procs, p)
	r.t.Cleanup(p.kill9)
	p.waitHTTP("/healthz", time.Minute)
	return p
}

// waitHTTP polls path until it answers 200.
func (p *proc) waitHTTP(path string, d time.Duration) {
	p.t.Helper()
	ok := testenv.Poll(d, func() bool {
		select {
		case <-p.done:
			return false
		default:
		}
		resp, err := http.Get("http://" + p.Addr + path)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if !ok {
		p.t.Fatalf("%s: %s did not answer 200 within %s\n%s", p.name, path, d, tail(p.logs.String(), 3000))
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill9 is kill -9, then waits for the process to end.
func (p *proc) kill9() {
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// term sends SIGTERM and fails the test unless the process exits 0 within a minute.
func (p *proc) term() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("SIGTERM %s: %v", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		p.t.Fatalf("%s did not exit within a minute of SIGTERM\n%s", p.name, tail(p.logs.String(), 3000))
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		p.t.Errorf("%s exited with %d after SIGTERM, want 0\n%s", p.name, code, tail(p.logs.String(), 3000))
	}
}

// --- load -------------------------------------------------------------------------

// load sends loadgen's signed webhooks at a pace, bounded in requests and time, and
// remembers which deliveries were answered 200.
type load struct {
	deliveries []loadgen.Delivery
	status     []int
	acked      atomic.Int64
	sent       atomic.Int64
	done       chan loadgen.Result
	stop       context.CancelFunc // ends the run early: nothing more is sent
}

// startLoad sends up to rate*d requests over d to url() (asked per request, so a
// restarted ingest on another address is followed).
func startLoad(t *testing.T, url func() string, rate float64, d time.Duration, seed uint64) *load {
	t.Helper()
	n := int(rate * d.Seconds())
	gen := loadgen.NewGenerator(loadgen.GenConfig{Seed: seed, Pages: 12, UsersPerPage: 150, ZipfS: 1.1,
		MaxItems: 3, DuplicateRate: 0.02, ReorderWindow: 8})
	l := &load{deliveries: make([]loadgen.Delivery, n), status: make([]int, n), done: make(chan loadgen.Result, 1)}
	var sched context.Context
	sched, l.stop = context.WithCancel(context.Background())
	t.Cleanup(l.stop)
	sigs := make([]string, n)
	for i := range n {
		dv, err := gen.Next()
		if err != nil {
			t.Fatal(err)
		}
		l.deliveries[i], sigs[i] = dv, loadgen.Sign(secret, dv.Body)
	}
	client := loadgen.Client(16)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		l.done <- loadgen.Drive(ctx, loadgen.Pace{Rate: rate, Duration: d, Requests: n, Concurrency: 16},
			func(ctx context.Context, i int) (int, int) {
				if sched.Err() != nil {
					return 0, l.deliveries[i].Events // stopped early: not sent
				}
				l.sent.Add(1)
				st := post(ctx, client, url(), l.deliveries[i].Body, sigs[i])
				l.status[i] = st
				if st == http.StatusOK {
					l.acked.Add(1)
				}
				return st, l.deliveries[i].Events
			})
	}()
	return l
}

func post(ctx context.Context, client *http.Client, url string, body []byte, sig string) int {
	ctx, cancel := context.WithTimeout(ctx, 6*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Hub-Signature-256", sig)
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	_, _ = bytes.NewBuffer(nil).ReadFrom(resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// waitAcked waits until at least n requests were acknowledged: "mid-load" as a condition.
func (l *load) waitAcked(t *testing.T, n int64) {
	t.Helper()
	if !testenv.Poll(time.Minute, func() bool { return l.acked.Load() >= n }) {
		t.Fatalf("only %d of %d requests acknowledged within a minute (waiting for %d)", l.acked.Load(), l.sent.Load(), n)
	}
}

// wait waits for the run to end and returns its summary and the acknowledged bodies.
func (l *load) wait(t *testing.T) (loadgen.Result, [][]byte) {
	t.Helper()
	var res loadgen.Result
	select {
	case res = <-l.done:
	case <-time.After(3 * time.Minute):
		t.Fatal("the load did not end within 3 minutes")
	}
	var acked [][]byte
	for i := range res.Requests {
		if l.status[i] == http.StatusOK {
			acked = append(acked, l.deliveries[i].Body)
		}
	}
	t.Logf("load: %d requests, %d acknowledged (%d events), status %v", res.Requests, len(acked), res.Events, res.Status)
	if len(acked) == 0 {
		t.Fatalf("no request was acknowledged: %v", res.Status)
	}
	return res, acked
}

// --- checks -----------------------------------------------------------------------

type msgKey struct{ page, mid string }

// facts are what acknowledged webhooks promised: their events' ids and their messages.
type facts struct {
	ids  map[string]bool
	msgs map[msgKey]string // → psid
}

func ackedFacts(t *testing.T, bodies [][]byte) facts {
	t.Helper()
	f := facts{ids: map[string]bool{}, msgs: map[msgKey]string{}}
	for _, b := range bodies {
		ds, err := ingest.Parse(b, time.Now())
		if err != nil {
			t.Fatalf("parse an acknowledged body: %v", err)
		}
		for _, d := range ds {
			f.ids[schemas.ID(d)] = true
			if k, psid, ok := messageOf(d); ok {
				f.msgs[k] = psid
			}
		}
	}
	return f
}

// messageOf is the message an event carries content for (counted in message_count).
func messageOf(d schemas.Data) (msgKey, string, bool) {
	switch m := d.(type) {
	case schemas.Message:
		return msgKey{m.PageID, m.MID}, m.PSID, true
	case schemas.Echo:
		return msgKey{m.PageID, m.MID}, m.PSID, true
	case schemas.MessageObserved:
		return msgKey{m.PageID, m.MID}, m.PSID, true
	}
	return msgKey{}, "", false
}

// checkLog: every event of an acknowledged webhook is in the log.
func checkLog(t *testing.T, f facts, log []pipelinetest.Event) {
	t.Helper()
	in := map[string]bool{}
	for _, e := range log {
		in[e.Env.ID] = true
	}
	var missing []string
	for id := range f.ids {
		if !in[id] {
			missing = append(missing, id)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("%d of the %d events answered 200 are not in the events topic (acknowledged and lost), e.g. %v",
			len(missing), len(f.ids), missing[:min(5, len(missing))])
	}
	t.Logf("log: %d records, %d distinct events acknowledged", len(log), len(f.ids))
}

func rowsDiff(want, got projector.Rows) string {
	return cmp.Diff(want, got, cmpopts.EquateEmpty(), cmp.Transformer("json", func(r json.RawMessage) any {
		var v any
		_ = json.Unmarshal(r, &v)
		return v
	}))
}

// checkModel waits up to d for the read model to equal the reference fold of the log,
// then checks the acknowledged messages and every conversation's message_count.
func checkModel(t *testing.T, pool *pgxpool.Pool, f facts, log []pipelinetest.Event, d time.Duration) projector.Rows {
	t.Helper()
	want := pipelinetest.Reference(log)
	var got projector.Rows
	var diff string
	start := time.Now()
	testenv.Poll(d, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var err error
		if got, err = projector.Dump(ctx, pool); err != nil {
			t.Logf("read the read model: %v", err)
			return false
		}
		diff = rowsDiff(want, got)
		return diff == ""
	})
	if diff != "" {
		t.Errorf("after %s the read model still differs from the reference fold of the %d events in the log (-want +got):\n%s",
			d, len(log), tail(diff, 6000))
	} else {
		t.Logf("read model equals the reference fold after %s: %d conversations, %d messages",
			time.Since(start).Round(time.Millisecond), len(want.Conversations), len(want.Messages))
	}

	// The same promise stated plainly, independently of the reference fold.
	content := map[msgKey]projector.MessageRow{}
	perConv := map[[2]string]int{}
	for _, m := range got.Messages {
		if m.Direction != nil {
			content[msgKey{m.PageID, m.MID}] = m
			perConv[[2]string{m.PageID, m.PSID}]++
		}
	}
	logMsgs := map[[2]string]map[string]bool{}
	for _, e := range log {
		if k, psid, ok := messageOf(e.Data); ok {
			c := [2]string{k.page, psid}
			if logMsgs[c] == nil {
				logMsgs[c] = map[string]bool{}
			}
			logMsgs[c][schemas.NormalizeMID(k.mid)] = true
		}
	}
	var lost []string
	for k := range f.msgs {
		if _, ok := content[msgKey{k.page, schemas.NormalizeMID(k.mid)}]; !ok {
			lost = append(lost, k.page+"/"+k.mid)
		}
	}
	sort.Strings(lost)
	if len(lost) > 0 {
		t.Errorf("%d of the %d acknowledged messages are not in the read model, e.g. %v", len(lost), len(f.msgs), lost[:min(5, len(lost))])
	}
	bad := 0
	for _, c := range got.Conversations {
		k := [2]string{c.PageID, c.PSID}
		if c.MessageCount != perConv[k] || c.MessageCount != len(logMsgs[k]) {
			if bad < 5 {
				t.Errorf("conversation %s/%s: message_count = %d, but it has %d distinct messages in the read model and %d in the log",
					c.PageID, c.PSID, c.MessageCount, perConv[k], len(logMsgs[k]))
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%d conversations have a message_count other than their distinct messages", bad)
	}
	if len(f.msgs) == 0 {
		t.Error("no acknowledged message to check")
	}
	return got
}

// verify runs every check of an acknowledged load against the rig's topics and model.
func (r *rig) verify(acked [][]byte, d time.Duration) projector.Rows {
	r.t.Helper()
	f := ackedFacts(r.t, acked)
	log := pipelinetest.ReadLog(r.t, r.kc.Brokers, r.kc.EventsTopic)
	checkLog(r.t, f, log)
	return checkModel(r.t, r.pool, f, log, d)
}

// metric scrapes the process's /metrics and sums every series of name.
func (p *proc) metric(name string) float64 {
	p.t.Helper()
	resp, err := http.Get("http://" + p.Addr + "/metrics")
	if err != nil {
		p.t.Fatalf("scrape %s: %v", p.name, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	var sum float64
	for _, line := range strings.Split(buf.String(), "\n") {
		if !strings.HasPrefix(line, name) || len(line) == len(name) || (line[len(name)] != ' ' && line[len(name)] != '{') {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
			sum += v
		}
	}
	return sum
}
