//go:build faults

package faults

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/testenv"
)

// kcluster is three KRaft brokers of the test's own, started by deploy/local's
// `services.sh cluster-up` on free ports in a temporary folder, with the jars
// `make services-up` resolved.
type kcluster struct {
	t       *testing.T
	root    string
	env     []string
	local   string
	Brokers []string
}

func startCluster(t *testing.T) *kcluster {
	t.Helper()
	testenv.KafkaBrokers(t) // skips, or fails under CI, without the local stack
	root := testenv.RepoRoot(t)
	libs := filepath.Join(root, ".local", "kafka", "libs")
	if _, err := os.Stat(filepath.Join(libs, ".stamp")); err != nil {
		t.Fatalf("no Kafka jars in %s: run `make services-up`", libs)
	}
	c := &kcluster{t: t, root: root, local: t.TempDir()}
	var ports, cports []string
	for range 3 {
		p, cp := testenv.FreeAddr(t), testenv.FreeAddr(t)
		c.Brokers = append(c.Brokers, p)
		ports, cports = append(ports, p[len("127.0.0.1:"):]), append(cports, cp[len("127.0.0.1:"):])
	}
	c.env = append(os.Environ(),
		"CONVSYNC_LOCAL_DIR="+c.local,
		"CONVSYNC_KAFKA_LIBS="+libs,
		"CONVSYNC_KAFKA_CLUSTER_PORTS="+strings.Join(ports, ","),
		"CONVSYNC_KAFKA_CLUSTER_CONTROLLER_PORTS="+strings.Join(cports, ","),
		"CONVSYNC_KAFKA_HEAP=-Xms128m -Xmx256m",
	)
	t.Cleanup(func() { c.script("cluster-down") })
	c.script("cluster-up")
	return c
}

func (c *kcluster) script(action string) {
	c.t.Helper()
	cmd := exec.Command("bash", filepath.Join(c.root, "deploy", "local", "services.sh"), action)
	cmd.Env = c.env
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("services.sh %s: %v\n%s", action, err, out)
	}
}

// signal sends sig to node n (1-3).
func (c *kcluster) signal(n int, sig syscall.Signal) {
	c.t.Helper()
	b, err := os.ReadFile(filepath.Join(c.local, "kafka-cluster", "node"+strconv.Itoa(n), "kafka.pid"))
	if err != nil {
		c.t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err := syscall.Kill(pid, sig); err != nil {
		c.t.Fatalf("signal %v to kafka node %d: %v", sig, n, err)
	}
}

// isr reports whether every partition of topics satisfies ok on its in-sync replicas.
func (c *kcluster) isr(topics []string, ok func(isr []int32) bool) bool {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...))
	if err != nil {
		return false
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	md, err := kadm.NewClient(cl).Metadata(ctx, topics...)
	if err != nil {
		return false
	}
	for _, td := range md.Topics {
		if td.Err != nil {
			return false
		}
		for _, p := range td.Partitions {
			if !ok(p.ISR) {
				return false
			}
		}
	}
	return true
}

func (c *kcluster) waitISR(topics []string, what string, d time.Duration, ok func(isr []int32) bool) {
	c.t.Helper()
	if !testenv.Poll(d, func() bool { return c.isr(topics, ok) }) {
		c.t.Fatalf("kafka cluster: not every partition %s within %s", what, d)
	}
}

// Fault 1 of issue 13: three KRaft brokers, topics at replication factor 3 and
// min.insync.replicas=2. Mid-load one broker gets kill -9 and comes back; then another
// is frozen (SIGSTOP) until the controller fences it and the consumer groups' session
// timeout has passed, and thawed (SIGCONT). Nothing acknowledged is lost, nothing
// counted twice.
func TestKafkaBrokerKilledAndPausedMidLoad(t *testing.T) {
	kcl := startCluster(t)
	kc := kafka.Defaults()
	kc.Brokers = kcl.Brokers
	kc.ClientID = "convsync-faults"
	id := testenv.ID()
	kc.EventsTopic, kc.DeltasTopic, kc.DLQTopic = "faults."+id+".events", "faults."+id+".deltas", "faults."+id+".dlq"
	kc.Partitions, kc.ReplicationFactor = 4, 3
	adm := testenv.Admin(t, kc)
	ctx := testenv.Context(t, time.Minute)
	if _, err := kafka.EnsureTopics(ctx, adm, kc); err != nil {
		t.Fatalf("create topics on the cluster: %v", err)
	}
	topics := []string{kc.EventsTopic, kc.DeltasTopic, kc.DLQTopic}
	cfgs, err := adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		t.Fatal(err)
	}
	for _, rc := range cfgs {
		for _, v := range rc.Configs {
			if v.Key == "min.insync.replicas" && v.MaybeValue() != "2" {
				t.Fatalf("%s has min.insync.replicas=%s, want 2", rc.Name, v.MaybeValue())
			}
		}
	}
	full := func(isr []int32) bool { return len(isr) == 3 }
	kcl.waitISR(topics, "has three in-sync replicas", time.Minute, full)

	pool, dbURL := testenv.Postgres(t)
	r := newRig(t, kc, dbURL, pool)
	r.start("process", "process")
	r.start("project", "project")
	in := r.start("ingest", "ingest")
	in.waitHTTP("/readyz", time.Minute)
	l := startLoad(t, func() string { return "http://" + in.Addr + "/api/webhook" }, 50, 3*time.Minute, 9)

	l.waitAcked(t, 200)
	t.Log("kill -9 of kafka node 2")
	kcl.signal(2, syscall.SIGKILL)
	l.waitAcked(t, l.acked.Load()+150) // acknowledged with two of three replicas
	t.Log("kafka node 2 back")
	kcl.script("cluster-up")
	kcl.waitISR(topics, "has three in-sync replicas again", 2*time.Minute, full)

	l.waitAcked(t, l.acked.Load()+150)
	t.Log("SIGSTOP of kafka node 3")
	kcl.signal(3, syscall.SIGSTOP)
	stopped := time.Now()
	t.Cleanup(func() { kcl.signal(3, syscall.SIGCONT) })
	// Frozen until it is out of every ISR (fenced) and longer than the groups' session
	// timeout (6 s): both conditions, not a fixed sleep.
	kcl.waitISR(topics, "dropped node 3 from its ISR", time.Minute, func(isr []int32) bool { return !slices.Contains(isr, 3) })
	if !testenv.Poll(time.Minute, func() bool { return time.Since(stopped) > 7*time.Second }) {
		t.Fatal("unreachable")
	}
	l.waitAcked(t, l.acked.Load()+100)
	t.Log("SIGCONT of kafka node 3")
	kcl.signal(3, syscall.SIGCONT)
	kcl.waitISR(topics, "has three in-sync replicas again", 2*time.Minute, full)
	l.waitAcked(t, l.acked.Load()+100)
	l.stop()

	_, acked := l.wait(t)
	r.verify(acked, 3*time.Minute)
}
