package graphsim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type apiErrBody struct {
	Error struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Code    int    `json:"code"`
		Subcode int    `json:"error_subcode"`
		Trace   string `json:"fbtrace_id"`
	} `json:"error"`
}

type listBody struct {
	Data   []map[string]any `json:"data"`
	Paging *struct {
		Cursors struct {
			Before string `json:"before"`
			After  string `json:"after"`
		} `json:"cursors"`
		Next     string `json:"next"`
		Previous string `json:"previous"`
	} `json:"paging"`
}

func start(t *testing.T, cfg Config) (*Sim, *httptest.Server) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v) = %v", cfg, err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return s, srv
}

// inFolderOf keeps the threads of one folder, in order.
func inFolderOf(convs []Conversation, folder string) []Conversation {
	var out []Conversation
	for _, c := range convs {
		if c.Folder == folder {
			out = append(out, c)
		}
	}
	return out
}

func small() Config {
	c := DefaultConfig()
	c.Pages, c.Conversations, c.Messages = 3, 23, 30
	return c
}

// fetch GETs a URL and decodes its JSON body into out (when not nil).
func fetch(t *testing.T, u string, out any) (int, http.Header) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", u, err)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("decode %s: %v in %s", u, err, b)
		}
	}
	return resp.StatusCode, resp.Header
}

func apiURL(srv *httptest.Server, path string, q url.Values) string {
	return srv.URL + "/v21.0/" + path + "?" + q.Encode()
}

func getErr(t *testing.T, u string) (int, apiErrBody) {
	t.Helper()
	var e apiErrBody
	status, _ := fetch(t, u, &e)
	return status, e
}

