package p2p

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// Errors of the stage-1 decoders; match them with errors.Is.
var (
	// ErrTooLarge: the payload exceeds its topic's size limit.
	ErrTooLarge = errors.New("message too large")
	// ErrMalformed: the payload is not a well-formed message of its topic.
	ErrMalformed = errors.New("malformed message")
)

// Size limits of mesh protocol 2. A frame of any kind is at most
// MaxFrameSize bytes and MaxFrameObjects objects: gossipsub refuses RPCs
// over 1 MiB before any validator sees them, so the limit stays below that
// and an oversized frame reaches the validator and is rejected there,
// penalising its sender. One transaction request is at most MaxTxSize (a
// tempo tx of 128 KiB, SPEC §3, plus the parent QCs it carries).
const (
	MaxFrameSize    = 768 << 10
	MaxFrameObjects = 4096
	MaxTxSize       = 256 << 10
)

// FrameHeader is a decoded frame header. Frames are unsigned, so it is
// informational only: nothing in a frame is trusted because of it.
type FrameHeader struct {
	Publisher qc.ValidatorID
	Seq       uint64
}

// TxMessage is one decoded transaction of a tx frame: the request and its
// tx_hash, computed once on ingress so no later stage hashes again.
type TxMessage struct {
	Request *fastpayv1.SubmitFastPayRequest
	TxHash  qc.Hash
	// Decoded is set by the caller's stateful validator to whatever it
	// derived from Request (for example the decoded, sender-recovered
	// payment), so delivery handlers reuse it instead of decoding again.
	// Unset for local publishes.
	Decoded any
}

// BulletinItem is one object of a bulletin frame: exactly one of Cert and
// QC is set. A forwarded equivocation pair is delivered as two items.
type BulletinItem struct {
	Cert *qc.Certificate
	QC   *qc.QC
}

// txFrame, bulletinFrame and qcFrame are decoded frames: objects converted
// to domain types and hashed, nothing verified.
type txFrame struct {
	header FrameHeader
	txs    []*TxMessage
}

type bulletinFrame struct {
	header FrameHeader
	certs  []*qc.Certificate
	qcs    []*qc.QC
	pairs  []*qc.Equivocation
}

type qcFrame struct {
	header FrameHeader
	qcs    []*qc.QC
}

func checkFrameSize(what string, data []byte) error {
	if len(data) > MaxFrameSize {
		return fmt.Errorf("%w: %s frame of %d bytes, limit %d", ErrTooLarge, what, len(data), MaxFrameSize)
	}
	return nil
}

func decodeHeader(h *fastpayv1.FrameHeader) (FrameHeader, error) {
	return frameHeader(h.GetPublisher(), h.GetSeq())
}

// frameHeader checks a header's fields as carried.
func frameHeader(publisher []byte, seq uint64) (FrameHeader, error) {
	out := FrameHeader{Seq: seq}
	if len(publisher) != len(out.Publisher) {
		return out, fmt.Errorf("%w: frame publisher of %d bytes", ErrMalformed, len(publisher))
	}
	copy(out.Publisher[:], publisher)
	return out, nil
}

func checkObjects(what string, n int) error {
	if n == 0 {
		return fmt.Errorf("%w: empty %s frame", ErrMalformed, what)
	}
	if n > MaxFrameObjects {
		return fmt.Errorf("%w: %s frame of %d objects, limit %d", ErrTooLarge, what, n, MaxFrameObjects)
	}
	return nil
}

// decodeTxFrame is stage 1 of the tx topic: size, decode, and every
// request carrying a transaction that hashes.
func decodeTxFrame(data []byte) (*txFrame, error) {
	if err := checkFrameSize("tx", data); err != nil {
		return nil, err
	}
	m := new(fastpayv1.TxFrame)
	if err := proto.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("%w: tx frame: %v", ErrMalformed, err)
	}
	hdr, err := decodeHeader(m.GetHeader())
	if err != nil {
		return nil, err
	}
	if err := checkObjects("tx", len(m.GetTxs())); err != nil {
		return nil, err
	}
	f := &txFrame{header: hdr, txs: make([]*TxMessage, len(m.GetTxs()))}
	for i, req := range m.GetTxs() {
		if req.GetTx() == nil {
			return nil, fmt.Errorf("%w: tx %d of the frame has no transaction", ErrMalformed, i)
		}
		if size := proto.Size(req); size > MaxTxSize {
			return nil, fmt.Errorf("%w: tx %d of the frame is %d bytes, limit %d", ErrTooLarge, i, size, MaxTxSize)
		}
		h, err := TxHash(req)
		if err != nil {
			return nil, fmt.Errorf("tx %d of the frame: %w", i, err)
		}
		f.txs[i] = &TxMessage{Request: req, TxHash: h}
	}
	return f, nil
}

