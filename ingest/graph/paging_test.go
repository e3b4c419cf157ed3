package graph

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/convsync/convsync/internal/graphsim"
	"github.com/google/go-cmp/cmp"
)

type convView struct {
	ID           string
	Updated      time.Time
	MessageCount int
	PSID         string
	Name         string
}

// walkConversations lists one folder of a Page ("": the default listing, the inbox).
func walkConversations(t *testing.T, c *Client, pageID, token string, folder Folder, since time.Time) ([]convView, error) {
	t.Helper()
	var got []convView
	for conv, err := range c.Conversations(context.Background(), pageID, token, folder, since, nil) {
		if err != nil {
			return got, err
		}
		p, _ := conv.PSID(pageID)
		got = append(got, convView{conv.ID, conv.UpdatedTime, conv.MessageCount, p.ID, p.Name})
	}
	return got, nil
}

// simConversations is what a walk of one folder ("": the inbox) should give.
func simConversations(sim *graphsim.Sim, pageID string, folder Folder, since time.Time) []convView {
	if folder == "" {
		folder = FolderInbox
	}
	var want []convView
	for _, c := range sim.Conversations(pageID) {
		if c.Folder != string(folder) {
			continue
		}
		if c.UpdatedTime.Before(since) {
			break
		}
		want = append(want, convView{c.ID, c.UpdatedTime, c.MessageCount, c.User.PSID, c.User.Name})
	}
	return want
}

func TestConversations(t *testing.T) {
	s := newServer(t, simConfig())
	page := s.sim.Pages()[0]
	all := simConversations(s.sim, page.ID, FolderInbox, time.Time{})
	tests := []struct {
		name  string
		since time.Time
	}{
		{"full walk", time.Time{}},
		{"incremental since the 7th thread", all[6].Updated},
		{"incremental since the newest", all[0].Updated},
		{"since after everything", all[0].Updated.Add(time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, testConfig(s.srv.URL))
			s.sim.ResetRequests()
			got, err := walkConversations(t, c, page.ID, page.AccessToken, "", tt.since)
			if err != nil {
				t.Fatalf("Conversations(%s) error = %v", page.ID, err)
			}
			want := simConversations(s.sim, page.ID, FolderInbox, tt.since)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Conversations(%s, since %v) differs from the simulator (-want +got):\n%s", page.ID, tt.since, diff)
			}
			// Pages of 5: the walk stops on the page holding the first older thread.
			wantReq := int64(min((len(all)+4)/5, len(want)/5+1))
			if n := s.sim.Requests().ByKind[graphsim.KindConversations]; n != wantReq {
				t.Errorf("Conversations(since %v) made %d requests, want %d", tt.since, n, wantReq)
			}
		})
	}
}

// Each folder is its own listing: the inbox without folder=, the others with it, each
// giving that folder's threads alone, incrementally too.
func TestConversationsOfEachFolder(t *testing.T) {
	cfg := simConfig()
	cfg.FolderShare = 0.25 // 20 threads: 5 in each folder
	s := newServer(t, cfg)
	page := s.sim.Pages()[1]
	c := newClient(t, testConfig(s.srv.URL))
	seen := 0
	for _, folder := range Folders() {
		want := simConversations(s.sim, page.ID, folder, time.Time{})
		if len(want) != 5 {
			t.Fatalf("the simulator has %d threads in %s, want 5", len(want), folder)
		}
		for _, since := range []time.Time{{}, want[2].Updated} {
			got, err := walkConversations(t, c, page.ID, page.AccessToken, folder, since)
			if err != nil {
				t.Fatalf("Conversations(%s, %s) error = %v", page.ID, folder, err)
			}
			if diff := cmp.Diff(simConversations(s.sim, page.ID, folder, since), got); diff != "" {
				t.Errorf("Conversations(%s, %s, since %v) differs from the simulator (-want +got):\n%s", page.ID, folder, since, diff)
			}
		}
		seen += len(want)
	}
	if all := len(s.sim.Conversations(page.ID)); seen != all {
		t.Errorf("the folders hold %d threads together, want all %d", seen, all)
	}
	var folders []Folder
	for conv, err := range c.Conversations(context.Background(), page.ID, page.AccessToken, FolderSpam, time.Time{}, []string{"id", "folder"}) {
		if err != nil {
			t.Fatal(err)
		}
		folders = append(folders, conv.Folder)
	}
	if len(folders) != 5 || folders[0] != FolderSpam {
		t.Errorf("Conversations(spam) with the folder field gave folders %v, want 5 times spam", folders)
	}
}

