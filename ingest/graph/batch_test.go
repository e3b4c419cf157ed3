package graph

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/convsync/convsync/internal/graphsim"
)

// messageOps returns n GET operations for message ids of a Page, and those ids.
func messageOps(t *testing.T, sim *graphsim.Sim, pageID string, n int) ([]Op, []string) {
	t.Helper()
	var ops []Op
	var ids []string
	for _, c := range sim.Conversations(pageID) {
		for _, m := range sim.Messages(c.ID) {
			if len(ops) == n {
				return ops, ids
			}
			ops = append(ops, Op{RelativeURL: m.ID + "?fields=id,created_time"})
			ids = append(ids, m.ID)
		}
	}
	t.Fatalf("page %s has fewer than %d messages", pageID, n)
	return nil, nil
}

func TestBatch(t *testing.T) {
	tests := []struct {
		name        string
		ops         int
		failEvery   int // graphsim FailEvery: null entries
		wantBatches int64
	}{
		{"one batch", 7, 0, 1},
		{"exactly 50", 50, 0, 1},
		{"120 split in 3", 120, 0, 3},
		{"null entries retried", 120, 7, 4}, // at least one retry batch
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, simConfig())
			page := s.sim.Pages()[0]
			ops, ids := messageOps(t, s.sim, page.ID, tt.ops)
			c := newClient(t, testConfig(s.srv.URL))
			s.sim.FailEvery(tt.failEvery)
			res, err := c.Batch(context.Background(), page.AccessToken, ops)
			if err != nil {
				t.Fatalf("Batch(%d ops) error = %v", len(ops), err)
			}
			if len(res) != len(ops) {
				t.Fatalf("Batch(%d ops) gave %d results, want %d", len(ops), len(res), len(ops))
			}
			for i, r := range res {
				var v struct {
					ID string `json:"id"`
				}
				if err := r.Decode(&v); err != nil || v.ID != ids[i] || r.Code != 200 {
					t.Errorf("Batch result %d = code %d id %q error %v, want code 200 id %q", i, r.Code, v.ID, err, ids[i])
				}
			}
			n := s.sim.Requests()
			if tt.failEvery == 0 && n.Batches != tt.wantBatches {
				t.Errorf("Batch(%d ops) made %d batch requests, want %d", len(ops), n.Batches, tt.wantBatches)
			}
			if tt.failEvery > 0 && (n.Injected == 0 || n.Batches < tt.wantBatches) {
				t.Errorf("Batch with FailEvery(%d): %d injected failures, %d batches, want some and at least %d batches",
					tt.failEvery, n.Injected, n.Batches, tt.wantBatches)
			}
		})
	}
}

func TestBatchOperationErrors(t *testing.T) {
	s := newServer(t, simConfig())
	page := s.sim.Pages()[0]
	c := newClient(t, testConfig(s.srv.URL))
	ops := []Op{{RelativeURL: page.ID + "?fields=name"}, {RelativeURL: "nope_123?fields=id"}}
	res, err := c.Batch(context.Background(), page.AccessToken, ops)
	if err != nil {
		t.Fatalf("Batch() error = %v", err)
	}
	var e *APIError
	if res[0].Err != nil || !errors.As(res[1].Err, &e) || e.Code != 100 || res[1].Code != 400 {
		t.Errorf("Batch() results = %+v, %+v; want the first ok and the second code 100 with status 400", res[0], res[1])
	}
	if got := s.sim.Requests().Batches; got != 1 {
		t.Errorf("Batch() made %d batch requests, want 1: code 100 is not retried", got)
	}

	s.sim.FailEvery(1) // every operation null, always
	cfg := testConfig(s.srv.URL)
	cfg.MaxRetries = 2
	c = newClient(t, cfg)
	res, err = c.Batch(context.Background(), page.AccessToken, ops[:1])
	if err != nil || !errors.Is(res[0].Err, ErrIncomplete) {
		t.Errorf("Batch() of an operation always null = %+v, %v; want ErrIncomplete in its result", res, err)
	}

	s.sim.FailEvery(0)
	if err := s.sim.ExpireToken(page.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Batch(context.Background(), page.AccessToken, ops); !IsTokenError(err) {
		t.Errorf("Batch() with an expired token error = %v, want a token error", err)
	}
}

// Each operation counts against the token's window, so a batch request holds no more
// operations than a window allows: more would be refused by Meta at once.
func TestBatchKeepsTheWindow(t *testing.T) {
	cfg := simConfig()
	cfg.PerPageCalls, cfg.PerPageWindow = 2, 100*time.Millisecond
	s := newServer(t, cfg)
	page := s.sim.Pages()[0]
	ops, ids := messageOps(t, s.sim, page.ID, 5)
	ccfg := testConfig(s.srv.URL)
	ccfg.PageRate, ccfg.PageWindow, ccfg.PageWindowMargin = 20, 100*time.Millisecond, 10*time.Millisecond
	c := newClient(t, ccfg)
	res, err := c.Batch(context.Background(), page.AccessToken, ops)
	if err != nil {
		t.Fatalf("Batch(5 ops) error = %v", err)
	}
	for i, r := range res {
		var v struct {
			ID string `json:"id"`
		}
		if err := r.Decode(&v); err != nil || v.ID != ids[i] {
			t.Errorf("Batch result %d = id %q error %v, want id %q", i, v.ID, err, ids[i])
		}
	}
	if n := s.sim.Requests(); n.Batches != 3 || n.Throttled != 0 {
		t.Errorf("Batch(5 ops) at 2 calls per window made %d batch requests with %d refused, want 3 (2, 2, 1) and none refused",
			n.Batches, n.Throttled)
	}
}
