package p2p

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/allegro-mesh/allegro/api/fastpayv1"
)

// TestEncodeFrameMatchesMarshal: a frame written from objects encoded when
// queued is what proto.Marshal writes for the same frame message, for each
// kind, with the bulletin's objects queued interleaved (the frame groups
// them by field) and with a header of sequence 0 (left out).
func TestEncodeFrameMatchesMarshal(t *testing.T) {
	f := newFixture(t, 7)
	eff := testEffects(3, 0x31)
	h1, h2 := mustTxHash(t, testRequest(3)), mustTxHash(t, testRequest(4))
	q1, q2 := f.qcFrom(t, h1, eff, 0, 1, 2, 3, 4), f.qcFrom(t, h2, eff, 2, 3, 4, 5, 6)
	c1, c2 := f.cert(1, h1, eff), f.cert(1, h2, eff)
	pair := f.equivocation(t, 2, 5, 0x23)
	compactCert := fastpayv1.NewCompactValidatorCertificate
	compactQC := fastpayv1.NewCompactQuorumCertificate

	for _, seq := range []uint64{0, 1, 1 << 40} {
		hdr := f.hdr(1, seq)
		wantBulletin := &fastpayv1.BulletinFrame{Header: wireHeader(hdr),
			Certs:         []*fastpayv1.ValidatorCertificate{compactCert(&c1), compactCert(&c2)},
			Qcs:           []*fastpayv1.QuorumCertificate{compactQC(q1), compactQC(q2)},
			Equivocations: []*fastpayv1.EquivocationPair{{First: compactCert(&pair.First), Second: compactCert(&pair.Second)}}}
		cases := []struct {
			name string
			kind TopicKind
			objs []queued
			want proto.Message
		}{
			{"tx", KindTx, []queued{mustQueuedTx(t, &TxMessage{Request: testRequest(3), TxHash: h1}), mustQueuedTx(t, &TxMessage{Request: testRequest(4), TxHash: h2})},
				&fastpayv1.TxFrame{Header: wireHeader(hdr), Txs: []*fastpayv1.SubmitFastPayRequest{testRequest(3), testRequest(4)}}},
			{"bulletin, interleaved", KindBulletin, []queued{queuedQC(q1), queuedCert(&c1), queuedPair(&pair), queuedQC(q2), queuedCert(&c2)}, wantBulletin},
			{"qc shard", KindQC, []queued{queuedQC(q1), queuedQC(q2)},
				&fastpayv1.QCFrame{Header: wireHeader(hdr), Qcs: []*fastpayv1.QuorumCertificate{compactQC(q1), compactQC(q2)}}},
			{"empty bulletin", KindBulletin, nil, &fastpayv1.BulletinFrame{Header: wireHeader(hdr)}},
		}
		for _, tc := range cases {
			want, err := proto.Marshal(tc.want)
			if err != nil {
				t.Fatal(err)
			}
			got, err := encodeFrame(tc.kind, hdr, tc.objs)
			if err != nil {
				t.Fatalf("%s, seq %d: %v", tc.name, seq, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s, seq %d: encodeFrame\n%x\nproto.Marshal\n%x", tc.name, seq, got, want)
			}
		}
	}

	// The size limit is checked before anything is sent.
	big := make([]queued, 0, 64)
	for len(big) < cap(big) {
		big = append(big, queuedQC(f.qcFrom(t, h1, eff, 0, 1, 2, 3, 4, 5, 6)))
	}
	big[0].enc = make([]byte, MaxFrameSize)
	if _, err := encodeFrame(KindQC, f.hdr(1, 1), big); err == nil {
		t.Error("a frame over MaxFrameSize was encoded")
	}
}