// Graph answers code 1, "Please reduce the amount of data you're asking for", when a
// listing's threads and their nested messages are too many (spec 4.2). The walk halves
// its limit and asks again, and later listings of the client start from the limit that
// worked instead of failing over again.
func TestConversationsAskForLessDataWhenTold(t *testing.T) {
	cfg := simConfig()        // 3 pages of 20 threads of 10 messages
	cfg.MaxExpansion = 3 * 10 // at most 3 threads with 10 messages each per answer
	cfg.FolderShare = -1      // every thread in the inbox
	s := newServer(t, cfg)
	c := newClient(t, testConfig(s.srv.URL)) // PageSize 5: 5 → 2 (5 × 10 and then 2 × 10 messages)
	fields := append(slices.Clone(ConversationFields), "messages.limit(10){id,created_time,message}")
	for i, page := range s.sim.Pages()[:2] {
		s.sim.ResetRequests()
		var got []string
		for conv, err := range c.Conversations(context.Background(), page.ID, page.AccessToken, FolderInbox, time.Time{}, fields) {
			if err != nil {
				t.Fatalf("Conversations(%s) with 10 messages each, at most 30 messages an answer: error = %v", page.ID, err)
			}
			if len(conv.Messages) != 10 {
				t.Fatalf("Conversations(%s): thread %s has %d messages, want 10", page.ID, conv.ID, len(conv.Messages))
			}
			got = append(got, conv.ID)
		}
		if len(got) != 20 {
			t.Fatalf("Conversations(%s) listed %d threads, want 20", page.ID, len(got))
		}
		refused := 1 // the first listing learns the limit with one refused call
		if i > 0 {
			refused = 0
		}
		if n, want := s.sim.Requests().Calls, int64(refused+10); n != want { // 20 threads, 2 an answer
			t.Errorf("listing %d made %d calls, want %d: %d refused and 10 of 2 threads", i+1, n, want, refused)
		}
	}
	if got := c.pageSize.Load(); got != 2 {
		t.Errorf("page size after the walks = %d, want 2", got)
	}
}

func TestMessages(t *testing.T) {
	s := newServer(t, simConfig())
	page := s.sim.Pages()[1]
	thread := s.sim.Conversations(page.ID)[3]
	tests := []struct {
		limit    int
		requests int64
	}{{4, 3}, {10, 1}, {0, 1}}
	for _, tt := range tests {
		c := newClient(t, testConfig(s.srv.URL))
		s.sim.ResetRequests()
		type msgView struct {
			ID, Text, From string
			Created        time.Time
		}
		var got []msgView
		for m, err := range c.Messages(context.Background(), thread.ID, page.AccessToken, tt.limit, nil) {
			if err != nil {
				t.Fatalf("Messages(%s, limit %d) error = %v", thread.ID, tt.limit, err)
			}
			got = append(got, msgView{m.ID, m.Text, m.From.ID, m.CreatedTime})
		}
		var want []msgView
		for _, m := range s.sim.Messages(thread.ID) {
			from := page.ID
			if m.Inbound {
				from = m.PSID
			}
			want = append(want, msgView{m.ID, m.Text, from, m.CreatedTime})
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Messages(%s, limit %d) differs from the simulator (-want +got):\n%s", thread.ID, tt.limit, diff)
		}
		if n := s.sim.Requests().ByKind[graphsim.KindMessages]; n != tt.requests {
			t.Errorf("Messages(limit %d) made %d requests, want %d", tt.limit, n, tt.requests)
		}
	}
}