func TestConversationsPaging(t *testing.T) {
	s, srv := start(t, small())
	page := s.Pages()[1]
	want := inFolderOf(s.Conversations(page.ID), FolderInbox) // the default listing
	for _, limit := range []int{1, 5, 23, 25, 200} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			u := apiURL(srv, page.ID+"/conversations", url.Values{"platform": {"messenger"},
				"access_token": {page.AccessToken}, "limit": {fmt.Sprint(limit)},
				"fields": {"id,updated_time,message_count,unread_count,snippet"}})
			var got []string
			var prev time.Time
			for calls := 0; u != ""; calls++ {
				if calls > 100 {
					t.Fatal("paging does not end")
				}
				var b listBody
				if status, _ := fetch(t, u, &b); status != http.StatusOK {
					t.Fatalf("GET conversations = %d", status)
				}
				if len(b.Data) > limit {
					t.Errorf("page has %d threads, want at most %d", len(b.Data), limit)
				}
				for _, d := range b.Data {
					ts, err := time.Parse("2006-01-02T15:04:05-0700", d["updated_time"].(string))
					if err != nil {
						t.Fatalf("updated_time %v: %v", d["updated_time"], err)
					}
					if !prev.IsZero() && ts.After(prev) {
						t.Errorf("thread %v updated %v after the one before it (%v): not newest first", d["id"], ts, prev)
					}
					prev = ts
					got = append(got, d["id"].(string))
				}
				u = ""
				if b.Paging != nil {
					u = b.Paging.Next
				}
			}
			ids := make([]string, len(want))
			for i, c := range want {
				ids[i] = c.ID
			}
			if diff := cmp.Diff(ids, got); diff != "" {
				t.Errorf("paged thread ids differ from Conversations (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConversationFields(t *testing.T) {
	s, srv := start(t, small())
	page := s.Pages()[0]
	conv := inFolderOf(s.Conversations(page.ID), FolderInbox)[0]
	msgs := s.Messages(conv.ID)
	tests := []struct {
		name   string
		nested string
		want   int
		dateU  bool
	}{
		{"limit 3", "messages.limit(3){id,created_time,from,to,message}", 3, false},
		{"limit 20 unix dates", "messages.limit(20){id,created_time,from,message}", 20, true},
		{"default limit, older than 20 by id only", "messages{id,from,message}", 25, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := url.Values{"access_token": {page.AccessToken}, "limit": {"1"}, "platform": {"messenger"},
				"fields": {"participants,message_count,unread_count,snippet,updated_time," + tt.nested}}
			if tt.dateU {
				q.Set("date_format", "U")
			}
			var b struct {
				Data []struct {
					ID           string `json:"id"`
					MessageCount int    `json:"message_count"`
					UnreadCount  int    `json:"unread_count"`
					Snippet      string `json:"snippet"`
					UpdatedTime  any    `json:"updated_time"`
					Participants struct {
						Data []struct{ ID, Name string } `json:"data"`
					} `json:"participants"`
					Messages struct {
						Data []struct {
							ID          string               `json:"id"`
							CreatedTime any                  `json:"created_time"`
							From        *struct{ ID string } `json:"from"`
							Message     *string              `json:"message"`
						} `json:"data"`
						Paging struct {
							Next string `json:"next"`
						} `json:"paging"`
					} `json:"messages"`
				} `json:"data"`
			}
			if status, _ := fetch(t, apiURL(srv, page.ID+"/conversations", q), &b); status != http.StatusOK {
				t.Fatalf("GET conversations = %d", status)
			}
			if len(b.Data) != 1 {
				t.Fatalf("got %d threads, want 1", len(b.Data))
			}
			d := b.Data[0]
			if d.ID != conv.ID || d.MessageCount != conv.MessageCount || d.UnreadCount != conv.UnreadCount ||
				d.Snippet != conv.Snippet {
				t.Errorf("thread = %+v, want %+v", d, conv)
			}
			wantTime := any(conv.UpdatedTime.Format("2006-01-02T15:04:05-0700"))
			if tt.dateU {
				wantTime = float64(conv.UpdatedTime.Unix())
			}
			if d.UpdatedTime != wantTime {
				t.Errorf("updated_time = %v, want %v", d.UpdatedTime, wantTime)
			}
			var parts []string
			for _, p := range d.Participants.Data {
				parts = append(parts, p.ID)
			}
			if !slices.Equal(parts, []string{conv.User.PSID, page.ID}) {
				t.Errorf("participants = %v, want [%s %s]", parts, conv.User.PSID, page.ID)
			}
			if len(d.Messages.Data) != tt.want {
				t.Fatalf("nested messages = %d, want %d", len(d.Messages.Data), tt.want)
			}
			for i, m := range d.Messages.Data {
				w := msgs[i]
				wantFrom := page.ID
				if w.Inbound {
					wantFrom = w.PSID
				}
				if i >= 20 {
					if m.ID != w.ID || m.From != nil || m.Message != nil {
						t.Errorf("nested message %d = %+v, want id %s alone (older than the 20 newest)", i, m, w.ID)
					}
					continue
				}
				if m.ID != w.ID || m.From == nil || m.From.ID != wantFrom || m.Message == nil || *m.Message != w.Text {
					t.Errorf("nested message %d = %+v, want id %s from %s text %q", i, m, w.ID, wantFrom, w.Text)
				}
			}
			if d.Messages.Paging.Next == "" {
				t.Error("nested messages have no next link, want one (more messages remain)")
			}
		})
	}
}

func TestMessagesOnlyRecentReadable(t *testing.T) {
	s, srv := start(t, small())
	page := s.Pages()[2]
	conv := s.Conversations(page.ID)[4]
	msgs := s.Messages(conv.ID)
	var b listBody
	fetch(t, apiURL(srv, conv.ID+"/messages", url.Values{"access_token": {page.AccessToken},
		"limit": {"100"}, "fields": {"id,created_time,message,from"}}), &b)
	if len(b.Data) != len(msgs) {
		t.Fatalf("listed %d messages, want all %d", len(b.Data), len(msgs))
	}
	for j, d := range b.Data {
		if d["id"] != msgs[j].ID {
			t.Errorf("message %d = %v, want %s (newest first)", j, d["id"], msgs[j].ID)
		}
		_, detailed := d["from"]
		if detailed != (j < 20) {
			t.Errorf("message %d has from: %v, want %v (only the 20 newest in detail)", j, detailed, j < 20)
		}
	}
	if b.Paging == nil || b.Paging.Next != "" {
		t.Errorf("paging = %+v, want cursors and no next on the last page", b.Paging)
	}
	for _, j := range []int{0, 19, 20, 29} {
		q := url.Values{"access_token": {page.AccessToken}, "fields": {"id,message,from,to,created_time"}}
		var m map[string]any
		status, _ := fetch(t, apiURL(srv, msgs[j].ID, q), &m)
		if j < 20 {
			if status != http.StatusOK || m["message"] != msgs[j].Text {
				t.Errorf("GET message %d = %d %v, want 200 with text %q", j, status, m, msgs[j].Text)
			}
			continue
		}
		var e apiErrBody
		status, _ = fetch(t, apiURL(srv, msgs[j].ID, q), &e)
		if status != http.StatusBadRequest || e.Error.Code != 100 {
			t.Errorf("GET message %d (older than the 20 newest) = %d code %d, want 400 code 100", j, status, e.Error.Code)
		}
	}
}

func TestErrors(t *testing.T) {
	cfg := small()
	cfg.UserTokens = []string{"user-token"}
	s, srv := start(t, cfg)
	p0, p1 := s.Pages()[0], s.Pages()[1]
	if err := s.ExpireToken(p1.ID); err != nil {
		t.Fatal(err)
	}
	psid := s.Conversations(p0.ID)[0].User.PSID
	tests := []struct {
		name, path, token string
		status, code, sub int
	}{
		{"no token", p0.ID + "/conversations", "", 400, 104, 0},
		{"unknown token", p0.ID + "/conversations", "garbage", 400, 190, 0},
		{"user token on a Page edge", p0.ID + "/conversations", "user-token", 400, 190, 0},
		{"another Page's token", p0.ID + "/conversations", s.Pages()[2].AccessToken, 403, 200, 0},
		{"expired token", p1.ID + "/conversations", p1.AccessToken, 400, 190, 463},
		{"unknown object", "t_1/messages", p0.AccessToken, 400, 100, 33},
		{"unknown field", p0.ID + "/conversations?fields=id,bogus", p0.AccessToken, 400, 100, 0},
		{"unknown path", p0.ID + "/feed", p0.AccessToken, 400, 2500, 0},
		{"PSID of another Page", psid, s.Pages()[2].AccessToken, 400, 100, 33},
		{"accounts with a Page token", "me/accounts", p0.AccessToken, 400, 100, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, rawq, _ := strings.Cut(tt.path, "?")
			q, _ := url.ParseQuery(rawq)
			if tt.token != "" {
				q.Set("access_token", tt.token)
			}
			var raw map[string]map[string]any
			status, h := fetch(t, apiURL(srv, path, q), &raw)
			keys := slices.Sorted(func(yield func(string) bool) {
				for k := range raw["error"] {
					if !yield(k) {
						return
					}
				}
			})
			if want := []string{"code", "error_subcode", "fbtrace_id", "message", "type"}; !slices.Equal(keys, want) {
				t.Errorf("error keys = %v, want %v", keys, want)
			}
			code, sub := int(raw["error"]["code"].(float64)), int(raw["error"]["error_subcode"].(float64))
			if status != tt.status || code != tt.code || sub != tt.sub {
				t.Errorf("GET %s = %d code %d subcode %d, want %d code %d subcode %d (%v)",
					tt.path, status, code, sub, tt.status, tt.code, tt.sub, raw["error"]["message"])
			}
			if h.Get("WWW-Authenticate") == "" {
				t.Error("no WWW-Authenticate header on an error")
			}
		})
	}
	// The expired token fails its Page alone; renewing it restores it.
	q := url.Values{"access_token": {p0.AccessToken}}
	if status, _ := fetch(t, apiURL(srv, p0.ID+"/conversations", q), nil); status != http.StatusOK {
		t.Errorf("page %s with a valid token = %d while page %s is expired, want 200", p0.ID, status, p1.ID)
	}
	if err := s.RenewToken(p1.ID); err != nil {
		t.Fatal(err)
	}
	q.Set("access_token", p1.AccessToken)
	if status, _ := fetch(t, apiURL(srv, p1.ID+"/conversations", q), nil); status != http.StatusOK {
		t.Errorf("page %s after RenewToken = %d, want 200", p1.ID, status)
	}
}

