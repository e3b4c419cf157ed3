package main

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/convsync/convsync/internal/loadgen"
	"github.com/convsync/convsync/internal/testenv"
)

// SIGTERM under load: `convsync all` stops taking work, answers the webhooks in flight,
// and exits 0; every webhook it acknowledged is in the event log.
func TestSIGTERMDrainsAndLosesNothingAcknowledged(t *testing.T) {
	t.Parallel()
	bin := testenv.Binary(t)
	kc := testenv.Kafka(t, 2)
	_, dbURL := testenv.Postgres(t)
	addr := "127.0.0.1:" + freePort(t)
	cmd := exec.Command(bin, "all")
	cmd.Env = append(os.Environ(),
		"HTTP_ADDR="+addr, "DATABASE_URL="+dbURL, "KAFKA_BROKERS="+strings.Join(kc.Brokers, ","),
		"KAFKA_EVENTS_TOPIC="+kc.EventsTopic, "KAFKA_DELTAS_TOPIC="+kc.DeltasTopic, "KAFKA_DLQ_TOPIC="+kc.DLQTopic,
		"PROCESSOR_GROUP=term-proc-"+testenv.ID(), "PROJECTOR_GROUP=term-proj-"+testenv.ID(),
		"REDIS_URL=", "META_APP_SECRET=term-secret", "WEBHOOK_VERIFY_TOKEN=term-verify",
		"API_TOKENS=term-token-0123456789", "LOG_LEVEL=warn")
	logs := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	waitHealthy(t, "http://"+addr+"/healthz")

	resc := make(chan loadgen.Result, 1)
	go func() {
		res, _ := loadgen.Run(context.Background(), loadgen.RunConfig{URL: "http://" + addr + "/api/webhook",
			Secret: "term-secret", Rate: 200, Duration: 4 * time.Second, Concurrency: 16,
			Gen: loadgen.GenConfig{Pages: 5}, Timeout: 5 * time.Second}, loadgen.Client(16))
		resc <- res
	}()
	<-time.After(1500 * time.Millisecond) // mid-load
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("convsync all after SIGTERM exited with %v, want 0\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("convsync all did not exit within 30s of SIGTERM\n%s", logs.String())
	}
	res := <-resc
	if res.Status[200] == 0 {
		t.Fatalf("no webhook was acknowledged before SIGTERM: %v", res.Status)
	}
	recs := testenv.Consume(t, kc.Brokers, kc.EventsTopic, res.Events, 30*time.Second)
	if len(recs) < res.Events {
		t.Errorf("the event log holds %d records, but %d events were acknowledged: acknowledged webhooks were lost", len(recs), res.Events)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	addr := testenv.FreeAddr(t)
	return addr[strings.LastIndexByte(addr, ':')+1:]
}

func waitHealthy(t *testing.T, u string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if resp, err := http.Get(u); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not healthy within a minute", u)
		}
		time.Sleep(100 * time.Millisecond) // polling a condition with a deadline
	}
}