func TestAccounts(t *testing.T) {
	s := newServer(t, simConfig())
	c := newClient(t, testConfig(s.srv.URL))
	var got []Account
	for a, err := range c.Accounts(context.Background(), "user-token") {
		if err != nil {
			t.Fatalf("Accounts() error = %v", err)
		}
		got = append(got, a)
	}
	var want []Account
	for _, p := range s.sim.Pages() {
		want = append(want, Account{ID: p.ID, Name: p.Name, AccessToken: p.AccessToken})
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b Account) bool {
		return a.ID == b.ID && a.Name == b.Name && a.AccessToken == b.AccessToken
	})); diff != "" {
		t.Errorf("Accounts() differs from the simulator's Pages (-want +got):\n%s", diff)
	}
}

// An expired token stops its Page with a token error; the other Pages walk on.
func TestExpiredTokenStopsOnlyItsPage(t *testing.T) {
	s := newServer(t, simConfig())
	c := newClient(t, testConfig(s.srv.URL))
	pages := s.sim.Pages()
	expired := pages[1]
	if err := s.sim.ExpireToken(expired.ID); err != nil {
		t.Fatal(err)
	}
	got := make([][]convView, len(pages))
	errs := make([]error, len(pages))
	var wg sync.WaitGroup
	for i, p := range pages {
		wg.Go(func() { got[i], errs[i] = walkConversations(t, c, p.ID, p.AccessToken, "", time.Time{}) })
	}
	wg.Wait()
	for i, p := range pages {
		if p.ID == expired.ID {
			err := errs[i]
			if !IsTokenError(err) || IsRateLimit(err) {
				t.Errorf("Conversations(%s) with an expired token = %v, want a token error", p.ID, err)
			}
			if err == nil || !strings.Contains(err.Error(), p.ID) || strings.Contains(err.Error(), p.AccessToken) {
				t.Errorf("Conversations(%s) error %q should name the page and not hold the token", p.ID, err)
			}
			continue
		}
		if errs[i] != nil {
			t.Errorf("Conversations(%s) error = %v, want nil: another page's token expired", p.ID, errs[i])
		}
		if diff := cmp.Diff(simConversations(s.sim, p.ID, "", time.Time{}), got[i]); diff != "" {
			t.Errorf("Conversations(%s) differs from the simulator (-want +got):\n%s", p.ID, diff)
		}
	}
	if n := s.attempts.Load(); n != 1+2*4 {
		t.Errorf("walks made %d HTTP requests, want 9: a token error is not retried", n)
	}
}

// The messages field expansion is decoded with the conversation, and Expanded tells an
// answer without it from one with no messages.
func TestDecodeConversationExpansion(t *testing.T) {
	tests := []struct {
		raw      string
		expanded bool
		mids     []string
	}{
		{`{"id":"t_1","messages":{"data":[{"id":"m_a","created_time":"2026-01-02T03:04:05+0000","message":"Hi"},{"id":"m_b","created_time":1767323045}]}}`,
			true, []string{"m_a", "m_b"}},
		{`{"id":"t_2","messages":{"data":[]}}`, true, nil},
		{`{"id":"t_3"}`, false, nil},
	}
	for _, tt := range tests {
		c, err := decodeConversation(json.RawMessage(tt.raw))
		if err != nil {
			t.Fatalf("decodeConversation(%s) error = %v", tt.raw, err)
		}
		var mids []string
		for _, m := range c.Messages {
			mids = append(mids, m.ID)
		}
		if c.Expanded != tt.expanded || !slices.Equal(mids, tt.mids) {
			t.Errorf("decodeConversation(%s) = expanded %v messages %v, want %v %v", tt.raw, c.Expanded, mids, tt.expanded, tt.mids)
		}
	}
	if _, err := decodeConversation(json.RawMessage(`{"id":"t_4","messages":{"data":[{"id":"m_c","created_time":"yesterday"}]}}`)); err == nil {
		t.Error("decodeConversation with a message time that does not parse = nil error, want one")
	}
}

