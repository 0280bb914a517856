package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
)

func TestRealFloorSizes(t *testing.T) {
	sizes, err := RealFloorSizes(DefaultChainID, 4)
	if err != nil {
		t.Fatal(err)
	}
	if sizes.Tx < floorHeader+floorLengthPrefix || sizes.Cert < floorHeader+floorLengthPrefix || sizes.QC <= sizes.Cert {
		t.Errorf("sizes %+v: want real objects, a QC larger than a certificate", sizes)
	}
	// A 32-byte key and a clock-based sequence, each with its tag and
	// length, inside the header field.
	if sizes.FrameHeader < 2+34+2 || sizes.FrameHeader > 64 {
		t.Errorf("frame header %d bytes, want about 46", sizes.FrameHeader)
	}
}

// TestGossipFloorPatterns runs payments through the bare gossip floor in
// each pattern and checks it carries the mesh's objects: each payment's
// seven objects (transaction, n certificates, QC on the bulletin and on its
// shard) reach every other validator once, so all validators together
// receive 3 × 7 = 21 object copies per payment on a committee of four with
// relaying off, in one message each or in frames.
func TestGossipFloorPatterns(t *testing.T) {
	sizes, err := RealFloorSizes(DefaultChainID, 4)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		pattern FloorPattern
	}{
		{"one message per object", FloorPerObject},
		{"frames", FloorFrames},
		{"frames with a linger", FloorPattern{Frames: true, Linger: time.Millisecond}},
		{"linear certificates", FloorLinear},
		{"linear certificates, one message per object", FloorPattern{Linear: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			const payments = 40
			r, err := MeasureGossipFloor(ctx, DefaultChainID, 4, 4, payments, 8, sizes, tc.pattern, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d messages for %d objects published, %d for %d received", r.Published, r.ObjectsPublished, r.Copies, r.ObjectCopies)
			if r.Payments != payments || r.Wall <= 0 || r.CPUPerPayment() <= 0 || r.Latency.N != payments || r.Latency.P50 <= 0 {
				t.Fatalf("result %+v", r)
			}
			// The run returns once each entry holds its quorum; the last
			// payments' remaining objects may still be queued or on their
			// way, and the warm-up's last ones may fall in the count, so
			// allow a little either way.
			// Linear: the transaction and the two QCs are gossiped to the
			// three others, the three other certificates go to the entry
			// alone: 6 objects sent, 3 × 3 + 3 = 12 received.
			published, copies := 7.0, 21.0
			if tc.pattern.Linear {
				published, copies = 6, 12
			}
			if perPayment := float64(r.ObjectsPublished) / payments; perPayment < published-1 || perPayment > published+1 {
				t.Errorf("objects published per payment %.1f, want about %.0f", perPayment, published)
			}
			if perPayment := float64(r.ObjectCopies) / payments; perPayment < copies-3 || perPayment > copies+3 {
				t.Errorf("object copies per payment %.1f (%d over %d payments), want about %.0f", perPayment, r.ObjectCopies, payments, copies)
			}
			if r.BytesSent <= 0 {
				t.Errorf("bytes sent %d", r.BytesSent)
			}
			if r.Published > r.ObjectsPublished || r.Copies > r.ObjectCopies {
				t.Errorf("%d messages for %d objects published, %d for %d received: a message carries at least one object",
					r.Published, r.ObjectsPublished, r.Copies, r.ObjectCopies)
			}
			if !tc.pattern.Frames && (r.Published != r.ObjectsPublished || r.Copies != r.ObjectCopies) {
				t.Errorf("one message per object: %d messages for %d objects published, %d for %d received",
					r.Published, r.ObjectsPublished, r.Copies, r.ObjectCopies)
			}
		})
	}
}

