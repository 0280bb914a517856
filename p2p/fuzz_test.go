package p2p

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// FuzzDecodeFrames feeds arbitrary bytes to the first validation stage of
// every topic kind (DecodeFrame, what a validator runs on any peer's
// frame). It must never panic and must classify every failure as
// ErrTooLarge or ErrMalformed (the validator's size and decode stages). A
// frame it accepts is re-encoded from the decoded objects with the
// Encode*Frame functions; the result must decode to the same header and
// object count, so what the mesh decodes is what its tools and publisher
// loops encode.
func FuzzDecodeFrames(f *testing.F) {
	fx := newFixture(f, 4)
	h1, h2 := mustTxHash(f, testRequest(1)), mustTxHash(f, testRequest(2))
	eff := testEffects(1, 0x23)
	q := fx.qcFrom(f, h1, eff, 0, 1, 2)
	withParents := testRequest(3)
	withParents.Tx.ParentQcHash = q.Hash[:]
	f.Add(encTx(f, fx.hdr(1, 1), testRequest(1), testRequest(2), withParents))
	f.Add(encBulletin(f, fx.hdr(1, 2), []qc.Certificate{fx.cert(1, h1, eff), fx.cert(1, h2, eff)}, []*qc.QC{q}, []qc.Equivocation{fx.equivocation(f, 2, 5, 0x23)}))
	f.Add(encQC(f, fx.hdr(0, 3), q, fx.qcFrom(f, h2, eff, 1, 2, 3)))
	f.Add(encQC(f, fx.hdr(0, 4), belowQuorumQC(fx, h1, eff)))
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00})
	f.Add([]byte{0xff, 0xff, 0xff})

	f.Fuzz(func(t *testing.T, data []byte) {
		for _, k := range []TopicKind{KindTx, KindBulletin, KindQC} {
			hdr, n, err := DecodeFrame(k, data)
			if err != nil {
				if !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrMalformed) {
					t.Fatalf("%s: unclassified error %v", k, err)
				}
				continue
			}
			if n < 1 || n > MaxFrameObjects {
				t.Fatalf("%s: accepted a frame of %d objects", k, n)
			}
			again := reencodeFrame(t, k, data)
			if len(again) > MaxFrameSize {
				// Conversion fills in fields an input may leave out (a
				// certificate's public key), so a frame near the limit
				// can grow past it.
				continue
			}
			hdr2, n2, err := DecodeFrame(k, again)
			if err != nil || hdr2 != hdr || n2 != n {
				t.Fatalf("%s: re-encoded frame decodes to %+v, %d objects, %v; want %+v, %d", k, hdr2, n2, err, hdr, n)
			}
		}
	})
}

// reencodeFrame decodes a frame the validator's way and encodes its
// objects again.
func reencodeFrame(t *testing.T, k TopicKind, data []byte) []byte {
	t.Helper()
	var out []byte
	var err error
	switch k {
	case KindTx:
		f, derr := decodeTxFrame(data)
		if derr != nil {
			t.Fatal(derr)
		}
		reqs := make([]*fastpayv1.SubmitFastPayRequest, len(f.txs))
		for i, tx := range f.txs {
			reqs[i] = tx.Request
		}
		out, err = EncodeTxFrame(f.header, reqs...)
	case KindBulletin:
		f, derr := decodeBulletinFrame(data)
		if derr != nil {
			t.Fatal(derr)
		}
		certs := make([]qc.Certificate, len(f.certs))
		for i, c := range f.certs {
			certs[i] = *c
		}
		pairs := make([]qc.Equivocation, len(f.pairs))
		for i, p := range f.pairs {
			pairs[i] = *p
		}
		out, err = EncodeBulletinFrame(f.header, certs, f.qcs, pairs)
	default:
		f, derr := decodeQCFrame(data)
		if derr != nil {
			t.Fatal(derr)
		}
		out, err = EncodeQCFrame(f.header, f.qcs...)
	}
	if err != nil {
		t.Fatalf("%s: re-encode: %v", k, err)
	}
	return out
}

// FuzzCertStream feeds arbitrary bytes to a member's certificate stream
// reader, as another member would send them (certstream.go): every frame
// read goes through the certificate frame validation. It must never panic;
// a frame is bounded by MaxFrameSize; a failure to read is ErrTooLarge or
// ErrMalformed; and an accepted frame delivers only certificates the
// sender signed, at most as many as it carried.
func FuzzCertStream(f *testing.F) {
	fx := newFixture(f, 4)
	h1, h2 := mustTxHash(f, testRequest(1)), mustTxHash(f, testRequest(2))
	eff := testEffects(1, 0x23)
	valid := encBulletin(f, fx.hdr(1, 2), []qc.Certificate{fx.cert(1, h1, eff), fx.cert(1, h2, eff)}, nil, nil)
	other := encBulletin(f, fx.hdr(1, 3), []qc.Certificate{fx.cert(2, h1, eff)}, nil, nil)
	prefixed := func(frames ...[]byte) []byte {
		var out []byte
		for _, fr := range frames {
			out = append(out, binary.AppendUvarint(nil, uint64(len(fr)))...)
			out = append(out, fr...)
		}
		return out
	}
	f.Add(prefixed(valid))
	f.Add(prefixed(valid, other))
	f.Add(prefixed(valid)[:10])
	f.Add(binary.AppendUvarint(nil, MaxFrameSize+1))
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})

	n := newNode(f, LocalConfig(), "val-0", fx.keys[0], fx.committee)
	from, err := PeerIDFromValidatorID(fx.signers[1].ID())
	if err != nil {
		f.Fatal(err)
	}
	sender := fx.signers[1].ID()
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		for range 8 {
			frame, err := readCertFrame(r)
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				if !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrMalformed) {
					t.Fatalf("unclassified read error %v", err)
				}
				return
			}
			if len(frame) > MaxFrameSize {
				t.Fatalf("read a frame of %d bytes", len(frame))
			}
			out, v, _ := n.pipes.validateCertFrame(context.Background(), from, sender, frame)
			if v != Accept {
				continue
			}
			objs := out.(*frameObjects)
			if objs.len() > objs.received || objs.received > MaxFrameObjects {
				t.Fatalf("accepted %d of %d objects", objs.len(), objs.received)
			}
			for _, it := range objs.items {
				if it.Cert == nil || it.Cert.Signer != sender {
					t.Fatalf("accepted an object that is not the sender's certificate: %+v", it)
				}
			}
		}
	})
}
