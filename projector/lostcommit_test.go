package projector_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/convsync/convsync/internal/cache"
	"github.com/convsync/convsync/internal/logging"
	"github.com/convsync/convsync/internal/testenv"
	"github.com/convsync/convsync/pipelinetest"
	"github.com/convsync/convsync/projector/readapi"
)

// commitDropper is a TCP proxy in front of Postgres that, once armed, forwards the next
// COMMIT (a simple-protocol Query message: pgx sends statements without arguments so)
// and then cuts the connection: Postgres commits, the client never hears it.
type commitDropper struct {
	ln      net.Listener
	target  string
	armed   atomic.Bool
	dropped atomic.Int64
	wg      sync.WaitGroup
}

func newCommitDropper(t *testing.T, target string) *commitDropper {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &commitDropper{ln: ln, target: target}
	p.wg.Go(p.serve)
	t.Cleanup(func() { _ = ln.Close(); p.wg.Wait() })
	return p
}

func (p *commitDropper) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.pipe(c) })
	}
}

func (p *commitDropper) pipe(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	go func() { _, _ = io.Copy(client, server); _ = client.Close() }()
	buf := make([]byte, 64<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if _, werr := server.Write(chunk); werr != nil {
				return
			}
			if i := bytes.Index(chunk, []byte("COMMIT\x00")); i >= 5 && chunk[i-5] == 'Q' && p.armed.CompareAndSwap(true, false) {
				p.dropped.Add(1)
				return // COMMIT is on its way to Postgres; the answer never comes back
			}
		}
		if err != nil {
			return
		}
	}
}

// A COMMIT whose answer is lost: Postgres committed the batch, the projector retries,
// finds its offsets moved and skips the batch. The cache entry of the conversation must
// not stay stale: the read API shows the new message within the bound.
func TestLostCommitAnswerLeavesNoStaleCacheEntry(t *testing.T) {
	t.Parallel()
	kc := testenv.Kafka(t, 1)
	pool, dbURL := testenv.Postgres(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCommitDropper(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	proxied, err := pgxpool.New(context.Background(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxied.Close)

	rc, prefix := testenv.Redis(t)
	ccfg := cache.Defaults()
	ccfg.Prefix = prefix
	c := cache.New(cache.NewRedis(rc, prefix), ccfg, prometheus.NewRegistry(), logging.Discard())
	acfg := readapi.Defaults()
	acfg.Tokens = []string{"tok-0123456789abcdef"}
	api, err := readapi.New(acfg, pool, c, prometheus.NewRegistry(), logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	projReg := prometheus.NewRegistry()
	stop := pipelinetest.Pipeline(t, ctx, kc, proxied, prometheus.NewRegistry(), projReg, readapi.Hook(c))
	defer func() { cancel(); stop() }()

	const page, psid = "104400000000931", "7300000000000931"
	at := time.Date(2026, 5, 5, 9, 0, 0, 0, time.UTC)
	send := func(mid, text string, sec int) {
		evs, err := pipelinetest.Messages(page, psid, mid, text, at.Add(time.Duration(sec)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		produce(t, kc, evs)
	}
	path := srv.URL + "/v1/pages/" + page + "/conversations/" + psid
	get := func() (string, string) {
		req, _ := http.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer "+acfg.Tokens[0])
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b), res.Header.Get("X-Cache")
	}
	send("m_before", "before the fault", 0)
	waitFor(t, 30*time.Second, "the first message is cached", func() (bool, string) {
		body, hit := get()
		return strings.Contains(body, "before the fault") && hit == "hit", hit + " " + body
	})

	proxy.armed.Store(true)
	send("m_after", "after the lost commit", 1)
	waitFor(t, 30*time.Second, "the projector applies the batch whose COMMIT answer was lost", func() (bool, string) {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM messages WHERE page_id = $1 AND mid = 'm_after'`, page).Scan(&n)
		return err == nil && n == 1 && proxy.dropped.Load() == 1, "dropped " + itoa(int(proxy.dropped.Load()))
	})
	waitFor(t, 8*time.Second, "the read API shows the message committed behind the lost answer", func() (bool, string) {
		body, hit := get()
		return strings.Contains(body, "after the lost commit"), hit
	})
	var count int
	if err := pool.QueryRow(ctx, `SELECT message_count FROM conversations WHERE page_id = $1 AND psid = $2`, page, psid).Scan(&count); err != nil || count != 2 {
		t.Errorf("message_count = %d (error %v), want 2: the retried batch is applied once", count, err)
	}
}