func TestUserProfileAndFilter(t *testing.T) {
	s, srv := start(t, small())
	page := s.Pages()[0]
	conv := inFolderOf(s.Conversations(page.ID), FolderInbox)[7]
	var u map[string]any
	fetch(t, apiURL(srv, conv.User.PSID, url.Values{"access_token": {page.AccessToken}, "fields": {"name"}}), &u)
	if u["name"] != conv.User.Name || u["id"] != conv.User.PSID {
		t.Errorf("profile = %v, want id %s name %q", u, conv.User.PSID, conv.User.Name)
	}
	var b listBody
	fetch(t, apiURL(srv, page.ID+"/conversations", url.Values{"access_token": {page.AccessToken},
		"platform": {"messenger"}, "user_id": {conv.User.PSID}}), &b)
	if len(b.Data) != 1 || b.Data[0]["id"] != conv.ID {
		t.Errorf("conversations?user_id=%s = %v, want [%s]", conv.User.PSID, b.Data, conv.ID)
	}
}

func TestAccounts(t *testing.T) {
	cfg := small()
	cfg.Pages = 7
	s, srv := start(t, cfg)
	want := map[string]string{}
	for _, p := range s.Pages() {
		want[p.ID] = p.AccessToken
	}
	got := map[string]string{}
	u := apiURL(srv, "me/accounts", url.Values{"access_token": {"any-user-token"}, "limit": {"3"}})
	for calls := 0; u != ""; calls++ {
		if calls > 10 {
			t.Fatal("paging does not end")
		}
		var b listBody
		if status, _ := fetch(t, u, &b); status != http.StatusOK {
			t.Fatalf("GET me/accounts = %d", status)
		}
		for _, d := range b.Data {
			if _, dup := got[d["id"].(string)]; dup {
				t.Errorf("page %v listed twice", d["id"])
			}
			got[d["id"].(string)] = d["access_token"].(string)
		}
		u = ""
		if b.Paging != nil {
			u = b.Paging.Next
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("me/accounts differ from Pages (-want +got):\n%s", diff)
	}
}

func TestDeterminism(t *testing.T) {
	snapshot := func(seed uint64) (pages []Page, convs []Conversation, msgs []Message) {
		cfg := small()
		cfg.Seed = seed
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		pages = s.Pages()
		for _, p := range pages {
			for _, c := range s.Conversations(p.ID) {
				convs = append(convs, c)
				msgs = append(msgs, s.Messages(c.ID)...)
			}
		}
		return pages, convs, msgs
	}
	p1, c1, m1 := snapshot(7)
	p2, c2, m2 := snapshot(7)
	if diff := cmp.Diff(p1, p2); diff != "" {
		t.Errorf("pages differ for the same seed:\n%s", diff)
	}
	if diff := cmp.Diff(c1, c2); diff != "" {
		t.Errorf("conversations differ for the same seed:\n%s", diff)
	}
	if diff := cmp.Diff(m1, m2); diff != "" {
		t.Errorf("messages differ for the same seed:\n%s", diff)
	}
	p3, _, m3 := snapshot(8)
	if cmp.Equal(p1, p3) || cmp.Equal(m1, m3) {
		t.Error("seeds 7 and 8 give the same data, want different")
	}
	if len(c1) != 3*23 || len(m1) != 3*23*30 {
		t.Errorf("got %d threads and %d messages, want %d and %d", len(c1), len(m1), 3*23, 3*23*30)
	}
	for _, c := range c1 {
		if !strings.HasPrefix(c.ID, "t_") || c.MessageCount != 30 {
			t.Errorf("thread %+v: want a t_ id and 30 messages", c)
		}
	}
}

func TestAddMessage(t *testing.T) {
	cfg := small()
	s, srv := start(t, cfg)
	page := s.Pages()[0]
	before := s.Conversations(page.ID)
	inbox := inFolderOf(before, FolderInbox)
	oldest := inbox[len(inbox)-1]
	at := before[0].UpdatedTime.Add(time.Hour)
	m, err := s.AddMessage(page.ID, oldest.User.PSID, "new text", at)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("_%d", oldest.MessageCount+1); !strings.HasSuffix(m.ID, want) || m.ThreadID != oldest.ID {
		t.Errorf("AddMessage = %+v, want mid ending %s in %s", m, want, oldest.ID)
	}
	after := s.Conversations(page.ID)
	if after[0].ID != oldest.ID || !after[0].UpdatedTime.Equal(at) || after[0].MessageCount != oldest.MessageCount+1 ||
		after[0].Snippet != "new text" || after[0].UnreadCount < 1 {
		t.Errorf("front thread after AddMessage = %+v, want %s updated %v", after[0], oldest.ID, at)
	}
	if len(after) != len(before) {
		t.Errorf("thread count = %d, want %d", len(after), len(before))
	}
	// Over HTTP too, and a new user starts a new thread at the front.
	at2 := at.Add(time.Minute)
	m2, err := s.AddMessage(page.ID, "7399999999999999", "hello", at2)
	if err != nil {
		t.Fatal(err)
	}
	var b listBody
	fetch(t, apiURL(srv, page.ID+"/conversations", url.Values{"access_token": {page.AccessToken},
		"fields": {"id,updated_time"}, "limit": {"2"}}), &b)
	if len(b.Data) != 2 || b.Data[0]["id"] != m2.ThreadID || b.Data[1]["id"] != oldest.ID ||
		b.Data[0]["updated_time"] != at2.UTC().Format("2006-01-02T15:04:05-0700") {
		t.Errorf("first threads = %v, want %s (updated %v) then %s", b.Data, m2.ThreadID, at2, oldest.ID)
	}
	if got := len(s.Conversations(page.ID)); got != len(before)+1 {
		t.Errorf("thread count = %d, want %d", got, len(before)+1)
	}
}

func TestAddMessageConcurrent(t *testing.T) {
	s, srv := start(t, small())
	page := s.Pages()[0]
	convs := s.Conversations(page.ID)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 20 {
				c := convs[(w*20+i)%len(convs)]
				if _, err := s.AddMessage(page.ID, c.User.PSID, "x", c.UpdatedTime.Add(time.Duration(i)*time.Second)); err != nil {
					t.Error(err)
				}
			}
		})
		wg.Go(func() {
			for range 10 {
				var b listBody
				fetch(t, apiURL(srv, page.ID+"/conversations", url.Values{"access_token": {page.AccessToken},
					"fields": {"messages.limit(5){id}"}}), &b)
			}
		})
	}
	wg.Wait()
	got := s.Conversations(page.ID)
	total := 0
	for i, c := range got {
		total += c.MessageCount
		if i > 0 && c.UpdatedTime.After(got[i-1].UpdatedTime) {
			t.Errorf("thread %d is newer than thread %d: order lost", i, i-1)
		}
	}
	if want := len(convs)*30 + 80; total != want {
		t.Errorf("messages after concurrent adds = %d, want %d", total, want)
	}
}

