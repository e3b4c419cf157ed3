package testenv

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisServer is a redis-server of one test's own (from Debian's package), so a test can
// stop and start it, or build a Cluster, without touching the shared one.
type RedisServer struct {
	t    testing.TB
	Port int
	dir  string
	args []string
	cmd  *exec.Cmd
	ctr  *private // with the containers backend
}

// PrivateRedis starts a redis-server on a free loopback port; extra are more
// redis-server arguments (e.g. "--cluster-enabled", "yes"). It is stopped at cleanup.
func PrivateRedis(t testing.TB, extra ...string) *RedisServer {
	t.Helper()
	if useContainers(t) {
		return containerRedis(t, extra...)
	}
	need(t, "REDIS_URL")
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not installed: run `make services-up`")
	}
	s := &RedisServer{t: t, Port: freePort(t), dir: t.TempDir()}
	s.args = append([]string{"--bind", "127.0.0.1", "--port", strconv.Itoa(s.Port), "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--cluster-config-file", filepath.Join(s.dir, "nodes.conf")}, extra...)
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Addr is host:port.
func (s *RedisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// Start starts the server (again) and waits until it answers PING.
func (s *RedisServer) Start() {
	s.t.Helper()
	if s.ctr != nil {
		s.ctr.start(func(ctx context.Context) error { return waitRedis(ctx, s.Addr()) })
		return
	}
	s.cmd = exec.Command("redis-server", s.args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on %s did not answer in 10s", s.Addr())
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
}

// Pause freezes the server (SIGSTOP): clients time out, and its data stays, as in a
// network partition. Resume thaws it.
func (s *RedisServer) Pause() {
	if s.ctr != nil {
		s.ctr.pause(true)
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGSTOP)
}

// Resume thaws a paused server (SIGCONT).
func (s *RedisServer) Resume() {
	if s.ctr != nil {
		s.ctr.pause(false)
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT)
}

// Stop stops the server and waits for it to exit.
func (s *RedisServer) Stop() {
	if s.ctr != nil {
		s.ctr.stop()
		return
	}
	if s.cmd != nil && s.cmd.ProcessState == nil {
		s.Resume()
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}

// RedisCluster starts three redis-server masters and joins them into a Cluster with
// redis-cli; it returns their addresses.
func RedisCluster(t testing.TB) []string {
	t.Helper()
	if useContainers(t) {
		return containerRedisCluster(t)
	}
	var addrs []string
	for range 3 {
		s := PrivateRedis(t, "--cluster-enabled", "yes", "--cluster-node-timeout", "5000")
		addrs = append(addrs, s.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	waitClusterOK(t, addrs)
	return addrs
}

// waitClusterOK waits until every node of a new cluster sees the whole cluster, not just
// one.
func waitClusterOK(t testing.TB, addrs []string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		for {
			info, err := c.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				c.Close()
				t.Fatalf("redis cluster node %s not ok after 30s: %v %s", a, err, info)
			}
			time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
		}
		c.Close()
	}
}

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

// QuietRedis silences go-redis's own dial-retry logging, for test binaries that provoke
// Redis outages on purpose (call it from TestMain).
func QuietRedis() { redis.SetLogger(quietRedis{}) }
