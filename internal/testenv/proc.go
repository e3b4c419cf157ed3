package testenv

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// clkTck is getconf CLK_TCK on Linux: /proc/<pid>/stat gives CPU times in 1/100 s.
const clkTck = 100

// procStat returns a process's own CPU ticks (utime+stime), its reaped children's
// (cutime+cstime) and its parent's pid; ok is false when it is gone.
func procStat(pid int) (self, children float64, ppid int, ok bool) {
	raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, 0, false
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces and parentheses
	if i < 0 {
		return 0, 0, 0, false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return 0, 0, 0, false
	}
	num := func(j int) float64 { v, _ := strconv.ParseFloat(f[j], 64); return v }
	ppid, _ = strconv.Atoi(f[1])
	return num(11) + num(12), num(13) + num(14), ppid, true
}

// ProcCPU is the CPU seconds (user + system, all threads) a running process has used,
// from /proc/<pid>/stat; 0 when it is gone. A process that has exited and been waited
// for is read from its os.ProcessState instead (UserTime + SystemTime).
func ProcCPU(pid int) float64 {
	self, _, _, _ := procStat(pid)
	return self / clkTck
}

// PostgresCPU is the CPU seconds of a local PostgreSQL cluster: the postmaster, every
// live child (backends, background workers) and the children it has reaped. A child
// ending between two readings moves its time from the live sum to the postmaster's
// cutime, so their difference counts it once.
func PostgresCPU(master int) float64 {
	self, reaped, _, _ := procStat(master)
	total := self + reaped
	for _, pid := range pids() {
		if pid == master || comm(pid) != "postgres" {
			continue
		}
		if s, _, pp, ok := procStat(pid); ok && pp == master {
			total += s
		}
	}
	return total / clkTck
}

// Postmaster finds the postmaster of deploy/local's cluster: its data folder is under
// .local/pg, or under /var/tmp/convsync-* where the postgres user cannot reach into the
// checkout. Without it the CPU of PostgreSQL cannot be read, and t fails.
func Postmaster(t testing.TB) int {
	t.Helper()
	dirs := []string{filepath.Join(localDir(t), "pg"), "/var/tmp/convsync-"}
	for _, pid := range pids() {
		if comm(pid) != "postgres" {
			continue
		}
		if _, _, pp, ok := procStat(pid); !ok || comm(pp) == "postgres" {
			continue
		}
		for _, dir := range dirs {
			if strings.Contains(cmdline(pid), dir) {
				return pid
			}
		}
	}
	t.Fatalf("no postmaster of %s in /proc: the benchmark reads the local services' CPU (make services-up)", dirs)
	return 0
}

// KafkaBroker finds deploy/local's broker: the java process running kafka.Kafka with its
// server.properties; without it t fails.
func KafkaBroker(t testing.TB) int {
	t.Helper()
	props := filepath.Join(localDir(t), "kafka", "server.properties")
	for _, pid := range pids() {
		if c := cmdline(pid); comm(pid) == "java" && strings.Contains(c, "kafka.Kafka") && strings.Contains(c, props) {
			return pid
		}
	}
	t.Fatalf("no Kafka broker with %s in /proc (make services-up)", props)
	return 0
}

// localDir is deploy/local's state folder, .local at the repository root, with symlinks
// resolved: the services' command lines name the real path.
func localDir(t testing.TB) string {
	dir := filepath.Join(RepoRoot(t), ".local")
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		return real
	}
	return dir
}

func pids() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

func comm(pid int) string {
	raw, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	return strings.TrimSpace(string(raw))
}

func cmdline(pid int) string {
	raw, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	return strings.ReplaceAll(string(raw), "\x00", " ")
}
