package testenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/redis/go-redis/v9"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The containers backend: the same services as deploy/local, as containers started with
// testcontainers-go on whatever Docker API it finds (Docker, or podman's socket through
// DOCKER_HOST). Images default to the official ones and can be replaced by local builds
// (deploy/containers/images.sh env names them). Published ports are bound to 127.0.0.1.
//
// The shared services are started once per `go test` run, not once per package: every
// test binary of one run has the same testcontainers session id, and the containers are
// named after it and reused. Ryuk removes them when the run ends; where Ryuk is disabled
// (podman), whoever started the run removes the containers labelled convsync.testenv
// (make test-containers does).

const (
	backendEnv   = "CONVSYNC_TESTENV"
	testenvLabel = "convsync.testenv"
	dbUser       = "convsync"
	dbPassword   = "convsync"
	// pgMaxConnections is deploy/local's setting; a replica needs at least the primary's.
	pgMaxConnections = "300"
)

// Backend is where the integration tests' services come from: "local" (deploy/local's
// processes, or the URLs given) or "containers" (testcontainers-go).
func Backend() (string, error) {
	backendOnce.Do(func() { backendName, backendErr = pickBackend() })
	return backendName, backendErr
}

var (
	backendOnce sync.Once
	backendName string
	backendErr  error
)

// pickBackend follows CONVSYNC_TESTENV when it is set. Otherwise it is local when service
// URLs are given or services.sh can run (apt-get and root), and containers when neither
// holds and a Docker API answers, so `make test` works for a Docker user on macOS as is.
func pickBackend() (string, error) {
	switch v := os.Getenv(backendEnv); v {
	case "local", "containers":
		return v, nil
	case "":
	default:
		return "", fmt.Errorf("%s=%q: want local or containers", backendEnv, v)
	}
	for _, name := range []string{"DATABASE_URL", "REDIS_URL", "KAFKA_BROKERS"} {
		if localEnv(name) != "" {
			return "local", nil
		}
	}
	if servicesScriptCanRun() || !dockerAnswers() {
		return "local", nil
	}
	return "containers", nil
}

func servicesScriptCanRun() bool {
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		return false
	}
	_, err := exec.LookPath("apt-get")
	return err == nil
}

func dockerAnswers() bool {
	p, err := testcontainers.NewDockerProvider(testcontainers.WithLogger(tclog.NewNoopLogger()))
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return p.Health(ctx) == nil // Health closes the provider
}

func image(env, official string) string {
	if v := os.Getenv(env); v != "" {
		return v
	}
	return official
}

func postgresImage() string { return image("CONVSYNC_POSTGRES_IMAGE", "postgres:15") }
func redisImage() string    { return image("CONVSYNC_REDIS_IMAGE", "redis:7") }
func kafkaImage() string    { return image("CONVSYNC_KAFKA_IMAGE", "apache/kafka:3.9.1") }

// shared holds the URL of each service container of this run, started on first use.
var shared = map[string]*sharedService{
	"DATABASE_URL":  {start: startPostgres},
	"REDIS_URL":     {start: startRedis},
	"KAFKA_BROKERS": {start: startKafka},
}

type sharedService struct {
	once  sync.Once
	start func(ctx context.Context) (string, testcontainers.Container, error)
	url   string
	ctr   testcontainers.Container
	err   error
}

func (s *sharedService) get() (string, error) {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		s.url, s.ctr, s.err = s.start(ctx)
	})
	return s.url, s.err
}

// containerEnv is Env for the containers backend: the service's URL, its container
// started if need be.
func containerEnv(name string) (string, error) {
	s, ok := shared[name]
	if !ok {
		return os.Getenv(name), nil
	}
	return s.get()
}

// spec is one container to run: its image and command, the container ports to publish
// on 127.0.0.1 (at the given host port, or any free one for 0), and reuse by name.
type spec struct {
	name       string // container name; shared containers are reused by it
	image      string
	cmd        []string
	entrypoint []string
	env        map[string]string
	user       string
	ports      map[string]int // "5432/tcp" -> host port, 0 for any
	files      []testcontainers.ContainerFile
	reuse      bool
}

