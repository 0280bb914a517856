package p2p

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// Frames are written from objects encoded once, when queued: a frame is
// its header followed by each object as a length-delimited field, grouped
// by field in the order mesh.proto numbers them, which is what
// proto.Marshal writes for the same frame message. Certificates and QCs
// are encoded straight from the domain types (fastpayv1.AppendCompact*),
// without the wire messages proto.Marshal would need built first.

// Field numbers of mesh.proto.
const (
	fieldFrameHeader = 1

	fieldHeaderPublisher = 1
	fieldHeaderSeq       = 2

	fieldTxFrameTxs = 2

	fieldBulletinCerts = 2
	fieldBulletinQCs   = 3
	fieldBulletinPairs = 4

	fieldQCFrameQCs = 2

	fieldPairFirst  = 1
	fieldPairSecond = 2
)

func encodeTx(req *fastpayv1.SubmitFastPayRequest) ([]byte, error) {
	b, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode tx: %w", err)
	}
	return b, nil
}

func encodeCert(c *qc.Certificate) []byte {
	return fastpayv1.AppendCompactValidatorCertificate(nil, c)
}

func encodeQC(q *qc.QC) []byte {
	return fastpayv1.AppendCompactQuorumCertificate(nil, q)
}

// encodePair encodes an EquivocationPair of the two certificates in compact
// form.
func encodePair(e *qc.Equivocation) []byte {
	b := appendMessageField(nil, fieldPairFirst, encodeCert(&e.First))
	return appendMessageField(b, fieldPairSecond, encodeCert(&e.Second))
}

// encodeFrame writes the frame of kind k with header h carrying objs, and
// checks the size limit before anything is sent.
func encodeFrame(k TopicKind, h FrameHeader, objs []queued) ([]byte, error) {
	size := frameHeaderOverhead
	for i := range objs {
		size += objs[i].size
	}
	var hdr []byte
	hdr = appendBytesField(hdr, fieldHeaderPublisher, h.Publisher[:])
	if h.Seq != 0 {
		hdr = protowire.AppendTag(hdr, fieldHeaderSeq, protowire.VarintType)
		hdr = protowire.AppendVarint(hdr, h.Seq)
	}
	b := appendMessageField(make([]byte, 0, size), fieldFrameHeader, hdr)
	switch k {
	case KindTx:
		b = appendObjects(b, fieldTxFrameTxs, objs, func(o *queued) bool { return o.tx != nil })
	case KindBulletin:
		b = appendObjects(b, fieldBulletinCerts, objs, func(o *queued) bool { return o.cert != nil })
		b = appendObjects(b, fieldBulletinQCs, objs, func(o *queued) bool { return o.qc != nil })
		b = appendObjects(b, fieldBulletinPairs, objs, func(o *queued) bool { return o.pair != nil })
	default:
		b = appendObjects(b, fieldQCFrameQCs, objs, func(o *queued) bool { return o.qc != nil })
	}
	if len(b) > MaxFrameSize {
		return nil, fmt.Errorf("%w: %s frame of %d bytes, limit %d", ErrTooLarge, k, len(b), MaxFrameSize)
	}
	return b, nil
}

// appendObjects appends the objects of objs that are, in field num.
func appendObjects(b []byte, num protowire.Number, objs []queued, are func(*queued) bool) []byte {
	for i := range objs {
		if are(&objs[i]) {
			b = appendMessageField(b, num, objs[i].enc)
		}
	}
	return b
}

// appendMessageField appends a present message field (written even when
// the message is empty, as proto.Marshal writes a set one).
func appendMessageField(b []byte, num protowire.Number, msg []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, msg)
}

// appendBytesField appends a bytes field, left out when empty (proto3).
func appendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	return appendMessageField(b, num, v)
}