func TestRequestsCounted(t *testing.T) {
	s, srv := start(t, small())
	page := s.Pages()[0]
	q := url.Values{"access_token": {page.AccessToken}}
	fetch(t, apiURL(srv, page.ID+"/conversations", q), nil)
	fetch(t, apiURL(srv, page.ID+"/conversations", q), nil)
	fetch(t, apiURL(srv, s.Conversations(page.ID)[0].ID+"/messages", q), nil)
	c := s.Requests()
	if c.HTTP != 3 || c.Calls != 3 || c.ByKind[KindConversations] != 2 || c.ByKind[KindMessages] != 1 ||
		c.ByPage[page.ID] != 3 {
		t.Errorf("Requests() = %+v, want 3 calls: 2 conversations, 1 messages, all on page %s", c, page.ID)
	}
	s.ResetRequests()
	if c := s.Requests(); c.Calls != 0 {
		t.Errorf("Calls after ResetRequests = %d, want 0", c.Calls)
	}
}

func TestInjectedFailures(t *testing.T) {
	cfg := small()
	cfg.FailEvery = 3
	s, srv := start(t, cfg)
	page := s.Pages()[0]
	q := url.Values{"access_token": {page.AccessToken}}
	var codes []int
	for range 6 {
		status, e := getErr(t, apiURL(srv, page.ID+"/conversations", q))
		codes = append(codes, status, e.Error.Code)
	}
	want := []int{200, 0, 200, 0, 500, 2, 200, 0, 200, 0, 500, 2}
	if !slices.Equal(codes, want) {
		t.Errorf("status and code of 6 calls with FailEvery(3) = %v, want %v", codes, want)
	}
	if got := s.Requests().Injected; got != 2 {
		t.Errorf("Injected = %d, want 2", got)
	}
}

