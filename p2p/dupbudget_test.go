package p2p

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestDuplicateBudget(t *testing.T) {
	d := newDuplicateBudget(2, 3) // two a second, three at once
	a, b := peer.ID("a"), peer.ID("b")
	now := time.Unix(1_000, 0)
	for i := range 3 {
		if !d.allow(a, now) {
			t.Fatalf("frame %d of the burst refused", i+1)
		}
	}
	if d.allow(a, now) {
		t.Fatal("a fourth frame at once allowed")
	}
	if !d.allow(b, now) {
		t.Fatal("another peer's budget was spent by the first")
	}
	if !d.allow(a, now.Add(500*time.Millisecond)) {
		t.Fatal("half a second did not refill one frame at two a second")
	}
	if d.allow(a, now.Add(500*time.Millisecond)) {
		t.Fatal("half a second refilled more than one frame")
	}
}
