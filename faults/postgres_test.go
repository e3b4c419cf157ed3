//go:build faults

package faults

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/convsync/convsync/internal/testenv"
)

// pgCluster is a PostgreSQL cluster of one test's own (initdb under a temporary folder,
// its own port), run as the postgres user as deploy/local's is, so the test can crash
// and restart it without touching the shared one.
type pgCluster struct {
	t    *testing.T
	bin  string
	dir  string
	Port int
}

func privatePostgres(t *testing.T) *pgCluster {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("a private Postgres cluster needs root (runuser -u postgres), as make test has")
		}
		t.Skip("a private Postgres cluster needs root (runuser -u postgres)")
	}
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		t.Fatal("PostgreSQL server binaries not found: run `make services-up`")
	}
	sort.Strings(bins)
	pg := &pgCluster{t: t, bin: filepath.Dir(bins[len(bins)-1])}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("no postgres user (deploy/local creates it): %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	// Not t.TempDir: its parents are closed to the postgres user.
	if pg.dir, err = os.MkdirTemp("", "convsync-faults-pg-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(pg.dir) })
	if err := os.Chmod(pg.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(pg.dir, uid, -1); err != nil {
		t.Fatal(err)
	}
	pg.Port, _ = strconv.Atoi(testenv.FreeAddr(t)[len("127.0.0.1:"):])
	pg.run("initdb", "-D", pg.data(), "--auth=trust", "--username=postgres", "--encoding=UTF8", "--no-locale")
	conf := fmt.Sprintf("listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\nmax_connections = 100\nfsync = on\n", pg.Port, pg.dir)
	f, err := os.OpenFile(filepath.Join(pg.data(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(conf)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	pg.run("pg_ctl", "-D", pg.data(), "-l", filepath.Join(pg.dir, "postgres.log"), "-w", "-t", "60", "start")
	t.Cleanup(func() {
		_ = exec.Command("runuser", "-u", "postgres", "--", filepath.Join(pg.bin, "pg_ctl"), "-D", pg.data(), "-m", "immediate", "-w", "stop").Run()
	})
	ctx := testenv.Context(t, time.Minute)
	admin, err := pgxpool.New(ctx, pg.url("postgres", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for _, q := range []string{"CREATE ROLE convsync LOGIN SUPERUSER", "CREATE DATABASE convsync OWNER convsync"} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return pg
}

func (pg *pgCluster) data() string { return filepath.Join(pg.dir, "data") }

// URL is the connection string of the cluster's convsync database.
func (pg *pgCluster) URL() string { return pg.url("convsync", "convsync") }

func (pg *pgCluster) url(user, db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", user, pg.Port, db)
}

func (pg *pgCluster) run(prog string, args ...string) {
	pg.t.Helper()
	cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(pg.bin, prog)}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(pg.dir, "postgres.log"))
		pg.t.Fatalf("%s %v: %v\n%s\n%s", prog, args, err, out, tail(string(log), 2000))
	}
}

// RestartImmediate is `pg_ctl restart -m immediate`: every backend is killed without a
// checkpoint (a crash, as far as clients and the WAL are concerned), then the cluster
// recovers and starts again.
func (pg *pgCluster) RestartImmediate() {
	pg.t.Helper()
	pg.run("pg_ctl", "-D", pg.data(), "-l", filepath.Join(pg.dir, "postgres.log"), "-m", "immediate", "-w", "-t", "60", "restart")
}

// migrate runs `convsync migrate` with the rig's environment: the read model's tables
// (and the topics, which exist already).
func (r *rig) migrate() {
	r.t.Helper()
	cmd := exec.Command(r.bin, "migrate")
	cmd.Env = append(append(os.Environ(), r.env...), "HTTP_ADDR=127.0.0.1:0")
	if out, err := cmd.CombinedOutput(); err != nil {
		r.t.Fatalf("convsync migrate: %v\n%s", err, out)
	}
}

// Fault 2 of issue 13: the read model's Postgres is restarted with `pg_ctl restart -m
// immediate` twice mid-load. The projector retries what was in flight; its offsets
// commit with the rows, so nothing is lost or applied twice.
func TestPostgresRestartImmediateMidLoad(t *testing.T) {
	pg := privatePostgres(t)
	kc := testenv.Kafka(t, 4)
	pool, err := pgxpool.New(testenv.Context(t, time.Minute), pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	r := newRig(t, kc, pg.URL(), pool)
	r.migrate()
	r.start("process", "process")
	proj := r.start("project", "project")
	in := r.start("ingest", "ingest")
	in.waitHTTP("/readyz", time.Minute)
	l := startLoad(t, func() string { return "http://" + in.Addr + "/api/webhook" }, 100, 14*time.Second, 4)
	for _, at := range []int64{250, 800} {
		l.waitAcked(t, at)
		t.Logf("pg_ctl restart -m immediate after %d acknowledged requests", at)
		pg.RestartImmediate()
	}
	_, acked := l.wait(t)
	r.verify(acked, 2*time.Minute)
	if proj.exited() {
		t.Fatalf("the projector exited after Postgres restarted, want it to retry\n%s", tail(proj.logs.String(), 3000))
	}
	// The restarts landed while the projector was writing: it retried batches.
	if n := proj.metric("convsync_projector_retries_total"); n == 0 {
		t.Errorf("convsync_projector_retries_total = 0 after two immediate restarts mid-load: the fault did not hit a transaction")
	} else {
		t.Logf("convsync_projector_retries_total = %v", n)
	}
}
