package recent

import (
	"crypto/sha256"
	"encoding/binary"
	"runtime"
	"sync"
	"testing"

	lru "github.com/hashicorp/golang-lru/v2"
)

func key(i int) [32]byte {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(i))
	return sha256.Sum256(b[:])
}

func TestNewMapRejectsNonPositiveCapacity(t *testing.T) {
	for _, c := range []int{0, -1} {
		if _, err := NewMap[int, int](c); err == nil {
			t.Errorf("NewMap(%d): no error", c)
		}
		if _, err := NewSet[int](c); err == nil {
			t.Errorf("NewSet(%d): no error", c)
		}
	}
}

// The last capacity keys added are always remembered, and no more than
// twice the capacity are held.
func TestMapRemembersTheLastCapacityKeys(t *testing.T) {
	const capacity = 100
	m, err := NewMap[int, int](capacity)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		m.Add(i, i*10)
		if m.Len() > 2*capacity {
			t.Fatalf("after %d adds: %d keys held, more than twice the capacity", i+1, m.Len())
		}
		for j := max(0, i-capacity+1); j <= i; j++ {
			if v, ok := m.Get(j); !ok || v != j*10 {
				t.Fatalf("after adding %d: key %d = %d, %v; want %d, true", i, j, v, ok, j*10)
			}
		}
	}
	if m.Contains(0) {
		t.Error("key 0 still remembered after 1,000 adds at capacity 100")
	}
}

// Adding a key again keeps it as if just added: it survives the rotation
// that drops its old generation.
func TestMapAddAgainRefreshes(t *testing.T) {
	m, _ := NewMap[int, string](2)
	m.Add(1, "a")
	m.Add(2, "b")
	m.Add(3, "c") // 1 and 2 are now the previous generation
	m.Add(1, "a2")
	m.Add(4, "d") // rotation: the generation of 2 is dropped
	if m.Contains(2) {
		t.Error("2 remembered after two rotations")
	}
	if v, ok := m.Get(1); !ok || v != "a2" {
		t.Errorf("1 = %q, %v; want a2, true", v, ok)
	}
	if m.Len() != 3 {
		t.Errorf("Len = %d, want 3 (1, 3, 4)", m.Len())
	}
}

func TestSetRemove(t *testing.T) {
	s, _ := NewSet[[32]byte](4)
	for i := range 6 {
		s.Add(key(i))
	}
	s.Remove(key(5))
	s.Remove(key(2)) // in the previous generation
	for i, want := range []bool{true, true, false, true, true, false} {
		if got := s.Contains(key(i)); got != want {
			t.Errorf("Contains(%d) = %v, want %v", i, got, want)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	s, _ := NewSet[int](64)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				s.Add(g*10000 + i)
				s.Contains(i)
			}
		})
	}
	wg.Wait()
	if n := s.Len(); n < 64 || n > 128 {
		t.Errorf("Len = %d, want between 64 and 128", n)
	}
}

// BenchmarkMemory reports the live heap per remembered key of a full set
// of 32-byte keys, against the LRU cache it replaces:
// go test -run '^$' -bench Memory ./internal/recent
func BenchmarkMemory(b *testing.B) {
	const capacity, adds = 8192, 100_000
	fill := func(add func([32]byte)) {
		for i := range adds {
			add(key(i))
		}
	}
	measure := func(b *testing.B, build func() any) {
		for b.Loop() {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			v := build()
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/capacity, "B/key")
			runtime.KeepAlive(v)
		}
	}
	b.Run("recent.Set", func(b *testing.B) {
		measure(b, func() any {
			s, _ := NewSet[[32]byte](capacity)
			fill(s.Add)
			return s
		})
	})
	b.Run("lru.Cache", func(b *testing.B) {
		measure(b, func() any {
			c, _ := lru.New[[32]byte, struct{}](capacity)
			fill(func(k [32]byte) { c.Add(k, struct{}{}) })
			return c
		})
	})
}
