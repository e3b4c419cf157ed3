package backfill

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
)

// SyncAll serves POST /api/conversations/sync-all (the path existing deployments call):
// it runs the job over every page with a token and answers with its duration in
// milliseconds and the totals. It needs a bearer token of tokens; one run at a time (409
// while one is running).
type SyncAll struct {
	job    *Job
	tokens []string
	mu     sync.Mutex
}

// NewSyncAll serves job behind bearer tokens.
func NewSyncAll(job *Job, tokens []string) *SyncAll { return &SyncAll{job: job, tokens: tokens} }

type totals struct {
	TotalSynced   int               `json:"totalSynced"` // conversations synced
	Pages         int               `json:"pages"`
	Conversations int               `json:"conversations"`
	Messages      int               `json:"messages"`
	GraphRequests int64             `json:"graphRequests"`
	ThrottleWaits int64             `json:"throttleWaits"`
	Failed        map[string]string `json:"failed"`
}

// ServeHTTP implements http.Handler.
func (s *SyncAll) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	valid := 0
	for _, t := range s.tokens {
		valid |= subtle.ConstantTimeCompare([]byte(tok), []byte(t))
	}
	if !ok || valid != 1 {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":{"code":"unauthorized","message":"a valid bearer token is required","status":401}}`))
		return
	}
	if !s.mu.TryLock() {
		w.WriteHeader(http.StatusConflict)
		_, _ = w.Write([]byte(`{"error":{"code":"conflict","message":"a sync is already running","status":409}}`))
		return
	}
	defer s.mu.Unlock()
	sum, err := s.job.Run(r.Context(), nil, nil)
	if err != nil && !errors.Is(err, ErrPagesFailed) {
		w.WriteHeader(http.StatusInternalServerError)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": "internal", "message": "sync failed, retry", "status": 500}})
		return
	}
	failed := sum.Failed
	if failed == nil {
		failed = map[string]string{}
	}
	_ = json.NewEncoder(w).Encode(map[string]any{
		"duration": sum.Duration.Milliseconds(),
		"totals": totals{TotalSynced: sum.Conversations, Pages: sum.Pages, Conversations: sum.Conversations,
			Messages: sum.Messages, GraphRequests: sum.GraphRequests, ThrottleWaits: sum.ThrottleWaits, Failed: failed},
	})
}
