package p2p

import (
	"errors"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// TestCompactQC: a QC encoded for a frame decodes to the same QC as its
// full form, in far fewer bytes; what the compact form leaves out is
// filled in from the QC, so a QC whose certificates did not sign the QC's
// fields still fails verification, and one missing its only copy of the
// effects does not decode.
func TestCompactQC(t *testing.T) {
	f := newFixture(t, 31)
	q := f.qcFrom(t, mustTxHash(t, testRequest(1)), testEffects(1, 9), 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20)
	roundTrip := func(t *testing.T, w *fastpayv1.QuorumCertificate) *fastpayv1.QuorumCertificate {
		t.Helper()
		b, err := proto.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		out := new(fastpayv1.QuorumCertificate)
		if err := proto.Unmarshal(b, out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	full, compact := fastpayv1.NewQuorumCertificate(q), fastpayv1.NewCompactQuorumCertificate(q)
	if c, fl := proto.Size(compact), proto.Size(full); c*2 > fl {
		t.Errorf("compact QC of %d certificates is %d bytes, full form %d", len(q.Certs), c, fl)
	}
	for name, w := range map[string]*fastpayv1.QuorumCertificate{"compact": compact, "full": full} {
		got, err := decodeWireQC(t, roundTrip(t, w))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, q) {
			t.Errorf("%s form decodes to a different QC", name)
		}
		if err := f.committee.VerifyQC(got); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	cases := []struct {
		name      string
		mutate    func(w *fastpayv1.QuorumCertificate)
		malformed bool // else: decodes, fails verification
	}{
		{"first certificate without effects", func(w *fastpayv1.QuorumCertificate) { w.Certs[0].Effects = nil }, true},
		{"another tx_hash for the QC", func(w *fastpayv1.QuorumCertificate) { w.TxHash[0] ^= 1 }, false},
		{"another effects_hash for the QC", func(w *fastpayv1.QuorumCertificate) { w.EffectsHash[0] ^= 1 }, false},
		{"other effects in the first certificate", func(w *fastpayv1.QuorumCertificate) { w.Certs[0].Effects.Amount++ }, false},
		{"other effects in a later certificate", func(w *fastpayv1.QuorumCertificate) {
			e := proto.Clone(w.Certs[0].Effects).(*fastpayv1.EffectsSummary)
			e.Amount++
			w.Certs[5].Effects = e
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := roundTrip(t, fastpayv1.NewCompactQuorumCertificate(q))
			tc.mutate(w)
			got, err := decodeWireQC(t, w)
			if tc.malformed {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("decoded (%v), want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("does not decode: %v", err)
			}
			if err := f.committee.VerifyQC(got); err == nil {
				t.Fatal("verifies")
			}
		})
	}
}

// decodeWireQC decodes w as the only QC of a QC frame, with the mesh's
// decoder and with the protobuf path, which must agree.
func decodeWireQC(t *testing.T, w *fastpayv1.QuorumCertificate) (*qc.QC, error) {
	t.Helper()
	data, err := proto.Marshal(&fastpayv1.QCFrame{Header: &fastpayv1.FrameHeader{Publisher: make([]byte, 32), Seq: 1}, Qcs: []*fastpayv1.QuorumCertificate{w}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := decodeQCFrame(data)
	ref, refErr := refDecodeQCFrame(data)
	if errorClass(err) != errorClass(refErr) {
		t.Fatalf("decoder: %v; protobuf path: %v", err, refErr)
	}
	if err != nil {
		return nil, err
	}
	if !reflect.DeepEqual(f, ref) {
		t.Fatal("the decoder and the protobuf path yield different QCs")
	}
	return f.qcs[0], nil
}
