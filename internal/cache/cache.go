// Package cache keeps versioned entries of the read model in Redis, or in memory when
// there is no Redis. The projector and the read API share it.
//
// Every entry carries the version of the rows it was built from, and every page or
// conversation has a marker: the newest version the projector committed for it. After
// each commit the projector raises the markers of what it touched (one pipelined round
// trip); an entry older than its marker is not served, and a write lands only when it is
// at least as new as the marker and newer than the entry it replaces. So a slow reader
// that loaded old rows can never put them back over what the projector just committed:
// no stale overwrite.
//
// Redis errors never reach the reader: they count as errors, the read goes to Postgres,
// and the cache is used again when Redis answers. Markers can be lost (a crash after
// COMMIT, a failover, an outage), so Load also checks hits against the database at most
// every MaxStaleness (check.go): no entry outlives its rows by more than that, whatever
// failed.
package cache

import (
	"context"
	"errors"
	"strings"
	"time"
)

// Entry is a cached value and the version of the rows it was built from.
type Entry struct {
	Version int64
	Value   []byte
}

// Store is one implementation: Redis or memory.
type Store interface {
	// Get returns the entry at key if it is at least as new as the marker at marker.
	Get(ctx context.Context, key, marker string) (Entry, bool, error)
	// Set stores e at key when e is at least as new as the marker and newer than what is
	// there; stored says whether it did.
	Set(ctx context.Context, key, marker string, e Entry, ttl time.Duration) (stored bool, err error)
	// Mark raises each marker to its version (never lowers one), in one round trip.
	Mark(ctx context.Context, marks []Mark, ttl time.Duration) error
	// Flush deletes every key under the store's prefix.
	Flush(ctx context.Context) error
	// Kind is "redis" or "memory".
	Kind() string
	// Ping reports whether the store answers.
	Ping(ctx context.Context) error
}

// Mark is one marker to raise.
type Mark struct {
	Key     string
	Version int64
}

// Keys builds the key names: a prefix, and the page id as a Redis Cluster hash tag so
// that a page's entries and markers share a slot (the Lua scripts touch two keys).
type Keys struct{ Prefix string }

// PageMarker is the marker of a page: raised whenever anything of the page changes.
func (k Keys) PageMarker(page string) string { return k.Prefix + "{" + page + "}:m" }

// ConversationMarker is the marker of one conversation.
func (k Keys) ConversationMarker(page, psid string) string {
	return k.Prefix + "{" + page + "}:m:" + psid
}

// Entry names an entry of a page; parts tell entries apart (route, cursor, limit).
func (k Keys) Entry(page string, parts ...string) string {
	n := len(k.Prefix) + len(page) + 4
	for _, p := range parts {
		n += 1 + len(p)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(k.Prefix)
	b.WriteByte('{')
	b.WriteString(page)
	b.WriteString("}:e")
	for _, p := range parts {
		b.WriteByte(':')
		b.WriteString(p)
	}
	return b.String()
}

// ErrUnavailable wraps a store error that degraded a read to a miss.
var ErrUnavailable = errors.New("cache unavailable")
