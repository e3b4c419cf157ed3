package testenv

import (
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// Replica starts a second PostgreSQL streaming from the one of DATABASE_URL (a base
// backup with pg_basebackup, then a hot standby on a free port) and returns base's URL
// pointed at it (same user, database and parameters). It is stopped and removed at
// cleanup. It needs the local cluster of deploy/local (replication allowed from
// loopback) and root, as make test has; with the containers backend it is a container
// streaming from the shared Postgres container.
func Replica(t testing.TB, base string) string {
	t.Helper()
	if useContainers(t) {
		return containerReplica(t, base)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	bin := pgBin(t)
	// Under /var/tmp, not the checkout: the postgres user must reach the folder, and a
	// checkout's parents may be closed to others.
	parent, err := os.MkdirTemp("/var/tmp", "convsync-replica-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	asPostgres := func(args ...string) {
		t.Helper()
		cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	if out, err := exec.Command("chown", "-R", "postgres", parent).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	asPostgres(filepath.Join(bin, "pg_basebackup"), "-h", u.Hostname(), "-p", u.Port(), "-U", "postgres",
		"-D", dir, "-R", "-X", "stream", "-c", "fast")
	port := strconv.Itoa(freePort(t))
	asPostgres(filepath.Join(bin, "pg_ctl"), "-D", dir, "-l", filepath.Join(dir, "replica.log"), "-w", "-t", "60",
		"-o", "-p "+port+" -k "+dir+" -c listen_addresses=127.0.0.1 -c hot_standby=on", "start")
	t.Cleanup(func() {
		_ = exec.Command("runuser", "-u", "postgres", "--", filepath.Join(bin, "pg_ctl"), "-D", dir, "-m", "immediate", "-w", "stop").Run()
	})
	u.Host = u.Hostname() + ":" + port
	return u.String()
}

func pgBin(t testing.TB) string {
	t.Helper()
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_basebackup")
	if len(matches) == 0 {
		t.Fatal("pg_basebackup not found: run `make services-up`")
	}
	return filepath.Dir(matches[len(matches)-1])
}
