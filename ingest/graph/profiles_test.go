package graph

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestProfilesFetchEachPSIDOnce(t *testing.T) {
	s := newServer(t, simConfig())
	page := s.sim.Pages()[0]
	convs := s.sim.Conversations(page.ID)
	c := newClient(t, testConfig(s.srv.URL))
	names := map[string]string{}
	for _, cv := range convs {
		names[cv.User.PSID] = cv.User.Name
	}
	psid := func(i int) string { return convs[i].User.PSID }
	tests := []struct {
		name      string
		psids     []string
		wantCalls int64 // profile lookups sent to Graph
	}{
		{"new ones, one repeated", []string{psid(0), psid(1), psid(2), psid(1)}, 3},
		{"all remembered", []string{psid(2), psid(0)}, 0},
		{"one new among remembered", []string{psid(0), psid(3)}, 1},
		{"many new, in parallel batches", func() []string {
			var out []string
			for i := 4; i < len(convs); i++ {
				out = append(out, psid(i))
			}
			return out
		}(), int64(len(convs) - 4)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.sim.ResetRequests()
			got, err := c.Profiles(context.Background(), page.AccessToken, tt.psids)
			if err != nil {
				t.Fatalf("Profiles(%v) error = %v", tt.psids, err)
			}
			want := map[string]string{}
			for _, id := range tt.psids {
				want[id] = names[id]
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Profiles(%v) (-want +got):\n%s", tt.psids, diff)
			}
			n := s.sim.Requests()
			if n.Calls != tt.wantCalls || (tt.wantCalls == 0 && n.HTTP != 0) {
				t.Errorf("Profiles(%v) made %d calls in %d requests, want %d calls", tt.psids, n.Calls, n.HTTP, tt.wantCalls)
			}
		})
	}
}

func TestNameCacheIsBounded(t *testing.T) {
	c := newNameCache(2)
	c.put("a", "A")
	c.put("b", "B")
	c.put("c", "C")
	if _, ok := c.get("a"); ok || len(c.names) != 2 {
		t.Errorf("cache of 2 after 3 puts holds %v, want the oldest evicted", c.names)
	}
	if v, ok := c.get("c"); !ok || v != "C" {
		t.Errorf("get(c) = %q, %v, want C, true", v, ok)
	}
}
