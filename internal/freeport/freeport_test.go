package freeport

import (
	"net"
	"strconv"
	"testing"
)

// Draw returns distinct ports one can listen on, below the ephemeral range
// when the machine leaves room for that.
func TestDrawDistinctListenablePorts(t *testing.T) {
	lo, hi := fixedRange()
	seen := map[int]bool{}
	for range 50 {
		p, err := Draw()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d drawn twice", p)
		}
		seen[p] = true
		if hi > lo && (p < lo || p >= hi) {
			t.Errorf("port %d outside [%d, %d)", p, lo, hi)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("listen on drawn port %d: %v", p, err)
		}
		l.Close()
	}
}
