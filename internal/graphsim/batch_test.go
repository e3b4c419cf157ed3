package graphsim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

type entry struct {
	Code    int `json:"code"`
	Headers []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"headers"`
	Body string `json:"body"`
}

// postBatch posts ops and decodes the answer: a list of entries, nil for null ones.
func postBatch(t *testing.T, srv *httptest.Server, token string, ops []map[string]any) (int, []*entry, []byte) {
	t.Helper()
	b, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.PostForm(srv.URL+"/v21.0/", url.Values{"access_token": {token}, "batch": {string(b)}})
	if err != nil {
		t.Fatalf("POST batch: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out []*entry
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("decode batch answer %s: %v", body, err)
		}
	}
	return resp.StatusCode, out, body
}

func get(rel string) map[string]any { return map[string]any{"method": "GET", "relative_url": rel} }

func TestBatch(t *testing.T) {
	s, srv := start(t, small())
	page := s.Pages()[0]
	convs := s.Conversations(page.ID)
	ops := []map[string]any{
		get(page.ID + "/conversations?platform=messenger&limit=5&fields=id,updated_time"),
		get(convs[3].ID + "/messages?fields=id,message&limit=2"),
		get("t_404/messages"),
		get("/v21.0/" + convs[1].ID + "/messages?fields=id&limit=1"),
	}
	status, got, raw := postBatch(t, srv, page.AccessToken, ops)
	if status != http.StatusOK || len(got) != len(ops) {
		t.Fatalf("batch = %d with %d entries, want 200 with %d: %s", status, len(got), len(ops), raw)
	}
	for i, e := range got {
		if e == nil {
			t.Fatalf("entry %d is null, want an answer", i)
		}
	}
	var list listBody
	if err := json.Unmarshal([]byte(got[0].Body), &list); err != nil {
		t.Fatalf("entry 0 body is not a JSON string of an object: %v", err)
	}
	if got[0].Code != 200 || len(list.Data) != 5 || list.Data[0]["id"] != convs[0].ID || list.Paging.Next == "" {
		t.Errorf("entry 0 = %d %v, want 200 with the 5 newest threads and a next link", got[0].Code, list.Data)
	}
	var msgs listBody
	if err := json.Unmarshal([]byte(got[1].Body), &msgs); err != nil {
		t.Fatal(err)
	}
	if want := s.Messages(convs[3].ID)[0]; got[1].Code != 200 || len(msgs.Data) != 2 || msgs.Data[0]["id"] != want.ID ||
		msgs.Data[0]["message"] != want.Text {
		t.Errorf("entry 1 = %d %v, want 200 starting with %s %q", got[1].Code, msgs.Data, want.ID, want.Text)
	}
	var e apiErrBody
	if err := json.Unmarshal([]byte(got[2].Body), &e); err != nil {
		t.Fatal(err)
	}
	if got[2].Code != 400 || e.Error.Code != 100 {
		t.Errorf("entry 2 = %d code %d, want 400 code 100 (unknown thread)", got[2].Code, e.Error.Code)
	}
	if err := json.Unmarshal([]byte(got[3].Body), &msgs); err != nil || got[3].Code != 200 ||
		msgs.Data[0]["id"] != s.Messages(convs[1].ID)[0].ID {
		t.Errorf("entry 3 (versioned relative_url) = %d %s, want 200 with thread %s's newest", got[3].Code, got[3].Body, convs[1].ID)
	}
	if c := s.Requests(); c.Calls != 4 || c.Batches != 1 || c.HTTP != 1 {
		t.Errorf("Requests() = %+v, want 1 HTTP request, 1 batch, 4 calls", c)
	}
}

func TestBatchLimits(t *testing.T) {
	s, srv := start(t, small())
	page := s.Pages()[0]
	op := get(page.ID + "/conversations?limit=1&fields=id")
	tests := []struct {
		n      int
		status int
	}{
		{1, 200},
		{50, 200},
		{51, 400},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.n, " operations"), func(t *testing.T) {
			ops := make([]map[string]any, tt.n)
			for i := range ops {
				ops[i] = op
			}
			status, got, raw := postBatch(t, srv, page.AccessToken, ops)
			if status != tt.status {
				t.Fatalf("batch of %d = %d, want %d: %s", tt.n, status, tt.status, raw)
			}
			if status != 200 {
				var e apiErrBody
				if err := json.Unmarshal(raw, &e); err != nil || e.Error.Code != 100 {
					t.Errorf("batch of %d error = %s, want code 100", tt.n, raw)
				}
				return
			}
			if len(got) != tt.n {
				t.Errorf("batch of %d gave %d entries", tt.n, len(got))
			}
		})
	}
}

func TestBatchNullUnderInjection(t *testing.T) {
	s, srv := start(t, small())
	page := s.Pages()[0]
	s.FailEvery(2)
	ops := make([]map[string]any, 6)
	for i := range ops {
		ops[i] = get(fmt.Sprintf("%s/conversations?limit=1&fields=id&n=%d", page.ID, i))
	}
	_, got, raw := postBatch(t, srv, page.AccessToken, ops)
	if len(got) != 6 {
		t.Fatalf("got %d entries, want 6: %s", len(got), raw)
	}
	for i, e := range got {
		if wantNull := i%2 == 1; (e == nil) != wantNull {
			t.Errorf("entry %d null = %v, want %v (FailEvery(2)): %s", i, e == nil, wantNull, raw)
		}
	}
}

func TestBatchDependencies(t *testing.T) {
	s, srv := start(t, small())
	page := s.Pages()[0]
	convs := s.Conversations(page.ID)
	ops := []map[string]any{
		{"method": "GET", "name": "threads", "relative_url": page.ID + "/conversations?platform=messenger&limit=3&fields=id"},
		get("?ids={result=threads:$.data.*.id}&fields=messages.limit(2){id,message}"),
		{"method": "GET", "name": "kept", "omit_response_on_success": false, "relative_url": page.ID + "/conversations?limit=1"},
		{"method": "GET", "depends_on": "kept", "relative_url": convs[0].ID + "/messages?limit=1"},
		{"method": "GET", "name": "broken", "relative_url": "t_404/messages"},
		{"method": "GET", "depends_on": "broken", "relative_url": convs[0].ID + "/messages?limit=1"},
	}
	_, got, raw := postBatch(t, srv, page.AccessToken, ops)
	if len(got) != len(ops) {
		t.Fatalf("got %d entries, want %d: %s", len(got), len(ops), raw)
	}
	if got[0] != nil {
		t.Errorf("referenced operation answered %+v, want null (omitted on success by default)", got[0])
	}
	if got[1] == nil || got[1].Code != 200 {
		t.Fatalf("dependent operation = %+v, want 200", got[1])
	}
	var byID map[string]struct {
		Messages listBody `json:"messages"`
	}
	if err := json.Unmarshal([]byte(got[1].Body), &byID); err != nil {
		t.Fatal(err)
	}
	for _, c := range convs[:3] {
		if m := byID[c.ID].Messages.Data; len(m) != 2 || m[0]["id"] != s.Messages(c.ID)[0].ID {
			t.Errorf("ids answer for %s = %v, want its 2 newest messages", c.ID, m)
		}
	}
	if len(byID) != 3 {
		t.Errorf("ids answer has %d threads, want 3: %s", len(byID), got[1].Body)
	}
	if got[2] == nil || got[3] == nil {
		t.Errorf("entries 2, 3 = %+v, %+v, want answers (omit_response_on_success false)", got[2], got[3])
	}
	if got[4] == nil || got[4].Code != 400 || got[5] != nil {
		t.Errorf("failed parent = %+v and its dependent = %+v, want a 400 and null", got[4], got[5])
	}
	if !strings.Contains(string(raw), `"headers"`) {
		t.Error("entries carry no headers, want them unless include_headers=false")
	}
}
