package graphsim

import (
	"encoding/base64"
	"encoding/binary"
	"maps"
)

// Kind classifies API calls for Counts.
type Kind string

// Kinds of API call.
const (
	KindConversations Kind = "conversations" // /{page-id}/conversations
	KindMessages      Kind = "messages"      // /{thread-id}/messages
	KindNode          Kind = "node"          // /{id}: message, thread, Page or user profile
	KindIDs           Kind = "ids"           // /?ids=…
	KindAccounts      Kind = "accounts"      // /me/accounts
	KindMe            Kind = "me"            // /me
	KindOther         Kind = "other"         // anything else (answered with an error)
)

// Counts says what the simulator was asked. A call is a top-level request other than a
// batch, or one batch operation.
type Counts struct {
	HTTP      int64            // HTTP requests, batches included
	Batches   int64            // batch requests
	Calls     int64            // API calls
	ByKind    map[Kind]int64   // API calls by kind
	ByPage    map[string]int64 // API calls by the Page of their token
	Throttled int64            // calls answered 80001 or 4
	Injected  int64            // calls failed by error injection
	Errors    int64            // calls answered with an error, all causes
}

// Requests returns a copy of the counts.
func (s *Sim) Requests() Counts {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	c := s.counts
	c.ByKind = maps.Clone(c.ByKind)
	c.ByPage = maps.Clone(c.ByPage)
	return c
}

// ResetRequests sets the counts to zero.
func (s *Sim) ResetRequests() {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	s.resetCounts()
}

func (s *Sim) resetCounts() {
	s.counts = Counts{ByKind: map[Kind]int64{}, ByPage: map[string]int64{}}
}

func (s *Sim) count(f func(c *Counts)) {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	f(&s.counts)
}

// fbtrace returns a fresh fbtrace_id.
func (s *Sim) fbtrace() string {
	s.cmu.Lock()
	s.trace++
	n := s.trace
	s.cmu.Unlock()
	var b [9]byte
	b[0] = 'A'
	binary.BigEndian.PutUint64(b[1:], n*0x9e3779b97f4a7c15)
	return base64.RawURLEncoding.EncodeToString(b[:])
}