// TestGossipFloorFramesCoalesce: objects queued while a publisher loop has
// not taken them leave in one message. Eight payments entered at once make
// at most seven frames — one of transactions, one of certificates per
// validator (the entry's own may go out with its QCs), and the QCs on the
// bulletin and on the shard — for their 56 objects, however the loops and
// deliveries interleave.
func TestGossipFloorFramesCoalesce(t *testing.T) {
	sizes, err := RealFloorSizes(DefaultChainID, 4)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fc, err := startFloor(ctx, DefaultChainID, 4, sizes, FloorFrames, "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer fc.stop()
	entry := fc.nodes[0]
	const payments = 8
	var txs, certs [][]byte
	var quorums []chan struct{}
	fc.mu.Lock()
	for seq := uint64(1); seq <= payments; seq++ {
		ch := make(chan struct{})
		fc.waiting[seq] = ch
		quorums = append(quorums, ch)
		txs = append(txs, entry.object(sizes.Tx, seq, floorTx, entry.index, entry.index))
		certs = append(certs, entry.object(sizes.Cert, seq, floorCert, entry.index, entry.index))
	}
	fc.mu.Unlock()
	if err := entry.send(ctx, entry.tx, txs...); err != nil {
		t.Fatal(err)
	}
	if err := entry.send(ctx, entry.bull, certs...); err != nil {
		t.Fatal(err)
	}
	for i, ch := range quorums {
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("payment %d: no quorum: %v", i+1, ctx.Err())
		}
	}
	const objects = payments * (1 + 4 + 2)
	// The QCs are queued when the quorum is reached and published after.
	if err := poll(ctx, 5*time.Millisecond, "the QC frames", func() bool { return fc.counts().objectsPublished >= objects }); err != nil {
		t.Fatal(err)
	}
	c := fc.counts()
	t.Logf("%d messages for %d objects", c.published, c.objectsPublished)
	if c.objectsPublished != objects || c.published > 7 {
		t.Errorf("%d messages for %d objects, want at most 7 for %d", c.published, c.objectsPublished, objects)
	}
}

func TestGossipFloorRejectsBadArguments(t *testing.T) {
	tests := []struct {
		name                  string
		n, payments, inflight int
		pattern               FloorPattern
	}{
		{"no validators", 0, 1, 1, FloorPerObject},
		{"no payments", 4, 0, 1, FloorPerObject},
		{"nothing in flight", 4, 1, 0, FloorPerObject},
		{"negative linger", 4, 1, 1, FloorPattern{Frames: true, Linger: -time.Millisecond}},
		{"linger without frames", 4, 1, 1, FloorPattern{Linger: time.Millisecond}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := MeasureGossipFloor(context.Background(), DefaultChainID, tc.n, 0, tc.payments, tc.inflight, FloorSizes{}, tc.pattern, "", nil); err == nil {
				t.Error("no error")
			}
		})
	}
}

// TestFloorFrameEncoding: a frame keeps its header's real size, and its
// objects come back intact and in order; a damaged frame yields the
// objects before the damage.
func TestFloorFrameEncoding(t *testing.T) {
	objs := [][]byte{
		floorObject(40, 7, floorTx, 0, 0),
		floorObject(30, 8, floorCert, 1, 0),
		floorObject(100, 9, floorQC, 0, 0),
	}
	tests := []struct {
		name       string
		headerSize int
		objs       [][]byte
		cut        int // bytes removed from the end
		want       [][]byte
		wantSize   int // 0: not checked
	}{
		{"one object", 46, objs[:1], 0, objs[:1], 46 + 4 + 40},
		{"three objects", 46, objs, 0, objs, 46 + 3*4 + 40 + 30 + 100},
		{"header below its minimum", 0, objs[:1], 0, objs[:1], floorFrameMinHeader + 4 + 40},
		{"truncated last object", 46, objs, 5, objs[:2], 0},
		{"truncated length", 46, objs, 100 + 2, objs[:2], 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			frame := encodeFloorFrame(tc.headerSize, 2, 1<<40, tc.objs)
			if tc.wantSize > 0 && len(frame) != tc.wantSize {
				t.Errorf("frame of %d bytes, want %d", len(frame), tc.wantSize)
			}
			if !isFloorFrame(frame) {
				t.Fatal("not recognised as a frame")
			}
			got := floorFrameObjects(frame[:len(frame)-tc.cut])
			if len(got) != len(tc.want) {
				t.Fatalf("%d objects, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if !bytes.Equal(got[i], tc.want[i]) {
					t.Errorf("object %d = %x, want %x", i, got[i], tc.want[i])
				}
			}
		})
	}
	if single := objs[0]; isFloorFrame(single) || floorFrameObjects(single) != nil {
		t.Error("a single object taken for a frame")
	}
}

