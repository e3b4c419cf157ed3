package bench

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/testenv"
)

const (
	benchSecret = "bench-secret"
	benchToken  = "bench-token-0123456789"
)

// binary is the convsync under test: the file CONVSYNC_BIN names when it is set (a build
// of a given commit), else one built from this checkout.
func binary(b *testing.B) string {
	b.Helper()
	if bin := os.Getenv("CONVSYNC_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			b.Fatalf("CONVSYNC_BIN: %v", err)
		}
		return bin
	}
	return testenv.Binary(b)
}

// stack is one deployment of the built binary: a fresh Postgres schema, fresh topics, a
// Redis key prefix of its own, and the convsync processes started on them with every
// default but the names that keep runs apart. Everything goes at the benchmark's cleanup.
type stack struct {
	bin   string
	kc    kafka.Config
	db    string // DATABASE_URL with the schema's search_path
	env   []string
	procs []*proc
	cpu   cpuMeter
	// exporters remembers which process exports a metric family.
	exporters map[string]*proc
}

// proc is one convsync process of a stack.
type proc struct {
	role string
	cmd  *exec.Cmd
	base string // http://HTTP_ADDR
	logs *testenv.LogBuffer
	done chan struct{}
}

func newStack(b *testing.B, bin string) *stack {
	b.Helper()
	redisURL := testenv.Env("REDIS_URL")
	if redisURL == "" {
		b.Skip("REDIS_URL not set: `make services-up`, then set -a; . .local/env; set +a")
	}
	db := testenv.Schema(b)
	kc := testenv.Kafka(b, kafka.Defaults().Partitions) // what `convsync migrate` would create
	_, prefix := testenv.Redis(b)                       // its keys are deleted at cleanup
	id := testenv.ID()
	st := &stack{bin: bin, kc: kc, db: db, cpu: newCPUMeter(b), exporters: map[string]*proc{}}
	st.env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir(),
		"DATABASE_URL=" + db,
		"REDIS_URL=" + redisURL,
		// A fresh schema starts its versions at 1 again: entries another run left under
		// the default prefix would win the version rule and be served.
		"CACHE_PREFIX=" + prefix,
		"KAFKA_BROKERS=" + strings.Join(kc.Brokers, ","),
		"KAFKA_EVENTS_TOPIC=" + kc.EventsTopic,
		"KAFKA_DELTAS_TOPIC=" + kc.DeltasTopic,
		"KAFKA_DLQ_TOPIC=" + kc.DLQTopic,
		"PROCESSOR_GROUP=bench-proc-" + id,
		"PROJECTOR_GROUP=bench-proj-" + id,
		"META_APP_SECRET=" + benchSecret,
		"WEBHOOK_VERIFY_TOKEN=bench-verify",
		"API_TOKENS=" + benchToken,
	}
	mig := exec.Command(bin, "migrate")
	mig.Env = st.env
	if out, err := mig.CombinedOutput(); err != nil {
		b.Fatalf("convsync migrate: %v\n%s", err, out)
	}
	return st
}

func (st *stack) group(role string) string {
	for _, kv := range st.env {
		if v, ok := strings.CutPrefix(kv, strings.ToUpper(role)+"_GROUP="); ok {
			return v
		}
	}
	return ""
}

// start runs `convsync <role>` on an HTTP_ADDR of its own and waits until /readyz
// answers 200. The process gets SIGTERM at cleanup.
func (st *stack) start(b *testing.B, role string) *proc {
	b.Helper()
	addr := testenv.FreeAddr(b)
	p := &proc{role: role, base: "http://" + addr, logs: &testenv.LogBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(st.bin, role)
	p.cmd.Env = append(append([]string{}, st.env...), "HTTP_ADDR="+addr)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		b.Fatalf("start convsync %s: %v", role, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	b.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if b.Failed() {
			b.Logf("logs of convsync %s:\n%s", role, tail(p.logs))
		}
	})
	if !testenv.Poll(90*time.Second, func() bool {
		if p.exited() {
			return true
		}
		resp, err := http.Get(p.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}) {
		b.Fatalf("convsync %s not ready within 90s\n%s", role, tail(p.logs))
	}
	if p.exited() {
		b.Fatalf("convsync %s exited before the load: %v\n%s", role, p.cmd.ProcessState, tail(p.logs))
	}
	st.procs = append(st.procs, p)
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// alive fails the benchmark if a process of the stack has exited.
func (st *stack) alive(b *testing.B) {
	b.Helper()
	for _, p := range st.procs {
		if p.exited() {
			b.Fatalf("convsync %s exited during the run: %v\n%s", p.role, p.cmd.ProcessState, tail(p.logs))
		}
	}
}

func (st *stack) pids() []int {
	out := make([]int, 0, len(st.procs))
	for _, p := range st.procs {
		out = append(out, p.cmd.Process.Pid)
	}
	return out
}

// readCPU is the stack's CPU seconds so far: its convsync processes, Postgres, Kafka.
func (st *stack) readCPU() cpu { return st.cpu.read(st.pids()) }

// exporter is the process whose /metrics has the family name: with the roles apart,
// freshness comes from `project` and webhook latency from `ingest`.
func (st *stack) exporter(b *testing.B, name string) *proc {
	b.Helper()
	if p := st.exporters[name]; p != nil {
		return p
	}
	for _, p := range st.procs {
		if scrape(b, p.base)[name] != nil {
			st.exporters[name] = p
			return p
		}
	}
	b.Fatalf("no process of the stack exports %s", name)
	return nil
}

// waitAssigned waits until the processor's and the projector's groups have every
// partition of their topics assigned, so the load does not meet a group still joining.
func (st *stack) waitAssigned(b *testing.B) {
	b.Helper()
	adm := testenv.Admin(b, st.kc)
	want := map[string]string{st.group("processor"): st.kc.EventsTopic, st.group("projector"): st.kc.DeltasTopic}
	var last string
	if !testenv.Poll(60*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		groups := make([]string, 0, len(want))
		for g := range want {
			groups = append(groups, g)
		}
		ds, err := adm.DescribeGroups(ctx, groups...)
		if err != nil {
			last = err.Error()
			return false
		}
		for g, topic := range want {
			d, ok := ds[g]
			if !ok || d.State != "Stable" || len(d.AssignedPartitions()[topic]) != st.kc.Partitions {
				last = g + " is " + d.State
				return false
			}
		}
		return true
	}) {
		b.Fatalf("consumer groups not assigned within 60s: %s", last)
	}
}

// tail is the end of a process's log, short enough to print in a failure.
func tail(logs *testenv.LogBuffer) string {
	s := logs.String()
	if len(s) > 4000 {
		s = "…" + s[len(s)-4000:]
	}
	return s
}