func TestParseFields(t *testing.T) {
	tests := []struct {
		in   string
		want []field
		bad  bool
	}{
		{"", nil, false},
		{"id,updated_time", []field{{name: "id"}, {name: "updated_time"}}, false},
		{"participants,messages.limit(20){id,from{id,name}}", []field{{name: "participants"},
			{name: "messages", limit: 20, raw: "id,from{id,name}", sub: []field{{name: "id"},
				{name: "from", raw: "id,name", sub: []field{{name: "id"}, {name: "name"}}}}}}, false},
		{"messages.order(reverse_chronological).limit(5){id}", []field{{name: "messages", limit: 5, raw: "id",
			sub: []field{{name: "id"}}}}, false},
		{"messages{id", nil, true},
		{"messages.limit(x)", nil, true},
		{"id,,name", nil, true},
	}
	for _, tt := range tests {
		got, err := parseFields(tt.in)
		if (err != nil) != tt.bad {
			t.Errorf("parseFields(%q) error = %v, want error %v", tt.in, err, tt.bad)
			continue
		}
		if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(field{})); !tt.bad && diff != "" {
			t.Errorf("parseFields(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

// Each folder listing gives that folder's threads alone, newest first, with their folder
// field; the default listing is the inbox; together the folders hold every thread once.
func TestFolders(t *testing.T) {
	cfg := small()
	cfg.FolderShare = 0.2 // 23 threads: 5 in each of other, page_done and spam, 8 in the inbox
	s, srv := start(t, cfg)
	page := s.Pages()[2]
	all := s.Conversations(page.ID)
	list := func(t *testing.T, folder string) []Conversation {
		t.Helper()
		q := url.Values{"access_token": {page.AccessToken}, "limit": {"3"}, "fields": {"id,folder"}}
		if folder != "" {
			q.Set("folder", folder)
		}
		var got []Conversation
		for u, calls := apiURL(srv, page.ID+"/conversations", q), 0; u != ""; calls++ {
			if calls > 20 {
				t.Fatal("paging does not end")
			}
			var b listBody
			if status, _ := fetch(t, u, &b); status != http.StatusOK {
				t.Fatalf("GET conversations?folder=%s = %d", folder, status)
			}
			for _, d := range b.Data {
				f, _ := d["folder"].(string)
				got = append(got, Conversation{ID: d["id"].(string), Folder: f})
			}
			u = ""
			if b.Paging != nil {
				u = b.Paging.Next
			}
		}
		return got
	}
	ids := func(cs []Conversation) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.ID+" "+c.Folder)
		}
		return out
	}
	seen := map[string]bool{}
	for _, folder := range Folders() {
		t.Run(folder, func(t *testing.T) {
			want, n := inFolderOf(all, folder), 5
			if folder == FolderInbox {
				n = 8
			}
			if len(want) != n {
				t.Errorf("folder %s has %d threads, want %d", folder, len(want), n)
			}
			got := list(t, folder)
			if diff := cmp.Diff(ids(want), ids(got)); diff != "" {
				t.Errorf("folder=%s listing differs from the simulator's threads of that folder (-want +got):\n%s", folder, diff)
			}
			for _, c := range got {
				if seen[c.ID] {
					t.Errorf("thread %s listed in two folders", c.ID)
				}
				seen[c.ID] = true
			}
		})
	}
	if len(seen) != len(all) {
		t.Errorf("the folders list %d threads together, want all %d", len(seen), len(all))
	}
	if diff := cmp.Diff(ids(list(t, FolderInbox)), ids(list(t, ""))); diff != "" {
		t.Errorf("the default listing differs from folder=inbox (-inbox +default):\n%s", diff)
	}
	status, e := getErr(t, apiURL(srv, page.ID+"/conversations", url.Values{"access_token": {page.AccessToken},
		"folder": {"archive"}}))
	if status != http.StatusBadRequest || e.Error.Code != 100 {
		t.Errorf("folder=archive = %d code %d, want 400 code 100", status, e.Error.Code)
	}
	// A new message keeps a thread in its folder.
	spam := inFolderOf(all, FolderSpam)[2]
	if _, err := s.AddMessage(page.ID, spam.User.PSID, "still here", all[0].UpdatedTime.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := list(t, FolderSpam); len(got) != 5 || got[0].ID != spam.ID {
		t.Errorf("spam after a new message in %s = %v, want it first of the 5", spam.ID, ids(got))
	}
	// A negative share keeps every thread in the inbox; the default puts 5% in each
	// folder; rounding never gives the three folders more threads than there are.
	for _, tt := range []struct {
		share float64
		n     int // threads per page
		want  int
	}{{-1, 23, 0}, {0, 23, 1}, {1.0 / 3, 2, 0}, {1.0 / 3, 4, 1}} {
		cfg := small()
		cfg.FolderShare, cfg.Conversations = tt.share, tt.n
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range Folders()[1:] {
			if n := len(inFolderOf(s.Conversations(s.Pages()[0].ID), f)); n != tt.want {
				t.Errorf("FolderShare %v: folder %s has %d of %d threads, want %d", tt.share, f, n, tt.n, tt.want)
			}
		}
	}
}