// decodeBulletinFrame is stage 1 of the bulletin topic. It decodes
// straight into domain types (fastpayv1.DecodeBulletinFrame), accepting
// and rejecting what proto.Unmarshal and the conversions would.
func decodeBulletinFrame(data []byte) (*bulletinFrame, error) {
	if err := checkFrameSize("bulletin", data); err != nil {
		return nil, err
	}
	d, err := fastpayv1.DecodeBulletinFrame(data, MaxFrameObjects)
	hdr, err := checkDecoded("bulletin", d, err)
	if err != nil {
		return nil, err
	}
	f := &bulletinFrame{header: hdr, qcs: d.QCs}
	if len(d.Certs) > 0 {
		f.certs = make([]*qc.Certificate, len(d.Certs))
		for i := range d.Certs {
			f.certs[i] = &d.Certs[i]
		}
	}
	if len(d.Pairs) > 0 {
		f.pairs = make([]*qc.Equivocation, len(d.Pairs))
		for i := range d.Pairs {
			f.pairs[i] = &d.Pairs[i]
		}
	}
	return f, nil
}

// decodeQCFrame is stage 1 of a QC topic, decoded as bulletin frames are.
func decodeQCFrame(data []byte) (*qcFrame, error) {
	if err := checkFrameSize("qc", data); err != nil {
		return nil, err
	}
	d, err := fastpayv1.DecodeQCFrame(data, MaxFrameObjects)
	hdr, err := checkDecoded("qc", d, err)
	if err != nil {
		return nil, err
	}
	return &qcFrame{header: hdr, qcs: d.QCs}, nil
}

// checkDecoded makes the checks that follow a bulletin or QC frame's
// decoding, in the order the verdicts take precedence: wire format,
// header, object count, then the objects themselves (a QC without
// certificates converts but proves nothing).
func checkDecoded(what string, d *fastpayv1.DecodedFrame, err error) (FrameHeader, error) {
	if err != nil {
		return FrameHeader{}, fmt.Errorf("%w: %s frame: %v", ErrMalformed, what, err)
	}
	hdr, err := frameHeader(d.Publisher, d.Seq)
	if err != nil {
		return hdr, err
	}
	if err := checkObjects(what, d.Objects); err != nil {
		return hdr, err
	}
	if d.Invalid != nil {
		return hdr, fmt.Errorf("%w: %v", ErrMalformed, d.Invalid)
	}
	for i, q := range d.QCs {
		if len(q.Certs) == 0 {
			return hdr, fmt.Errorf("%w: qc %d of the frame has no certificates", ErrMalformed, i)
		}
	}
	return hdr, nil
}

// TxHash computes the tx_hash of a request's transaction (SPEC §2.1).
func TxHash(req *fastpayv1.SubmitFastPayRequest) (qc.Hash, error) {
	in, err := req.GetTx().TxHashInput()
	if err != nil {
		return qc.Hash{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return qc.TxHash(in), nil
}

// DecodeFrame parses a frame of kind k the way a validator's first stage
// does (size, wire format, header, object conversion; nothing verified)
// and returns the number of objects it carries. Tools and fuzz targets use
// it; the mesh decodes internally.
func DecodeFrame(k TopicKind, data []byte) (FrameHeader, int, error) {
	switch k {
	case KindTx:
		f, err := decodeTxFrame(data)
		if err != nil {
			return FrameHeader{}, 0, err
		}
		return f.header, len(f.txs), nil
	case KindBulletin:
		f, err := decodeBulletinFrame(data)
		if err != nil {
			return FrameHeader{}, 0, err
		}
		return f.header, len(f.certs) + len(f.qcs) + 2*len(f.pairs), nil
	case KindQC:
		f, err := decodeQCFrame(data)
		if err != nil {
			return FrameHeader{}, 0, err
		}
		return f.header, len(f.qcs), nil
	}
	return FrameHeader{}, 0, fmt.Errorf("p2p: unknown topic kind %d", k)
}
