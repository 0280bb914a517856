package p2p

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"slices"
	"testing"

	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"google.golang.org/protobuf/proto"

	"github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

func msgOn(topic string, data []byte) *pb.Message { return &pb.Message{Topic: &topic, Data: data} }

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMessageIDs(t *testing.T) {
	f := newFixture(t, 4)
	ts := newTopicSet(testDomain, 16)
	req := testRequest(1)
	txHash := mustTxHash(t, req)
	eff := testEffects(1, 0x23) // shard 3
	id := func(topic string, data []byte) string { return ts.messageID(msgOn(topic, data)) }

	t.Run("digest of the whole frame", func(t *testing.T) {
		data := encTx(t, f.hdr(1, 7), req, testRequest(2))
		got := id(ts.tx, data)
		want := sha256.Sum256(append([]byte("allegro/gossip/2"), data...))
		if got[0] != idPrefixTx || !bytes.Equal([]byte(got[1:]), want[:]) {
			t.Fatalf("tx frame id %x, want 't' ‖ %x", got, want)
		}
	})

	t.Run("same bytes same id, any other byte another id", func(t *testing.T) {
		base := encTx(t, f.hdr(1, 7), req)
		if id(ts.tx, base) != id(ts.tx, bytes.Clone(base)) {
			t.Fatal("equal bytes, different ids")
		}
		// Every byte of a frame is covered: the header's sequence and
		// publisher, the objects and their order, and bytes that tx_hash
		// does not cover (parent QCs, client request id). A copy with
		// something invalid attached must not share the genuine frame's id,
		// or pubsub, which marks ids seen before validating, would drop the
		// genuine frame as a duplicate.
		withParents := proto.Clone(req).(*fastpayv1.SubmitFastPayRequest)
		withParents.ParentQcs = []*fastpayv1.QuorumCertificate{fastpayv1.NewQuorumCertificate(belowQuorumQC(f, txHash, eff))}
		if mustTxHash(t, withParents) != txHash {
			t.Fatal("the variant must keep the tx_hash")
		}
		retried := proto.Clone(req).(*fastpayv1.SubmitFastPayRequest)
		retried.Tx.ClientRequestId = "retry-1"
		variants := map[string][]byte{
			"another seq":       encTx(t, f.hdr(1, 8), req),
			"another publisher": encTx(t, f.hdr(2, 7), req),
			"parent qcs":        encTx(t, f.hdr(1, 7), withParents),
			"client request id": encTx(t, f.hdr(1, 7), retried),
			"one more object":   encTx(t, f.hdr(1, 7), req, testRequest(2)),
		}
		for name, data := range variants {
			if id(ts.tx, data) == id(ts.tx, base) {
				t.Errorf("%s: same id as the base frame", name)
			}
		}
		ab := encTx(t, f.hdr(1, 7), req, testRequest(2))
		ba := encTx(t, f.hdr(1, 7), testRequest(2), req)
		if id(ts.tx, ab) == id(ts.tx, ba) {
			t.Error("object order does not change the id")
		}

		cert := f.cert(1, txHash, eff)
		forged := cert
		forged.Signature[0] ^= 1
		if id(ts.bull, encBulletin(t, f.hdr(1, 7), []qc.Certificate{cert}, nil, nil)) ==
			id(ts.bull, encBulletin(t, f.hdr(1, 7), []qc.Certificate{forged}, nil, nil)) {
			t.Error("a forged signature shares the genuine certificate frame's id")
		}
		q1 := f.qcFrom(t, txHash, eff, 0, 1, 2)
		q2 := f.qcFrom(t, txHash, eff, 1, 2, 3)
		shard := ts.qcTopicFor(eff.Recipient)
		if id(shard, encQC(t, f.hdr(0, 1), q1)) == id(shard, encQC(t, f.hdr(0, 1), q2)) {
			t.Error("QCs of one transaction from two signer subsets share an id")
		}
	})

	t.Run("ids differ per topic", func(t *testing.T) {
		data := encQC(t, f.hdr(0, 1), f.qcFrom(t, txHash, eff, 0, 1, 2))
		ids := map[string]string{}
		for name, topic := range map[string]string{"tx": ts.tx, "bulletin": ts.bull, "shard 3": ts.qc[3], "shard 4": ts.qc[4], "unknown": "/other/1"} {
			got := id(topic, data)
			for other, otherID := range ids {
				if got == otherID {
					t.Errorf("the same bytes on %s and %s share an id", name, other)
				}
			}
			ids[name] = got
		}
		if ids["shard 3"][0] != idPrefixQC || ids["shard 3"][1] != 3 || ids["bulletin"][0] != idPrefixBulletin || ids["unknown"][0] != idPrefixUnknown {
			t.Errorf("prefixes: %x %x %x", ids["shard 3"][:2], ids["bulletin"][:1], ids["unknown"][:1])
		}
	})

	t.Run("unknown topics bind the name", func(t *testing.T) {
		junk := []byte{0xff, 0xff, 0xff}
		if id("/other/1", junk) == id("/other/2", junk) {
			t.Error("unknown-topic ids must bind the topic")
		}
		// The name is length-prefixed: moving a byte between name and
		// payload changes the id.
		if id("/other/1", junk) == id("/other/", append([]byte("1"), junk...)) {
			t.Error("topic name and payload run into each other")
		}
	})
}

