package backfill

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/convsync/convsync/internal/graphsim"
)

// POST /api/conversations/sync-all runs the job and answers with the duration and the
// totals existing deployments read; without a token it is 401.
func TestSyncAllEndpoint(t *testing.T) {
	t.Parallel()
	f := newFixture(t, graphsim.Config{Pages: 2, Conversations: 4, Messages: 3, Seed: 9}, 25, Defaults())
	srv := httptest.NewServer(NewSyncAll(f.job, []string{"sync-token-0123456789"}))
	defer srv.Close()

	resp, err := http.Post(srv.URL, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("POST without a token = %d, want 401", resp.StatusCode)
	}

	req, _ := http.NewRequest(http.MethodPost, srv.URL, nil)
	req.Header.Set("Authorization", "Bearer sync-token-0123456789")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Duration *int64 `json:"duration"`
		Totals   struct {
			TotalSynced, Pages, Conversations, Messages int
			Failed                                      map[string]string
		} `json:"totals"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST sync-all = %d, %v", resp.StatusCode, err)
	}
	if body.Duration == nil || body.Totals.Pages != 2 || body.Totals.TotalSynced != 8 || body.Totals.Conversations != 8 ||
		body.Totals.Messages != 24 || len(body.Totals.Failed) != 0 {
		t.Errorf("sync-all answered %+v (duration %v), want 2 pages, 8 conversations synced, 24 messages, no failures", body.Totals, body.Duration)
	}
}
