package bench

import (
	"context"
	"testing"
	"time"
)

// TestGossipFloorPattern runs payments through the bare gossip floor and
// checks it carries the mesh's message pattern: each payment's seven
// messages (transaction, n certificates, QC on the bulletin and on its
// shard) reach every other validator once, so all validators together
// receive 3 × 7 = 21 copies per payment on a committee of four with
// relaying off.
func TestGossipFloorPattern(t *testing.T) {
	sizes, err := RealFloorSizes(DefaultChainID, 4)
	if err != nil {
		t.Fatal(err)
	}
	if sizes.Tx < floorHeader || sizes.Cert < floorHeader || sizes.QC <= sizes.Cert {
		t.Fatalf("sizes %+v: want real messages, a QC larger than a certificate", sizes)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const payments = 40
	r, err := MeasureGossipFloor(ctx, DefaultChainID, 4, 4, payments, 8, sizes, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Payments != payments || r.Wall <= 0 || r.CPUPerPayment() <= 0 {
		t.Fatalf("result %+v", r)
	}
	// The run returns once each entry holds its quorum; the last
	// payments' remaining copies may still be on their way, and a copy
	// could in principle arrive twice, so allow a little either way.
	perPayment := float64(r.Copies) / payments
	if perPayment < 18 || perPayment > 24 {
		t.Errorf("copies per payment %.1f (%d over %d payments), want about 21", perPayment, r.Copies, payments)
	}
}

func TestGossipFloorRejectsBadArguments(t *testing.T) {
	for _, tc := range []struct{ n, payments, inflight int }{{0, 1, 1}, {4, 0, 1}, {4, 1, 0}} {
		if _, err := MeasureGossipFloor(context.Background(), DefaultChainID, tc.n, 0, tc.payments, tc.inflight, FloorSizes{}, nil); err == nil {
			t.Errorf("n=%d payments=%d inflight=%d: no error", tc.n, tc.payments, tc.inflight)
		}
	}
}
