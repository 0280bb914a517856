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

// TxMessage is a decoded tx-topic message: the request and its tx_hash,
// computed once on ingress so no later stage hashes again.
type TxMessage struct {
	Request *fastpayv1.SubmitFastPayRequest
	TxHash  qc.Hash
	// Decoded is set by the caller's stateful validator to whatever it
	// derived from Request (for example the decoded, sender-recovered
	// payment), so delivery handlers reuse it instead of decoding again.
	// Unset for local publishes.
	Decoded any
}

// BulletinItem is a decoded bulletin-topic message: exactly one of Cert and
// QC is set.
type BulletinItem struct {
	Cert *qc.Certificate
	QC   *qc.QC
}

// DecodeTx parses a tx-topic payload (at most MaxTxMessageSize bytes). It
// requires the request to carry a transaction; field-level checks are left
// to TxHash and the caller's validator.
func DecodeTx(data []byte) (*fastpayv1.SubmitFastPayRequest, error) {
	if len(data) > MaxTxMessageSize {
		return nil, fmt.Errorf("%w: tx message of %d bytes, limit %d", ErrTooLarge, len(data), MaxTxMessageSize)
	}
	req := new(fastpayv1.SubmitFastPayRequest)
	if err := proto.Unmarshal(data, req); err != nil {
		return nil, fmt.Errorf("%w: tx message: %v", ErrMalformed, err)
	}
	if req.GetTx() == nil {
		return nil, fmt.Errorf("%w: tx message without tx", ErrMalformed)
	}
	return req, nil
}

// DecodeBulletin parses a bulletin-topic payload (at most
// MaxBulletinMessageSize bytes) and requires exactly one item.
func DecodeBulletin(data []byte) (*fastpayv1.BulletinMessage, error) {
	if len(data) > MaxBulletinMessageSize {
		return nil, fmt.Errorf("%w: bulletin message of %d bytes, limit %d", ErrTooLarge, len(data), MaxBulletinMessageSize)
	}
	m := new(fastpayv1.BulletinMessage)
	if err := proto.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("%w: bulletin message: %v", ErrMalformed, err)
	}
	switch m.GetItem().(type) {
	case *fastpayv1.BulletinMessage_Cert, *fastpayv1.BulletinMessage_Qc:
		return m, nil
	}
	return nil, fmt.Errorf("%w: bulletin message carries neither cert nor qc", ErrMalformed)
}

// DecodeQC parses a QC-topic payload (at most MaxQCMessageSize bytes): a
// bare QuorumCertificate.
func DecodeQC(data []byte) (*fastpayv1.QuorumCertificate, error) {
	if len(data) > MaxQCMessageSize {
		return nil, fmt.Errorf("%w: qc message of %d bytes, limit %d", ErrTooLarge, len(data), MaxQCMessageSize)
	}
	m := new(fastpayv1.QuorumCertificate)
	if err := proto.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("%w: qc message: %v", ErrMalformed, err)
	}
	return m, nil
}

// TxHash computes the tx_hash of a request's transaction (SPEC §2.1).
func TxHash(req *fastpayv1.SubmitFastPayRequest) (qc.Hash, error) {
	in, err := req.GetTx().TxHashInput()
	if err != nil {
		return qc.Hash{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return qc.TxHash(in), nil
}

// decodeTxMessage is stage 1 of the tx topic: decode and hash. The message
// id function uses it too, so an id always names what the validator sees.
func decodeTxMessage(data []byte) (*TxMessage, error) {
	req, err := DecodeTx(data)
	if err != nil {
		return nil, err
	}
	h, err := TxHash(req)
	if err != nil {
		return nil, err
	}
	return &TxMessage{Request: req, TxHash: h}, nil
}

// decodeBulletinItem is stage 1 of the bulletin topic: decode and convert
// to domain types (lengths checked, nothing verified).
func decodeBulletinItem(data []byte) (*BulletinItem, error) {
	m, err := DecodeBulletin(data)
	if err != nil {
		return nil, err
	}
	switch it := m.GetItem().(type) {
	case *fastpayv1.BulletinMessage_Cert:
		c, err := it.Cert.ToCertificate()
		if err != nil {
			return nil, fmt.Errorf("%w: bulletin cert: %v", ErrMalformed, err)
		}
		return &BulletinItem{Cert: &c}, nil
	default: // *fastpayv1.BulletinMessage_Qc, guaranteed by DecodeBulletin
		q, err := m.GetQc().ToQC()
		if err != nil {
			return nil, fmt.Errorf("%w: bulletin qc: %v", ErrMalformed, err)
		}
		return &BulletinItem{QC: q}, nil
	}
}

// decodeQCMessage is stage 1 of a QC topic.
func decodeQCMessage(data []byte) (*qc.QC, error) {
	m, err := DecodeQC(data)
	if err != nil {
		return nil, err
	}
	q, err := m.ToQC()
	if err != nil {
		return nil, fmt.Errorf("%w: qc: %v", ErrMalformed, err)
	}
	if len(q.Certs) == 0 {
		return nil, fmt.Errorf("%w: qc without certificates", ErrMalformed)
	}
	return q, nil
}

// encodeTx, encodeBulletin and encodeQC produce topic payloads and check
// the size limit before anything is sent (a peer would reject more).
func encodeTx(req *fastpayv1.SubmitFastPayRequest) ([]byte, error) {
	return encodeLimited(req, MaxTxMessageSize, "tx")
}

func encodeBulletin(m *fastpayv1.BulletinMessage) ([]byte, error) {
	return encodeLimited(m, MaxBulletinMessageSize, "bulletin")
}

func encodeQC(q *fastpayv1.QuorumCertificate) ([]byte, error) {
	return encodeLimited(q, MaxQCMessageSize, "qc")
}

func encodeLimited(m proto.Message, limit int, what string) ([]byte, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s message: %w", what, err)
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%w: %s message of %d bytes, limit %d", ErrTooLarge, what, len(b), limit)
	}
	return b, nil
}
