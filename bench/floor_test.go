package bench

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
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
	r, err := MeasureGossipFloor(ctx, DefaultChainID, 4, 4, payments, 8, sizes, 0, nil)
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
		if _, err := MeasureGossipFloor(context.Background(), DefaultChainID, tc.n, 0, tc.payments, tc.inflight, FloorSizes{}, 0, nil); err == nil {
			t.Errorf("n=%d payments=%d inflight=%d: no error", tc.n, tc.payments, tc.inflight)
		}
	}
}

// TestGossipFloorBatched runs the batched variant end to end: every payment
// still reaches a quorum, and batching can only merge messages.
func TestGossipFloorBatched(t *testing.T) {
	sizes, err := RealFloorSizes(DefaultChainID, 4)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const payments = 40
	r, err := MeasureGossipFloor(ctx, DefaultChainID, 4, 4, payments, 8, sizes, 2*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	if perPayment := float64(r.Copies) / payments; perPayment > 24 {
		t.Errorf("copies per payment %.1f, want at most about 21", perPayment)
	}
	if r.Latency.N != payments || r.Latency.P50 <= 0 {
		t.Errorf("latency summary %+v", r.Latency)
	}
}

// TestFloorBatchFraming: a batch of two transactions makes a validator queue
// its two certificates for the next batch, each framed and intact.
func TestFloorBatchFraming(t *testing.T) {
	sizes := FloorSizes{Tx: 40, Cert: 30, QC: 50}
	nd := &floorNode{index: 1, n: 4, quorum: 3, batch: time.Millisecond, pending: map[*pubsub.Topic][]byte{}, certs: map[uint64]int{}, sizes: sizes}
	batch := []byte{floorBatchMark}
	for seq := uint64(7); seq <= 8; seq++ {
		item := floorPayload(sizes.Tx, seq, floorTx, 0, 0)
		batch = binary.BigEndian.AppendUint16(batch, uint16(len(item)))
		batch = append(batch, item...)
	}
	nd.handle(context.Background(), batch)
	queued := nd.pending[nd.bull]
	if len(queued) == 0 || queued[0] != floorBatchMark {
		t.Fatalf("queued %x, want a batch", queued)
	}
	var seqs []uint64
	for rest := queued[1:]; len(rest) > 0; {
		size := int(binary.BigEndian.Uint16(rest))
		item := rest[2 : 2+size]
		rest = rest[2+size:]
		if size != sizes.Cert || item[8] != floorCert || item[9] != 1 || item[10] != 0 {
			t.Fatalf("queued item %x: want node 1's certificate for entry 0, %d bytes", item[:floorHeader], sizes.Cert)
		}
		seqs = append(seqs, binary.BigEndian.Uint64(item))
	}
	if len(seqs) != 2 || seqs[0] != 7 || seqs[1] != 8 {
		t.Errorf("queued certificates for payments %v, want [7 8]", seqs)
	}
	// A truncated batch is ignored past the damage, not read out of bounds.
	nd.pending = map[*pubsub.Topic][]byte{}
	nd.handle(context.Background(), batch[:len(batch)-5])
	if got := len(nd.pending[nd.bull]); got != 2+sizes.Cert+1 {
		t.Errorf("after a truncated batch %d bytes queued, want one certificate (%d)", got, 2+sizes.Cert+1)
	}
}
