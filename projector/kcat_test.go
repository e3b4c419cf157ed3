package projector_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/pipelinetest"
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
	projReg := prometheus.NewRegistry()
	stop := pipelinetest.Pipeline(t, ctx, kc, pool, prometheus.NewRegistry(), projReg, nil)
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
	// The freshness of its one event is split into stages, each observed once (after the
	// commit the test just saw, so polled).
	stages := []string{"ingest_to_delta", "delta_to_projector", "projector_commit"}
	var counts map[string]uint64
	for deadline := time.Now().Add(10 * time.Second); ; {
		counts = histogramCounts(projReg)
		if counts["convsync_event_freshness_seconds"] == 1 && counts["convsync_freshness_stage_seconds/projector_commit"] == 1 ||
			time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
	for _, stage := range stages {
		if n := counts["convsync_freshness_stage_seconds/"+stage]; n != 1 {
			t.Errorf("stage %s observed %d times, want 1 (one event in one delta)", stage, n)
		}
	}
	if n := counts["convsync_event_freshness_seconds"]; n != 1 {
		t.Errorf("freshness observed %d times, want 1", n)
	}
}

// histogramCounts are the sample counts of reg's histograms, by name/label values.
func histogramCounts(reg *prometheus.Registry) map[string]uint64 {
	counts := map[string]uint64{}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "/" + l.GetValue()
			}
			if h := m.GetHistogram(); h != nil {
				counts[name] = h.GetSampleCount()
			}
		}
	}
	return counts
}
