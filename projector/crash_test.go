package projector_test

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/testenv"
)

type proc struct {
	cmd  *exec.Cmd
	logs *strings.Builder
}

func spawn(t *testing.T, bin, role string, env []string) *proc {
	t.Helper()
	logs := &strings.Builder{}
	cmd := exec.Command(bin, role)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start convsync %s: %v", role, err)
	}
	p := &proc{cmd: cmd, logs: logs}
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) kill() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.cmd.Wait()
	}
}

// Crashes for real: `convsync process` and `convsync project` run as subprocesses and get
// kill -9 at random points (mid-batch, mid-transaction) while events flow, then start
// again with the same groups and transactional id. The read model still equals the
// reference fold: no message lost, none counted twice.
func TestPipelineSurvivesKillNine(t *testing.T) {
	t.Parallel()
	bin := testenv.Binary(t)
	kc := testenv.Kafka(t, 4)
	readPool, dbURL := testenv.Postgres(t)
	all, refs, want := histories(t, 60, 9000)
	env := pipelineEnv(kc, dbURL, "proc-"+testenv.ID(), "proj-"+testenv.ID())
	rng := rand.New(rand.NewPCG(11, 11))
	chunks := 4
	for i := range chunks {
		lo, hi := i*len(all)/chunks, (i+1)*len(all)/chunks
		p := spawn(t, bin, "process", env)
		j := spawn(t, bin, "project", env)
		produce(t, kc, all[lo:hi])
		<-time.After(time.Duration(200+rng.IntN(1500)) * time.Millisecond)
		p.kill()
		j.kill()
	}
	p := spawn(t, bin, "process", env)
	j := spawn(t, bin, "project", env)
	got := waitRows(t, readPool, want, 120*time.Second)
	reportBySeed(t, refs, got)
	if t.Failed() {
		t.Logf("processor logs:\n%s\nprojector logs:\n%s", tail(p.logs.String()), tail(j.logs.String()))
	}
}

func tail(s string) string {
	if len(s) > 4000 {
		return s[len(s)-4000:]
	}
	return s
}

func pipelineEnv(kc kafka.Config, dbURL, procGroup, projGroup string) []string {
	return []string{
		"KAFKA_BROKERS=" + strings.Join(kc.Brokers, ","),
		"KAFKA_EVENTS_TOPIC=" + kc.EventsTopic,
		"KAFKA_DELTAS_TOPIC=" + kc.DeltasTopic,
		"KAFKA_DLQ_TOPIC=" + kc.DLQTopic,
		"DATABASE_URL=" + dbURL,
		"PROCESSOR_GROUP=" + procGroup,
		// Stable across restarts, as a StatefulSet ordinal would be: the new instance
		// fences the killed one's open transaction at once.
		"PROCESSOR_TRANSACTIONAL_ID=" + procGroup + "-0",
		"PROJECTOR_GROUP=" + projGroup,
		// A killed member holds its partitions until the session times out.
		"KAFKA_SESSION_TIMEOUT=6s",
		"HTTP_ADDR=127.0.0.1:0",
		"LOG_FORMAT=json",
		"LOG_LEVEL=warn",
	}
}
