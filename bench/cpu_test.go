package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/convsync/convsync/internal/testenv"
)

const clkTck = 100 // getconf CLK_TCK on Linux: /proc/<pid>/stat times are in 1/100 s

// cpu is CPU seconds (user + system) used so far by the convsync processes of a stack,
// the local PostgreSQL cluster and the local Kafka broker.
type cpu struct{ convsync, postgres, kafka float64 }

func (c cpu) sub(o cpu) cpu {
	return cpu{c.convsync - o.convsync, c.postgres - o.postgres, c.kafka - o.kafka}
}

// perThousand adds the CPU seconds per 1,000 events of each part, and their total, to m.
func (c cpu) perThousand(m map[string]float64, events float64) {
	k := events / 1000
	m["cpu_s_per_1k_convsync"] = c.convsync / k
	m["cpu_s_per_1k_postgres"] = c.postgres / k
	m["cpu_s_per_1k_kafka"] = c.kafka / k
	m["cpu_s_per_1k_total"] = (c.convsync + c.postgres + c.kafka) / k
}

// cpuMeter reads cpu from /proc.
type cpuMeter struct {
	postmaster, broker int
}

func newCPUMeter(b *testing.B) cpuMeter {
	b.Helper()
	return cpuMeter{postmaster: postmaster(b), broker: kafkaBroker(b)}
}

// read sums the convsync pids' CPU with the services'.
func (m cpuMeter) read(pids []int) cpu {
	c := cpu{postgres: pgCPU(m.postmaster), kafka: procCPU(m.broker)}
	for _, pid := range pids {
		c.convsync += procCPU(pid)
	}
	return c
}

// stat returns a process's own CPU ticks (utime+stime), its reaped children's
// (cutime+cstime) and its parent's pid; ok is false when it is gone.
func stat(pid int) (self, children float64, ppid int, ok bool) {
	raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, 0, false
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
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

// procCPU is a process's CPU seconds (all its threads).
func procCPU(pid int) float64 {
	self, _, _, _ := stat(pid)
	return self / clkTck
}

// pgCPU is the CPU seconds of the local cluster: the postmaster, every live child
// (backends, background workers) and the children it has reaped. A child ending in the
// window moves its time from the live sum to the postmaster's cutime, so the difference
// of two readings counts it once.
func pgCPU(master int) float64 {
	self, reaped, _, _ := stat(master)
	total := self + reaped
	for _, pid := range pids() {
		if pid == master || comm(pid) != "postgres" {
			continue
		}
		if s, _, pp, ok := stat(pid); ok && pp == master {
			total += s
		}
	}
	return total / clkTck
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
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(raw))
}

func cmdline(pid int) string {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(string(raw), "\x00", " ")
}

// local is a folder of deploy/local's .local, its links resolved as the services'
// command lines have them.
func local(b *testing.B, name string) string {
	b.Helper()
	dir := filepath.Join(testenv.RepoRoot(b), ".local", name)
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		return real
	}
	return dir
}

// postmaster finds the local cluster's postmaster: deploy/local's data folder is under
// .local/pg, or under /var/tmp/convsync-* where the postgres user cannot reach into the
// checkout. Without it the CPU of PostgreSQL cannot be read here.
func postmaster(b *testing.B) int {
	b.Helper()
	dirs := []string{local(b, "pg"), "/var/tmp/convsync-"}
	for _, pid := range pids() {
		if comm(pid) != "postgres" {
			continue
		}
		if _, _, pp, ok := stat(pid); !ok || comm(pp) == "postgres" {
			continue
		}
		for _, dir := range dirs {
			if strings.Contains(cmdline(pid), dir) {
				return pid
			}
		}
	}
	b.Fatalf("no postmaster of %s in /proc: the benchmark reads the local services' CPU (make services-up)", dirs)
	return 0
}

// kafkaBroker finds the local broker: the java process running kafka.Kafka with
// deploy/local's server.properties.
func kafkaBroker(b *testing.B) int {
	b.Helper()
	props := filepath.Join(local(b, "kafka"), "server.properties")
	for _, pid := range pids() {
		if c := cmdline(pid); comm(pid) == "java" && strings.Contains(c, "kafka.Kafka") && strings.Contains(c, props) {
			return pid
		}
	}
	b.Fatalf("no Kafka broker with %s in /proc (make services-up)", props)
	return 0
}