func run(ctx context.Context, s spec) (testcontainers.Container, error) {
	req := testcontainers.ContainerRequest{
		Name:       s.name,
		Image:      s.image,
		Cmd:        s.cmd,
		Entrypoint: s.entrypoint,
		Env:        s.env,
		Files:      s.files,
		Labels:     map[string]string{testenvLabel: "1"},
		ConfigModifier: func(c *container.Config) {
			if s.user != "" {
				c.User = s.user
			}
		},
	}
	bindings := network.PortMap{}
	for p, host := range s.ports {
		port, err := network.ParsePort(p)
		if err != nil {
			return nil, err
		}
		req.ExposedPorts = append(req.ExposedPorts, p)
		bindings[port] = []network.PortBinding{{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(host)}}
	}
	req.HostConfigModifier = func(hc *container.HostConfig) { hc.PortBindings = bindings }
	unlock := lockStarts()
	defer unlock()
	ctr, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
		ContainerRequest: req,
		Started:          true,
		Reuse:            s.reuse,
		Logger:           tclog.NewNoopLogger(),
	})
	if err != nil {
		if ctr != nil {
			_ = ctr.Terminate(context.Background())
		}
		return nil, fmt.Errorf("run %s (%s): %w", s.name, s.image, err)
	}
	return ctr, nil
}

// lockStarts serialises container starts across this run's test binaries: podman's
// netavark 1.4 can lose a published port's masquerade rule when two containers publish
// ports at the same moment, and the port then times out from 127.0.0.1.
func lockStarts() (unlock func()) {
	startMu.Lock()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "convsync-testenv-start.lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return startMu.Unlock
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return startMu.Unlock
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
		startMu.Unlock()
	}
}

var startMu sync.Mutex

// hostAddr is 127.0.0.1 and the host port published for the container port.
func hostAddr(ctx context.Context, ctr testcontainers.Container, port string) (string, error) {
	p, err := ctr.MappedPort(ctx, port)
	if err != nil {
		return "", fmt.Errorf("mapped port %s: %w", port, err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p.Num()))), nil
}

// sharedName names a shared container after the run's session, so every package's test
// binary of one `go test` run finds the same one.
func sharedName(service string) string {
	return "convsync-testenv-" + service + "-" + testcontainers.SessionID()[:12]
}

// poll calls ready until it returns nil or ctx ends, and returns its last error then.
func poll(ctx context.Context, what string, ready func(ctx context.Context) error) error {
	for {
		err := ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w", what, err)
		case <-time.After(100 * time.Millisecond): // polling a condition with a deadline
		}
	}
}

// replicationHBA lets replicas (Replica) stream from the shared Postgres: the official
// image allows only ordinary connections from other hosts.
const replicationHBA = `echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"` + "\n"

func startPostgres(ctx context.Context) (string, testcontainers.Container, error) {
	ctr, err := run(ctx, spec{
		name:  sharedName("postgres"),
		image: postgresImage(),
		cmd:   []string{"postgres", "-c", "max_connections=" + pgMaxConnections},
		env:   map[string]string{"POSTGRES_USER": dbUser, "POSTGRES_PASSWORD": dbPassword, "POSTGRES_DB": "convsync"},
		ports: map[string]int{"5432/tcp": 0},
		files: []testcontainers.ContainerFile{{
			Reader: strings.NewReader(replicationHBA), ContainerFilePath: "/docker-entrypoint-initdb.d/replication.sh", FileMode: 0o755,
		}},
		reuse: true,
	})
	if err != nil {
		return "", nil, err
	}
	addr, err := hostAddr(ctx, ctr, "5432/tcp")
	if err != nil {
		return "", ctr, err
	}
	u := "postgres://" + dbUser + ":" + dbPassword + "@" + addr + "/convsync?sslmode=disable"
	return u, ctr, waitPostgres(ctx, u)
}

func waitPostgres(ctx context.Context, u string) error {
	return poll(ctx, "postgres", func(ctx context.Context) error {
		c, err := pgx.Connect(ctx, u)
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		_, err = c.Exec(ctx, "SELECT 1")
		return err
	})
}

func startRedis(ctx context.Context) (string, testcontainers.Container, error) {
	ctr, err := run(ctx, spec{
		name:  sharedName("redis"),
		image: redisImage(),
		cmd:   []string{"redis-server", "--save", "", "--appendonly", "no"},
		ports: map[string]int{"6379/tcp": 0},
		reuse: true,
	})
	if err != nil {
		return "", nil, err
	}
	addr, err := hostAddr(ctx, ctr, "6379/tcp")
	if err != nil {
		return "", ctr, err
	}
	return "redis://" + addr + "/0", ctr, waitRedis(ctx, addr)
}

func waitRedis(ctx context.Context, addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	return poll(ctx, "redis "+addr, func(ctx context.Context) error { return c.Ping(ctx).Err() })
}

