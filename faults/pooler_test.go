//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/pipelinetest"
	"github.com/convsync/convsync/projector"
)

// bouncer is a pgbouncer of one test's own in transaction pooling mode in front of the
// shared Postgres. PgBouncer 1.18 (Debian 12) drops the search_path startup parameter,
// so each test schema is a database alias of its own whose server connections set it.
type bouncer struct {
	Port    int
	schemas map[string]string // alias → schema
	base    *url.URL
}

func startBouncer(t *testing.T, schemas map[string]string) *bouncer {
	t.Helper()
	if _, err := exec.LookPath("pgbouncer"); err != nil {
		t.Fatal("pgbouncer is not installed: run `make services-up` (deploy/local/services.sh installs it)")
	}
	base, err := url.Parse(testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("no postgres user to run pgbouncer as (it refuses root): %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	dir, err := os.MkdirTemp("", "convsync-faults-pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	_ = os.Chmod(dir, 0o755)
	_ = os.Chown(dir, uid, -1)
	b := &bouncer{schemas: schemas, base: base}
	b.Port, _ = strconv.Atoi(testenv.FreeAddr(t)[len("127.0.0.1:"):])
	var conf strings.Builder
	conf.WriteString("[databases]\n")
	for alias, schema := range schemas {
		fmt.Fprintf(&conf, "%s = host=%s port=%s dbname=%s user=%s connect_query='SET search_path TO %s'\n",
			alias, base.Hostname(), base.Port(), strings.TrimPrefix(base.Path, "/"), base.User.Username(), schema)
	}
	fmt.Fprintf(&conf, `[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
max_client_conn = 400
default_pool_size = 20
ignore_startup_parameters = extra_float_digits
server_reset_query =
logfile = %s
`, b.Port, filepath.Join(dir, "users.txt"), filepath.Join(dir, "pgbouncer.log"))
	users := fmt.Sprintf("%q \"\"\n", base.User.Username())
	for name, body := range map[string]string{"pgbouncer.ini": conf.String(), "users.txt": users} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// -u: it refuses to run as root, and switches to that user after reading its files.
	cmd := exec.Command("pgbouncer", "-u", "postgres", filepath.Join(dir, "pgbouncer.ini"))
	logs := &testenv.LogBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("start pgbouncer: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			t.Logf("pgbouncer log:\n%s%s", tail(string(log), 3000), logs.String())
		}
	})
	for alias := range schemas {
		if !testenv.Poll(30*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			c, err := pgx.Connect(ctx, b.URL(alias)+"&default_query_exec_mode=simple_protocol")
			if err != nil {
				return false
			}
			defer c.Close(ctx)
			return c.Ping(ctx) == nil
		}) {
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			t.Fatalf("pgbouncer on %d does not answer for %s:\n%s%s", b.Port, alias, tail(string(log), 2000), logs.String())
		}
	}
	return b
}

// URL is the connection string of alias through the pooler.
func (b *bouncer) URL(alias string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", b.base.User.Username(), b.Port, alias)
}

