package testenv

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// Broker is an Apache Kafka broker of one test's own, started with deploy/local's script
// on free ports (or as a container, with the containers backend), so a test can stop and
// restart it without disturbing the shared one.
type Broker struct {
	t    testing.TB
	env  []string
	root string
	ctr  *private
	Addr string
}

// RepoRoot is the folder of go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's folder")
		}
		dir = parent
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreeAddr returns a free loopback host:port.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(freePort(t))
}

// PrivateKafka starts a broker of the test's own, stopped at cleanup. It reuses the jars
// `make services-up` resolved.
func PrivateKafka(t testing.TB) *Broker {
	t.Helper()
	if useContainers(t) {
		return containerKafka(t)
	}
	need(t, "KAFKA_BROKERS")
	root := RepoRoot(t)
	libs := filepath.Join(root, ".local", "kafka", "libs")
	if _, err := os.Stat(filepath.Join(libs, ".stamp")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no Kafka jars in %s: run `make services-up`", libs)
		}
		t.Skipf("no Kafka jars in %s: run `make services-up`", libs)
	}
	port, cport := freePort(t), freePort(t)
	b := &Broker{t: t, root: root, Addr: "127.0.0.1:" + strconv.Itoa(port)}
	b.env = append(os.Environ(),
		"CONVSYNC_LOCAL_DIR="+t.TempDir(),
		"CONVSYNC_KAFKA_LIBS="+libs,
		"CONVSYNC_KAFKA_PORT="+strconv.Itoa(port),
		"CONVSYNC_KAFKA_CONTROLLER_PORT="+strconv.Itoa(cport),
		"CONVSYNC_KAFKA_HEAP=-Xms128m -Xmx256m",
	)
	b.Start()
	t.Cleanup(b.Stop)
	return b
}

func (b *Broker) script(action string) {
	b.t.Helper()
	cmd := exec.Command("bash", filepath.Join(b.root, "deploy", "local", "services.sh"), action)
	cmd.Env = b.env
	if out, err := cmd.CombinedOutput(); err != nil {
		b.t.Fatalf("services.sh %s: %v\n%s", action, err, out)
	}
}

// Start starts (or restarts) the broker and waits until it answers metadata requests.
func (b *Broker) Start() {
	b.t.Helper()
	if b.ctr != nil {
		b.ctr.start(func(ctx context.Context) error { return waitKafka(ctx, b.Addr) })
		return
	}
	b.script("kafka-up")
}

// Stop stops the broker and waits for the process to end.
func (b *Broker) Stop() {
	b.t.Helper()
	if b.ctr != nil {
		b.ctr.stop()
		return
	}
	b.script("kafka-down")
}

// Binary builds cmd/convsync into the test's temporary folder, for tests that run it as
// a process of its own (crashes, signals, deployment-shaped benchmarks).
func Binary(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "convsync")
	if out, err := exec.Command("go", "build", "-C", RepoRoot(t), "-o", bin, "./cmd/convsync").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
