package graph

import (
	"context"
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

func walkConversations(t *testing.T, c *Client, pageID, token string, since time.Time) ([]convView, error) {
	t.Helper()
	var got []convView
	for conv, err := range c.Conversations(context.Background(), pageID, token, since, nil) {
		if err != nil {
			return got, err
		}
		p, _ := conv.PSID(pageID)
		got = append(got, convView{conv.ID, conv.UpdatedTime, conv.MessageCount, p.ID, p.Name})
	}
	return got, nil
}

func simConversations(sim *graphsim.Sim, pageID string, since time.Time) []convView {
	var want []convView
	for _, c := range sim.Conversations(pageID) {
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
	all := s.sim.Conversations(page.ID)
	tests := []struct {
		name  string
		since time.Time
	}{
		{"full walk", time.Time{}},
		{"incremental since the 7th thread", all[6].UpdatedTime},
		{"incremental since the newest", all[0].UpdatedTime},
		{"since after everything", all[0].UpdatedTime.Add(time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, testConfig(s.srv.URL))
			s.sim.ResetRequests()
			got, err := walkConversations(t, c, page.ID, page.AccessToken, tt.since)
			if err != nil {
				t.Fatalf("Conversations(%s) error = %v", page.ID, err)
			}
			want := simConversations(s.sim, page.ID, tt.since)
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
		wg.Go(func() { got[i], errs[i] = walkConversations(t, c, p.ID, p.AccessToken, time.Time{}) })
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
		if diff := cmp.Diff(simConversations(s.sim, p.ID, time.Time{}), got[i]); diff != "" {
			t.Errorf("Conversations(%s) differs from the simulator (-want +got):\n%s", p.ID, diff)
		}
	}
	if n := s.attempts.Load(); n != 1+2*4 {
		t.Errorf("walks made %d HTTP requests, want 9: a token error is not retried", n)
	}
}