// emptySchema creates a schema on the shared Postgres, without tables (the test migrates
// it through the pooler), dropped at cleanup.
func emptySchema(t *testing.T) string {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	admin, err := pgxpool.New(ctx, testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	schema := "t_" + testenv.ID()
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// directPool reads schema's tables on the shared Postgres, not through the pooler.
func directPool(t *testing.T, schema string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(testenv.Context(t, time.Minute), testenv.WithSearchPath(t, testenv.DatabaseURL(t), schema))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Fault 4 of issue 13: every role behind a transaction-mode pgbouncer, with PG_EXEC_MODE
// as the README says for a pooler without prepared statements. `convsync migrate`
// builds the tables through it, the processor and projector run under load through it,
// and the read API answers through it what the tables hold.
func TestEveryRoleThroughTransactionPooler(t *testing.T) {
	for _, mode := range []string{"exec", "simple_protocol"} {
		t.Run(mode, func(t *testing.T) {
			schema := emptySchema(t)
			b := startBouncer(t, map[string]string{"faults": schema})
			kc := testenv.Kafka(t, 4)
			pool := directPool(t, schema)
			r := newRig(t, kc, b.URL("faults"), pool, "PG_EXEC_MODE="+mode)
			r.migrate()
			r.start("process", "process")
			r.start("project", "project")
			api := r.start("api", "api")
			in := r.start("ingest", "ingest")
			in.waitHTTP("/readyz", time.Minute)
			api.waitHTTP("/readyz", time.Minute)
			l := startLoad(t, func() string { return "http://" + in.Addr + "/api/webhook" }, 100, 6*time.Second, 5)
			_, acked := l.wait(t)
			got := r.verify(acked, time.Minute)
			checkAPI(t, api, got)

		})
	}
}

// checkAPI reads every conversation of the model through the read API and compares its
// message_count and message ids with the rows.
func checkAPI(t *testing.T, api *proc, rows projector.Rows) {
	t.Helper()
	msgs := map[[2]string]int{}
	for _, m := range rows.Messages {
		if m.Direction != nil {
			msgs[[2]string{m.PageID, m.PSID}]++
		}
	}
	client := &http.Client{Timeout: 10 * time.Second}
	bad := 0
	for i, c := range rows.Conversations {
		if i%7 != 0 { // a sample, so the check stays quick
			continue
		}
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/v1/pages/%s/conversations/%s?limit=100", api.Addr, c.PageID, c.PSID), nil)
		req.Header.Set("Authorization", "Bearer "+apiToken)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("read API: %v", err)
		}
		var body struct {
			Conversation struct {
				MessageCount int `json:"message_count"`
			} `json:"conversation"`
			Messages []struct {
				MID       string  `json:"mid"`
				Direction *string `json:"direction"`
			} `json:"messages"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil {
			t.Fatalf("GET conversation %s/%s: %d %v", c.PageID, c.PSID, resp.StatusCode, err)
		}
		withContent := 0
		for _, m := range body.Messages {
			if m.Direction != nil {
				withContent++
			}
		}
		if body.Conversation.MessageCount != c.MessageCount || withContent != msgs[[2]string{c.PageID, c.PSID}] {
			if bad < 5 {
				t.Errorf("read API: conversation %s/%s has message_count %d and %d messages with content, the table %d and %d",
					c.PageID, c.PSID, body.Conversation.MessageCount, withContent, c.MessageCount, msgs[[2]string{c.PageID, c.PSID}])
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("read API: %d conversations differ from the table", bad)
	}
}

// The model-based pipeline test through the pooler: random histories with duplicates
// and reordering go through the real Kafka, processor and projector, the projector's
// pool connected through pgbouncer in transaction mode, and every row equals the
// reference fold.
func TestModelBasedPipelineThroughTransactionPooler(t *testing.T) {
	for _, mode := range []string{"exec", "simple_protocol"} {
		t.Run(mode, func(t *testing.T) {
			schema := emptySchema(t)
			b := startBouncer(t, map[string]string{"faults": schema})
			kc := testenv.Kafka(t, 4)
			ctx := testenv.Context(t, 3*time.Minute)
			r := newRig(t, kc, b.URL("faults"), nil, "PG_EXEC_MODE="+mode)
			r.migrate()
			cfg, err := pgxpool.ParseConfig(b.URL("faults") + "&default_query_exec_mode=" + mode)
			if err != nil {
				t.Fatal(err)
			}
			cfg.MaxConns = 10
			pool, err := pgxpool.NewWithConfig(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pool.Close)
			var all []pipelinetest.Event
			for seed := uint64(5000); seed < 5120; seed++ {
				evs, err := pipelinetest.History(seed, pipelinetest.DefaultHistoryConfig())
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, evs...)
			}
			pctx, stop := context.WithCancel(ctx)
			wait := pipelinetest.Pipeline(t, pctx, kc, pool, prometheus.NewRegistry(), prometheus.NewRegistry(), nil)
			t.Cleanup(func() { stop(); wait() })
			produceEvents(t, kc, all)
			want := pipelinetest.Reference(all)
			direct := directPool(t, schema)
			var diff string
			testenv.Poll(90*time.Second, func() bool {
				got, err := projector.Dump(ctx, direct)
				if err != nil {
					return false
				}
				diff = rowsDiff(want, got)
				return diff == ""
			})
			if diff != "" {
				t.Errorf("through pgbouncer (PG_EXEC_MODE=%s) the read model differs from the reference fold of %d events (-want +got):\n%s",
					mode, len(all), tail(diff, 6000))
			}
		})
	}
}

func produceEvents(t *testing.T, kc kafka.Config, evs []pipelinetest.Event) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.Brokers...), kgo.DefaultProduceTopic(kc.EventsTopic), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, len(evs))
	for i, e := range evs {
		recs[i] = &kgo.Record{Key: []byte(e.Env.PageID), Value: e.Raw}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatalf("produce events: %v", err)
	}
}

// Issue 13's fault 4 also asks that replay works through the pooler: `convsync replay`
// through pgbouncer in transaction mode rebuilds the read model to the same rows.
func TestReplayThroughTransactionPooler(t *testing.T) {
	schema := emptySchema(t)
	b := startBouncer(t, map[string]string{"faults": schema})
	kc := testenv.Kafka(t, 4)
	r := newRig(t, kc, b.URL("faults"), directPool(t, schema), "PG_EXEC_MODE=exec")
	r.migrate()
	r.start("process", "process")
	r.start("project", "project")
	in := r.start("ingest", "ingest")
	in.waitHTTP("/readyz", time.Minute)
	l := startLoad(t, func() string { return "http://" + in.Addr + "/api/webhook" }, 100, 3*time.Second, 6)
	_, acked := l.wait(t)
	r.verify(acked, time.Minute)

	cmd := exec.Command(r.bin, "replay")
	cmd.Env = append(append(os.Environ(), r.env...), "HTTP_ADDR=127.0.0.1:0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("convsync replay through a transaction pooler (PG_EXEC_MODE=exec): %v\n%s", err, tail(string(out), 3000))
	}
	r.verify(acked, time.Minute)
}