// TestDecodeFrame runs DecodeFrame, the validators' first stage, on each
// kind: a valid fixture frame of each kind and, one mutation per case,
// frames that are too large or malformed.
func TestDecodeFrame(t *testing.T) {
	f := newFixture(t, 4)
	eff := testEffects(1, 0x23)
	h1, h2 := mustTxHash(t, testRequest(1)), mustTxHash(t, testRequest(2))
	hdr := f.hdr(1, 42)
	wireHdr := wireHeader(hdr)
	q := f.qcFrom(t, h1, eff, 0, 1, 2)
	valid := map[TopicKind]func() proto.Message{
		KindTx: func() proto.Message {
			return &fastpayv1.TxFrame{Header: wireHeader(hdr), Txs: []*fastpayv1.SubmitFastPayRequest{testRequest(1), testRequest(2)}}
		},
		KindBulletin: func() proto.Message {
			pair := f.equivocation(t, 2, 9, 0x23)
			return &fastpayv1.BulletinFrame{
				Header: wireHeader(hdr),
				Certs:  []*fastpayv1.ValidatorCertificate{fastpayv1.NewValidatorCertificate(new(f.cert(1, h1, eff))), fastpayv1.NewValidatorCertificate(new(f.cert(1, h2, eff)))},
				Qcs:    []*fastpayv1.QuorumCertificate{fastpayv1.NewQuorumCertificate(q)},
				Equivocations: []*fastpayv1.EquivocationPair{{
					First: fastpayv1.NewValidatorCertificate(&pair.First), Second: fastpayv1.NewValidatorCertificate(&pair.Second),
				}},
			}
		},
		KindQC: func() proto.Message {
			return &fastpayv1.QCFrame{Header: wireHeader(hdr), Qcs: []*fastpayv1.QuorumCertificate{fastpayv1.NewQuorumCertificate(q), fastpayv1.NewQuorumCertificate(f.qcFrom(t, h2, eff, 1, 2, 3))}}
		},
	}
	wantN := map[TopicKind]int{KindTx: 2, KindBulletin: 5, KindQC: 2}

	// Mutations of the wire frame, by kind; each must fail with wantErr.
	type mutation struct {
		name    string
		kinds   []TopicKind
		mutate  func(m proto.Message)
		raw     []byte // replaces the frame's bytes when set
		wantErr error
	}
	all := []TopicKind{KindTx, KindBulletin, KindQC}
	emptyObjects := func(m proto.Message) {
		switch m := m.(type) {
		case *fastpayv1.TxFrame:
			m.Txs = nil
		case *fastpayv1.BulletinFrame:
			m.Certs, m.Qcs, m.Equivocations = nil, nil, nil
		case *fastpayv1.QCFrame:
			m.Qcs = nil
		}
	}
	setHeader := func(h *fastpayv1.FrameHeader) func(proto.Message) {
		return func(m proto.Message) {
			switch m := m.(type) {
			case *fastpayv1.TxFrame:
				m.Header = h
			case *fastpayv1.BulletinFrame:
				m.Header = h
			case *fastpayv1.QCFrame:
				m.Header = h
			}
		}
	}
	// tooMany sets MaxFrameObjects+1 objects, each as small as the wire
	// allows, so the count, not the byte size, is what fails.
	tooMany := func(m proto.Message) {
		switch m := m.(type) {
		case *fastpayv1.TxFrame:
			m.Txs = make([]*fastpayv1.SubmitFastPayRequest, MaxFrameObjects+1)
			for i := range m.Txs {
				m.Txs[i] = &fastpayv1.SubmitFastPayRequest{}
			}
		case *fastpayv1.BulletinFrame:
			m.Certs = make([]*fastpayv1.ValidatorCertificate, MaxFrameObjects+1)
			for i := range m.Certs {
				m.Certs[i] = &fastpayv1.ValidatorCertificate{}
			}
		case *fastpayv1.QCFrame:
			m.Qcs = make([]*fastpayv1.QuorumCertificate, MaxFrameObjects+1)
			for i := range m.Qcs {
				m.Qcs[i] = &fastpayv1.QuorumCertificate{}
			}
		}
	}
	cases := []mutation{
		{name: "too large", kinds: all, raw: make([]byte, MaxFrameSize+1), wantErr: ErrTooLarge},
		{name: "not protobuf", kinds: all, raw: []byte{0xff, 0xff}, wantErr: ErrMalformed},
		{name: "empty frame", kinds: all, mutate: emptyObjects, wantErr: ErrMalformed},
		{name: "no bytes at all", kinds: all, raw: []byte{}, wantErr: ErrMalformed},
		{name: "no header", kinds: all, mutate: setHeader(nil), wantErr: ErrMalformed},
		{name: "short publisher", kinds: all, mutate: setHeader(&fastpayv1.FrameHeader{Publisher: wireHdr.Publisher[:31], Seq: 1}), wantErr: ErrMalformed},
		{name: "too many objects", kinds: all, mutate: tooMany, wantErr: ErrTooLarge},
		{name: "request without a transaction", kinds: []TopicKind{KindTx}, mutate: func(m proto.Message) {
			m.(*fastpayv1.TxFrame).Txs[1] = &fastpayv1.SubmitFastPayRequest{}
		}, wantErr: ErrMalformed},
		{name: "transaction without expiry", kinds: []TopicKind{KindTx}, mutate: func(m proto.Message) {
			m.(*fastpayv1.TxFrame).Txs[1].Tx.Expiry = nil
		}, wantErr: ErrMalformed},
		{name: "transaction over MaxTxSize", kinds: []TopicKind{KindTx}, mutate: func(m proto.Message) {
			m.(*fastpayv1.TxFrame).Txs[1].Tx.TempoTx.Data = make([]byte, MaxTxSize)
		}, wantErr: ErrTooLarge},
		{name: "certificate without signer", kinds: []TopicKind{KindBulletin}, mutate: func(m proto.Message) {
			m.(*fastpayv1.BulletinFrame).Certs[1].Signer = nil
		}, wantErr: ErrMalformed},
		{name: "equivocation pair missing a side", kinds: []TopicKind{KindBulletin}, mutate: func(m proto.Message) {
			m.(*fastpayv1.BulletinFrame).Equivocations[0].Second = nil
		}, wantErr: ErrMalformed},
		{name: "qc without certificates", kinds: []TopicKind{KindBulletin, KindQC}, mutate: func(m proto.Message) {
			switch m := m.(type) {
			case *fastpayv1.BulletinFrame:
				m.Qcs[0].Certs = nil
			case *fastpayv1.QCFrame:
				m.Qcs[1].Certs = nil
			}
		}, wantErr: ErrMalformed},
		{name: "qc with a short hash", kinds: []TopicKind{KindBulletin, KindQC}, mutate: func(m proto.Message) {
			switch m := m.(type) {
			case *fastpayv1.BulletinFrame:
				m.Qcs[0].QcHash = m.Qcs[0].QcHash[:31]
			case *fastpayv1.QCFrame:
				m.Qcs[0].QcHash = m.Qcs[0].QcHash[:31]
			}
		}, wantErr: ErrMalformed},
	}
	for _, k := range all {
		t.Run(k.String()+"/valid", func(t *testing.T) {
			gotHdr, n, err := DecodeFrame(k, marshal(t, valid[k]()))
			if err != nil || gotHdr != hdr || n != wantN[k] {
				t.Fatalf("DecodeFrame = %+v, %d, %v; want %+v, %d", gotHdr, n, err, hdr, wantN[k])
			}
		})
		for _, tc := range cases {
			if !slices.Contains(tc.kinds, k) {
				continue
			}
			t.Run(k.String()+"/"+tc.name, func(t *testing.T) {
				data := tc.raw
				if data == nil {
					m := valid[k]()
					tc.mutate(m)
					data = marshal(t, m)
				}
				if _, n, err := DecodeFrame(k, data); !errors.Is(err, tc.wantErr) {
					t.Errorf("DecodeFrame = %d objects, %v; want %v", n, err, tc.wantErr)
				}
			})
		}
	}
	if _, _, err := DecodeFrame(TopicKind(0), marshal(t, valid[KindTx]())); err == nil {
		t.Error("DecodeFrame accepted an unknown kind")
	}
	// Frames of one kind are not frames of another: a tx frame's requests
	// sit in field 2, where a QC frame expects QCs.
	if _, _, err := DecodeFrame(KindQC, marshal(t, valid[KindTx]())); err == nil {
		t.Error("a tx frame decoded as a QC frame")
	}
}
