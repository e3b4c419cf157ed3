package graph

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/convsync/convsync/internal/graphsim"
)

// BenchmarkDecodeListing decodes one answer of a backfill's conversations listing (25
// threads with their 20 newest messages, the fields the backfill asks for) as the client
// does (sonic, one pass) and with encoding/json in one pass, for comparison. Before,
// encoding/json decoded the listing, then each thread, then each message: 5.5 ms an
// answer (BENCH.md).
func BenchmarkDecodeListing(b *testing.B) {
	cfg := graphsim.DefaultConfig()
	cfg.Pages, cfg.Conversations, cfg.Messages = 1, 25, 20
	cfg.FolderShare = -1 // all in the inbox
	sim, err := graphsim.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	defer srv.Close()
	p := sim.Pages()[0]
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/"+cfg.Version+"/"+p.ID+"/conversations?platform=messenger&limit=25&date_format=U"+
		"&fields=id,updated_time,message_count,unread_count,snippet,participants,messages.limit(20){id,created_time,from{id},message,attachments}", nil)
	req.Header.Set("Authorization", "OAuth "+p.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("simulator answered %d (%v): %s", resp.StatusCode, err, body)
	}
	for _, dec := range []struct {
		name string
		f    func([]byte, any) error
	}{{"sonic", decodeJSON}, {"encoding-json", json.Unmarshal}} {
		b.Run(dec.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				var p page[wireConversation]
				if err := dec.f(body, &p); err != nil || len(p.Data) != 25 {
					b.Fatalf("decode = %d threads, %v; want 25", len(p.Data), err)
				}
				for i := range p.Data {
					_ = p.Data[i].conversation()
				}
			}
		})
	}
}