// TestFloorNodeFramesCertificates: a frame of two transactions makes a
// validator queue its two certificates for its next bulletin frame at
// once, each sized so that with its length it takes a real certificate's
// place in the frame.
func TestFloorNodeFramesCertificates(t *testing.T) {
	sizes := FloorSizes{Tx: 40, Cert: 30, QC: 50, FrameHeader: 46}
	nd := &floorNode{index: 1, n: 4, quorum: 3, pattern: FloorFrames, certs: map[uint64]int{}, sizes: sizes}
	bulletin := &floorFramer{nd: nd, wake: make(chan struct{}, 1)}
	nd.framers = map[*pubsub.Topic]*floorFramer{nd.bull: bulletin}
	frame := encodeFloorFrame(sizes.FrameHeader, 0, 1, [][]byte{
		floorObject(sizes.Tx-floorLengthPrefix, 7, floorTx, 0, 0),
		floorObject(sizes.Tx-floorLengthPrefix, 8, floorTx, 0, 0),
	})
	if got := nd.handle(context.Background(), frame); got != 2 {
		t.Errorf("handle counted %d objects, want 2", got)
	}
	queued := bulletin.take()
	if len(queued) != 2 {
		t.Fatalf("%d objects queued, want node 1's two certificates", len(queued))
	}
	for i, o := range queued {
		if len(o) != sizes.Cert-floorLengthPrefix || o[8] != floorCert || o[9] != 1 || o[10] != 0 || binary.BigEndian.Uint64(o) != uint64(7+i) {
			t.Errorf("queued object %d: %x, want node 1's certificate of payment %d for entry 0, %d bytes", i, o[:floorHeader], 7+i, sizes.Cert-floorLengthPrefix)
		}
	}
	select {
	case <-bulletin.wake:
	default:
		t.Error("the bulletin's publisher loop was not woken")
	}
}

// BenchmarkGossipFloor runs the bare gossip floor per committee size,
// pattern and load, with b.N payments after ten unmeasured ones:
//
//	go test -run '^$' -bench 'GossipFloor/n=31/' -benchtime 200x ./bench
//
// Per payment it reports the process's CPU (all validators), the bytes each
// validator sent and the messages each received, and the latency p50 from
// the transaction to the entry's quorum. It compares frames with the linear
// certificate flow at light load (one payment in flight) and under load.
func BenchmarkGossipFloor(b *testing.B) {
	for _, n := range []int{4, 10, 31} {
		sizes, err := RealFloorSizes(DefaultChainID, n)
		if err != nil {
			b.Fatal(err)
		}
		for _, pattern := range []FloorPattern{FloorFrames, FloorLinear} {
			for _, inflight := range []int{1, 64} {
				b.Run(fmt.Sprintf("n=%d/%s/inflight=%d", n, pattern, inflight), func(b *testing.B) {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
					defer cancel()
					r, err := MeasureGossipFloor(ctx, DefaultChainID, n, 10, b.N, inflight, sizes, pattern, "", nil)
					if err != nil {
						b.Fatal(err)
					}
					perValidator := float64(r.Payments) * float64(n)
					b.ReportMetric(r.CPUPerPayment(), "cpu-µs/payment")
					b.ReportMetric(float64(r.BytesSent)/perValidator, "B-sent/payment/validator")
					b.ReportMetric(float64(r.Copies)/perValidator, "copies/payment/validator")
					b.ReportMetric(float64(r.Latency.P50)/float64(time.Millisecond), "p50-ms")
				})
			}
		}
	}
}
