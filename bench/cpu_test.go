package bench

import (
	"testing"

	"github.com/convsync/convsync/internal/testenv"
)

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
	return cpuMeter{postmaster: testenv.Postmaster(b), broker: testenv.KafkaBroker(b)}
}

// read sums the convsync pids' CPU with the services'.
func (m cpuMeter) read(pids []int) cpu {
	c := cpu{postgres: testenv.PostgresCPU(m.postmaster), kafka: testenv.ProcCPU(m.broker)}
	for _, pid := range pids {
		c.convsync += testenv.ProcCPU(pid)
	}
	return c
}
