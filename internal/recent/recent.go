// Package recent holds bounded sets and maps that remember the most
// recently added keys, for the mesh's deduplication and the validator's
// QC index.
//
// They replace LRU caches where recency of use does not matter, only
// recency of insertion, and where the cache is large: an LRU entry is a
// separately allocated list node the collector traces, while here entries
// live in two plain maps, with nothing to trace when keys and values hold
// no pointers. For 32-byte keys that is about a third of the memory
// (BenchmarkMemory).
//
// Keys are kept in two generations. New keys go into the current one; when
// it holds the capacity, it becomes the previous one and the older
// generation is dropped whole. So the last capacity keys added are always
// remembered, and at most twice that many are held.
package recent

import (
	"fmt"
	"sync"
)

// Map is a bounded map remembering at least the last capacity keys added.
// It is safe for concurrent use.
type Map[K comparable, V any] struct {
	capacity int
	mu       sync.Mutex
	cur      map[K]V
	prev     map[K]V
}

// NewMap returns a Map remembering at least the last capacity keys added;
// capacity must be positive.
func NewMap[K comparable, V any](capacity int) (*Map[K, V], error) {
	if capacity <= 0 {
		return nil, fmt.Errorf("recent: capacity must be positive, got %d", capacity)
	}
	return &Map[K, V]{capacity: capacity, cur: make(map[K]V)}, nil
}

// Add sets k to v. A key of the previous generation moves to the current
// one, so it is remembered as if just added.
func (m *Map[K, V]) Add(k K, v V) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.cur[k]; ok {
		m.cur[k] = v
		return
	}
	if len(m.cur) >= m.capacity {
		// Not sized up front: a size hint rounds the table up to the
		// next power of two, while a map grown step by step splits only
		// the parts that fill and ends up smaller.
		m.prev, m.cur = m.cur, make(map[K]V)
	}
	delete(m.prev, k)
	m.cur[k] = v
}

// Get returns the value of k, if remembered.
func (m *Map[K, V]) Get(k K) (V, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.cur[k]; ok {
		return v, true
	}
	v, ok := m.prev[k]
	return v, ok
}

// Contains reports whether k is remembered.
func (m *Map[K, V]) Contains(k K) bool {
	_, ok := m.Get(k)
	return ok
}

// Remove forgets k.
func (m *Map[K, V]) Remove(k K) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.cur, k)
	delete(m.prev, k)
}

// Len is the number of keys remembered.
func (m *Map[K, V]) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.cur) + len(m.prev)
}

// Set is a bounded set remembering at least the last capacity keys added.
// It is safe for concurrent use.
type Set[K comparable] struct{ m *Map[K, struct{}] }

// NewSet returns a Set remembering at least the last capacity keys added;
// capacity must be positive.
func NewSet[K comparable](capacity int) (*Set[K], error) {
	m, err := NewMap[K, struct{}](capacity)
	if err != nil {
		return nil, err
	}
	return &Set[K]{m: m}, nil
}

// Add remembers k.
func (s *Set[K]) Add(k K) { s.m.Add(k, struct{}{}) }

// Contains reports whether k is remembered.
func (s *Set[K]) Contains(k K) bool { return s.m.Contains(k) }

// Remove forgets k.
func (s *Set[K]) Remove(k K) { s.m.Remove(k) }

// Len is the number of keys remembered.
func (s *Set[K]) Len() int { return s.m.Len() }