// kafkaSpec is a one-node KRaft broker whose listener has the same port inside the
// container as on the host, so the address it advertises works from the host and
// survives a restart of the container.
func kafkaSpec(name string, port int, reuse bool) spec {
	p := strconv.Itoa(port)
	return spec{
		name:  name,
		image: kafkaImage(),
		env: map[string]string{
			"KAFKA_NODE_ID":                                  "1",
			"KAFKA_PROCESS_ROLES":                            "broker,controller",
			"KAFKA_LISTENERS":                                "PLAINTEXT://:" + p + ",CONTROLLER://:9093",
			"KAFKA_ADVERTISED_LISTENERS":                     "PLAINTEXT://127.0.0.1:" + p,
			"KAFKA_CONTROLLER_LISTENER_NAMES":                "CONTROLLER",
			"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":           "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
			"KAFKA_INTER_BROKER_LISTENER_NAME":               "PLAINTEXT",
			"KAFKA_CONTROLLER_QUORUM_VOTERS":                 "1@localhost:9093",
			"KAFKA_NUM_PARTITIONS":                           "1",
			"KAFKA_AUTO_CREATE_TOPICS_ENABLE":                "false",
			"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":         "1",
			"KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS":             "4",
			"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
			"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR":            "1",
			"KAFKA_TRANSACTION_STATE_LOG_NUM_PARTITIONS":     "4",
			"KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS":         "0",
			"KAFKA_NUM_NETWORK_THREADS":                      "2",
			"KAFKA_NUM_IO_THREADS":                           "2",
			"KAFKA_HEAP_OPTS":                                "-Xms256m -Xmx512m",
		},
		ports: map[string]int{p + "/tcp": port},
		reuse: reuse,
	}
}