// Ids and times decode from every form Graph uses (spec section 0), the fast paths for
// plain strings and numbers included.
func TestIDAndTimeDecode(t *testing.T) {
	ids := map[string]ID{
		`"t_5520000000000031"`: "t_5520000000000031",
		`104400000000001`:      "104400000000001",
		`123456789012345678`:   "123456789012345678", // never through a float64
		`"m_\u0061b"`:          "m_ab",
		"\"m_\x98\"":           "m_\uFFFD", // invalid UTF-8, as a string field decodes it
	}
	for in, want := range ids {
		var got ID
		if err := json.Unmarshal([]byte(in), &got); err != nil || got != want {
			t.Errorf("ID from %s = %q, %v; want %q", in, got, err, want)
		}
	}
	at := time.Date(2024, 3, 5, 9, 12, 44, 0, time.UTC)
	times := map[string]time.Time{
		`"2024-03-05T09:12:44+0000"`:      at,
		`"2024-03-05T11:12:44+0200"`:      at,
		`"2024-03-05T09:12:44Z"`:          at,
		`"2024-03-05T09:12:44\u002b0000"`: at,
		`1709629964`:                      at,
	}
	for in, want := range times {
		var got Time
		if err := json.Unmarshal([]byte(in), &got); err != nil || !time.Time(got).Equal(want) || time.Time(got).Location() != time.UTC {
			t.Errorf("Time from %s = %v, %v; want %v in UTC", in, time.Time(got), err, want)
		}
	}
	for _, in := range []string{`"yesterday"`, `1.5`, `true`} {
		var got Time
		if err := json.Unmarshal([]byte(in), &got); err == nil {
			t.Errorf("Time from %s = %v, want an error", in, time.Time(got))
		}
	}
}

// A paging.next link may carry the token (Graph puts access_token in it when the call
// did) and appsecret_proof. When the link does not parse, the error names it, and the
// error goes to logs: the token and the proof must not be in its text.
func TestBadPagingLinkErrorHidesTheToken(t *testing.T) {
	const token, proof = "EAAGsecretPageToken0123456789", "9f86d081884c7d659a2feaa0c55ad015"
	links := map[string]string{
		"control character":    "https://graph.facebook.com/v21.0/104400000000001/conversations?access_token=" + token + "&appsecret_proof=" + proof + "&after=QVFI\x01",
		"bad escape in path":   "https://graph.facebook.com/v21.0/1044%zz/conversations?limit=25&access_token=" + token + "&appsecret_proof=" + proof,
		"bad port":             "https://graph.facebook.com:x/v21.0/1/conversations?ACCESS_TOKEN=" + token + "&Appsecret_Proof=" + proof,
		"token last, fragment": "https://graph.facebook.com:x/v21.0/1/messages?appsecret_proof=" + proof + "#access_token=" + token,
	}
	for name, link := range links {
		t.Run(name, func(t *testing.T) {
			_, _, err := nextPage(link)
			if err == nil {
				t.Fatalf("nextPage(%q) = nil error, want the link refused", link)
			}
			if msg := err.Error(); strings.Contains(msg, token) || strings.Contains(msg, proof) {
				t.Errorf("nextPage error %q shows the access token or appsecret_proof of the link", msg)
			}
		})
	}

	// The same through a listing, whose error the backfill logs.
	body, _ := json.Marshal(map[string]any{"data": []any{}, "paging": map[string]any{"next": links["control character"]}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	cfg := testConfig(srv.URL)
	c := newClient(t, cfg)
	var err error
	for _, e := range c.Conversations(context.Background(), "104400000000001", token, FolderInbox, time.Time{}, nil) {
		err = e
	}
	if err == nil || strings.Contains(err.Error(), token) || strings.Contains(err.Error(), proof) {
		t.Errorf("listing with a bad paging.next ended with %v, want an error without the access token or appsecret_proof", err)
	}
}
