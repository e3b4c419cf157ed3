package cache

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// Memory is a bounded in-process store: least recently used entries go first when it is
// full, and expired ones are removed by Run's cleanup (and ignored on read before that).
// It applies the same version rules as the Redis store.
type Memory struct {
	max   int
	now   func() time.Time
	mu    sync.Mutex
	items map[string]*list.Element
	lru   *list.List // front: most recently used
}

type memItem struct {
	key     string
	version int64
	value   []byte
	marker  bool
	expires time.Time
}

// NewMemory holds at most max keys (entries and markers).
func NewMemory(max int) *Memory {
	if max < 1 {
		max = 1
	}
	return &Memory{max: max, now: time.Now, items: map[string]*list.Element{}, lru: list.New()}
}

// Kind implements Store.
func (m *Memory) Kind() string { return "memory" }

// Ping implements Store: memory always answers.
func (m *Memory) Ping(context.Context) error { return nil }

// Len is the number of keys held.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lru.Len()
}

func (m *Memory) live(key string) (*memItem, bool) {
	el, ok := m.items[key]
	if !ok {
		return nil, false
	}
	it := el.Value.(*memItem)
	if !m.now().Before(it.expires) {
		m.lru.Remove(el)
		delete(m.items, key)
		return nil, false
	}
	return it, true
}

func (m *Memory) markerVersion(key string) int64 {
	if it, ok := m.live(key); ok {
		return it.version
	}
	return 0
}

// Get implements Store.
func (m *Memory) Get(_ context.Context, key, marker string) (Entry, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.live(key)
	if !ok || it.version < m.markerVersion(marker) {
		return Entry{}, false, nil
	}
	m.lru.MoveToFront(m.items[key])
	return Entry{Version: it.version, Value: it.value}, true, nil
}

// Set implements Store.
func (m *Memory) Set(_ context.Context, key, marker string, e Entry, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e.Version < m.markerVersion(marker) {
		return false, nil
	}
	if it, ok := m.live(key); ok && it.version >= e.Version {
		return false, nil
	}
	m.put(&memItem{key: key, version: e.Version, value: e.Value, expires: m.now().Add(ttl)})
	return true, nil
}

// Mark implements Store.
func (m *Memory) Mark(_ context.Context, marks []Mark, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mk := range marks {
		if it, ok := m.live(mk.Key); ok && it.version >= mk.Version {
			continue
		}
		m.put(&memItem{key: mk.Key, version: mk.Version, marker: true, expires: m.now().Add(ttl)})
	}
	return nil
}

func (m *Memory) put(it *memItem) {
	if el, ok := m.items[it.key]; ok {
		el.Value = it
		m.lru.MoveToFront(el)
		return
	}
	m.items[it.key] = m.lru.PushFront(it)
	for m.lru.Len() > m.max {
		last := m.lru.Back()
		m.lru.Remove(last)
		delete(m.items, last.Value.(*memItem).key)
	}
}

// Flush implements Store.
func (m *Memory) Flush(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.items = map[string]*list.Element{}
	m.lru.Init()
	return nil
}

// Cleanup removes expired keys and returns how many.
func (m *Memory) Cleanup() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	n := 0
	for key, el := range m.items {
		if !now.Before(el.Value.(*memItem).expires) {
			m.lru.Remove(el)
			delete(m.items, key)
			n++
		}
	}
	return n
}

// Run removes expired keys every interval until ctx ends.
func (m *Memory) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			m.Cleanup()
		}
	}
}