func startKafka(ctx context.Context) (string, testcontainers.Container, error) {
	name := sharedName("kafka")
	port, err := sharedKafkaPort(ctx, name)
	if err != nil {
		return "", nil, err
	}
	ctr, err := run(ctx, kafkaSpec(name, port, true))
	if err != nil {
		return "", nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	return addr, ctr, waitKafka(ctx, addr)
}

// sharedKafkaPort is the host port of the run's Kafka: the one it was created with when
// another package's binary started it, else a free one.
func sharedKafkaPort(ctx context.Context, name string) (int, error) {
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return 0, fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	if info, err := cli.ContainerInspect(ctx, name, client.ContainerInspectOptions{}); err == nil {
		for _, bs := range info.Container.HostConfig.PortBindings {
			for _, b := range bs {
				if p, err := strconv.Atoi(b.HostPort); err == nil && p > 0 {
					return p, nil
				}
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitKafka(ctx context.Context, addr string) error {
	return poll(ctx, "kafka "+addr, func(ctx context.Context) error {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
		if err != nil {
			return err
		}
		defer cl.Close()
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		// Metadata answers before a new broker hands out producer ids, and its first one
		// can take seconds: ready means an idempotent producer can start.
		req := kmsg.NewPtrInitProducerIDRequest()
		req.TransactionTimeoutMillis = 60000
		resp, err := req.RequestWith(pctx, cl)
		if err != nil {
			return err
		}
		return kerr.ErrorForCode(resp.ErrorCode)
	})
}

// private is a container of one test's own, with the test's helpers around it: started
// now, its logs printed when the test failed, removed at cleanup.
type private struct {
	t   testing.TB
	ctr testcontainers.Container
}

func runPrivate(t testing.TB, s spec) *private {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s.name = "convsync-testenv-" + ID()
	ctr, err := run(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	p := &private{t: t, ctr: ctr}
	t.Cleanup(p.remove)
	return p
}

func (p *private) remove() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if p.t.Failed() {
		if rc, err := p.ctr.Logs(ctx); err == nil {
			out, _ := io.ReadAll(rc)
			rc.Close()
			p.t.Logf("logs of container %s:\n%s", p.ctr.GetContainerID()[:12], tail(out, 60))
		}
	}
	p.dockerDo(func(ctx context.Context, cli *testcontainers.DockerClient, id string) error {
		_, _ = cli.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{})
		return nil
	})
	if err := p.ctr.Terminate(ctx); err != nil {
		p.t.Errorf("remove container: %v", err)
	}
}

func tail(b []byte, lines int) string {
	s := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(s) > lines {
		s = s[len(s)-lines:]
	}
	return strings.Join(s, "\n")
}

func (p *private) dockerDo(f func(ctx context.Context, cli *testcontainers.DockerClient, id string) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	return f(ctx, cli, p.ctr.GetContainerID())
}

func (p *private) start(ready func(ctx context.Context) error) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := p.ctr.Start(ctx); err != nil {
		p.t.Fatalf("start container: %v", err)
	}
	if err := ready(ctx); err != nil {
		p.t.Fatal(err)
	}
}

func (p *private) stop() {
	p.t.Helper()
	_ = p.dockerDo(func(ctx context.Context, cli *testcontainers.DockerClient, id string) error {
		_, _ = cli.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{})
		return nil
	})
	grace := 30 * time.Second
	if err := p.ctr.Stop(context.Background(), &grace); err != nil {
		p.t.Fatalf("stop container: %v", err)
	}
}

func (p *private) pause(on bool) {
	p.t.Helper()
	err := p.dockerDo(func(ctx context.Context, cli *testcontainers.DockerClient, id string) error {
		if on {
			_, err := cli.ContainerPause(ctx, id, client.ContainerPauseOptions{})
			return err
		}
		_, err := cli.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{})
		return err
	})
	if err != nil {
		p.t.Errorf("pause=%v container: %v", on, err)
	}
}

func containerKafka(t testing.TB) *Broker {
	t.Helper()
	port := freePort(t)
	b := &Broker{t: t, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	b.ctr = runPrivate(t, kafkaSpec("", port, false))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := waitKafka(ctx, b.Addr); err != nil {
		t.Fatal(err)
	}
	return b
}

func containerRedis(t testing.TB, extra ...string) *RedisServer {
	t.Helper()
	s := &RedisServer{t: t, Port: freePort(t)}
	cmd := append([]string{"redis-server", "--save", "", "--appendonly", "no"}, extra...)
	s.ctr = runPrivate(t, spec{image: redisImage(), cmd: cmd, ports: map[string]int{"6379/tcp": s.Port}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := waitRedis(ctx, s.Addr()); err != nil {
		t.Fatal(err)
	}
	return s
}

// containerRedisCluster runs three masters in one container, each on a port published
// as the same number on the host: the addresses they announce to one another are the
// ones clients on the host reach.
func containerRedisCluster(t testing.TB) []string {
	t.Helper()
	var lines, addrs []string
	published := map[string]int{}
	for _, p := range []int{freePort(t), freePort(t), freePort(t)} {
		ps := strconv.Itoa(p)
		lines = append(lines, "redis-server --port "+ps+" --protected-mode no --save '' --appendonly no "+
			"--cluster-enabled yes --cluster-node-timeout 5000 --cluster-config-file nodes-"+ps+".conf --dir /tmp")
		published[ps+"/tcp"] = p
		addrs = append(addrs, net.JoinHostPort("127.0.0.1", ps))
	}
	// Two servers as daemons, the last one the container's main process.
	script := lines[0] + " --daemonize yes\n" + lines[1] + " --daemonize yes\nexec " + lines[2] + "\n"
	p := runPrivate(t, spec{image: redisImage(), entrypoint: []string{"sh", "-c", script}, ports: published})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, a := range addrs {
		if err := waitRedis(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	args := append([]string{"redis-cli", "--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	code, out, err := p.ctr.Exec(ctx, args)
	if err != nil || code != 0 {
		var b []byte
		if out != nil {
			b, _ = io.ReadAll(out)
		}
		t.Fatalf("redis-cli --cluster create: exit %d, %v\n%s", code, err, b)
	}
	waitClusterOK(t, addrs)
	return addrs
}

// containerReplica starts a hot standby of the shared Postgres in a container of its
// own, from a base backup taken over the containers' network.
func containerReplica(t testing.TB, base string) string {
	t.Helper()
	primary := shared["DATABASE_URL"]
	if _, err := primary.get(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ip, err := primary.ctr.ContainerIP(ctx)
	if err != nil {
		t.Fatalf("primary's address: %v", err)
	}
	dir := "/var/lib/postgresql/replica"
	script := "pg_basebackup -h " + ip + " -p 5432 -U " + dbUser + " -D " + dir + " -R -X stream -c fast && " +
		"exec postgres -D " + dir + " -c hot_standby=on -c max_connections=" + pgMaxConnections + " -c listen_addresses='*'"
	p := runPrivate(t, spec{
		image: postgresImage(), entrypoint: []string{"sh", "-c", script}, user: "postgres",
		env: map[string]string{"PGPASSWORD": dbPassword}, ports: map[string]int{"5432/tcp": 0},
	})
	addr, err := hostAddr(ctx, p.ctr, "5432/tcp")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = addr
	if err := waitPostgres(ctx, u.String()); err != nil {
		t.Fatal(err)
	}
	return u.String()
}
