package projector_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/convsync/convsync/internal/stack"
	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/schemas"
)

// Other producers: a job that is not convsync writes a schema-valid event to the events
// topic with kcat (Debian's, librdkafka: a client nobody here wrote), murmur2-partitioned
// as the README says, and the pipeline projects it.
func TestEventFromKcatIsProjected(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatal("kcat is not installed: run `make services-up`")
	}
	kc := testenv.Kafka(t, 4)
	pool, _ := testenv.Postgres(t)
	ctx, cancel := context.WithCancel(context.Background())
	stop := stack.Pipeline(t, ctx, kc, pool, prometheus.NewRegistry(), prometheus.NewRegistry(), nil)
	defer func() { cancel(); stop() }()

	at := time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC)
	raw, _, err := schemas.Encode("/jobs/import-crm", at, schemas.Message{PageID: "104400000000777", PSID: "7300000000000777",
		MID: "m_from_kcat", Text: "written by kcat", SentAt: at})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("kcat", "-P", "-b", strings.Join(kc.Brokers, ","), "-t", kc.EventsTopic,
		"-K", "\t", "-X", "partitioner=murmur2_random")
	cmd.Stdin = strings.NewReader("104400000000777\t" + string(raw) + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var text string
		err := pool.QueryRow(context.Background(), `SELECT text FROM messages WHERE page_id = '104400000000777' AND mid = 'm_from_kcat'`).Scan(&text)
		if err == nil && text == "written by kcat" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the event produced with kcat was not projected within 60s (last error: %v)", err)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}
}
