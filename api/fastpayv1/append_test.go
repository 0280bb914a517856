package fastpayv1

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/allegro-mesh/allegro/qc"
)

// fill sets b from r.
func fill(r *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(r.Uint32())
	}
}

// randomQC is a QC of n certificates with random fields (no valid
// signatures: only the encoding is under test). Zero values and long names
// come up often enough to exercise the proto3 omissions and two-byte
// lengths.
func randomQC(r *rand.Rand, n int) *qc.QC {
	small := func() uint64 {
		switch r.IntN(4) {
		case 0:
			return 0
		case 1:
			return math.MaxUint64
		case 2:
			return uint64(r.IntN(200))
		}
		return r.Uint64()
	}
	var e qc.Effects
	fill(r, e.Sender[:])
	fill(r, e.Recipient[:])
	fill(r, e.Asset[:])
	fill(r, e.NonceKey[:])
	e.Amount, e.NonceSeq = small(), small()
	q := &qc.QC{Threshold: uint32(small()), Epoch: small(), Certs: make([]qc.Certificate, n)}
	fill(r, q.TxHash[:])
	fill(r, q.EffectsHash[:])
	fill(r, q.Hash[:])
	for i := range q.Certs {
		c := &q.Certs[i]
		fill(r, c.Signer[:])
		fill(r, c.Signature[:])
		c.TxHash, c.EffectsHash, c.Effects, c.CreatedUnixMillis = q.TxHash, q.EffectsHash, e, small()
		switch r.IntN(3) {
		case 0:
		case 1:
			c.SignerName = "v" + string(rune('0'+i%10))
		default:
			c.SignerName = strings.Repeat("n", 100+r.IntN(200))
		}
	}
	return q
}

func checkAppendMatchesMarshal(t *testing.T, q *qc.QC) {
	t.Helper()
	want, err := proto.Marshal(NewCompactQuorumCertificate(q))
	if err != nil {
		t.Fatal(err)
	}
	prefix := []byte("prefix")
	if got := AppendCompactQuorumCertificate(bytes.Clone(prefix), q); !bytes.Equal(got, append(prefix, want...)) {
		t.Fatalf("QC of %d certificates: appended\n%x\nproto.Marshal\n%x", len(q.Certs), got[len(prefix):], want)
	}
	for i := range q.Certs {
		want, err := proto.Marshal(NewCompactValidatorCertificate(&q.Certs[i]))
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendCompactValidatorCertificate(nil, &q.Certs[i]); !bytes.Equal(got, want) {
			t.Fatalf("certificate %d: appended\n%x\nproto.Marshal\n%x", i, got, want)
		}
	}
}

// TestAppendCompactMatchesMarshal: the direct encoders write the bytes
// proto.Marshal writes for the compact wire messages, so the store's
// records decode as before.
func TestAppendCompactMatchesMarshal(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 3, 21, 100} {
		for range 50 {
			checkAppendMatchesMarshal(t, randomQC(r, n))
		}
	}
	// All zero: every optional scalar left out.
	checkAppendMatchesMarshal(t, &qc.QC{Certs: make([]qc.Certificate, 2)})
}

func FuzzAppendCompact(f *testing.F) {
	f.Add(uint64(1), uint8(3))
	f.Add(uint64(0), uint8(0))
	f.Add(binary.BigEndian.Uint64([]byte("allegro!")), uint8(21))
	f.Fuzz(func(t *testing.T, seed uint64, n uint8) {
		checkAppendMatchesMarshal(t, randomQC(rand.New(rand.NewPCG(seed, uint64(n))), int(n%64)))
	})
}

// BenchmarkEncodeCompactQC compares the direct encoder with proto.Marshal
// of the wire message, for a QC of 3 (n = 4) and of 21 (n = 31)
// certificates: go test -bench EncodeCompact -benchmem ./api/fastpayv1/
func BenchmarkEncodeCompactQC(b *testing.B) {
	for _, n := range []int{3, 21} {
		q := randomQC(rand.New(rand.NewPCG(7, uint64(n))), n)
		b.Run(fmt.Sprintf("certs=%d/append", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				AppendCompactQuorumCertificate(nil, q)
			}
		})
		b.Run(fmt.Sprintf("certs=%d/proto.Marshal", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := proto.Marshal(NewCompactQuorumCertificate(q)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
