package client

import (
	"encoding/hex"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// MarshalQC encodes q as a QuorumCertificate protobuf.
func MarshalQC(q *qc.QC) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(fastpayv1.NewQuorumCertificate(q))
}

// UnmarshalQC decodes a QuorumCertificate protobuf and verifies it against
// committee: a QC read from a file or a peer is trusted only once verified.
func UnmarshalQC(b []byte, committee *qc.Committee) (*qc.QC, error) {
	var w fastpayv1.QuorumCertificate
	if err := proto.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("QC protobuf: %w", err)
	}
	q, err := w.ToQC()
	if err != nil {
		return nil, err
	}
	if committee == nil {
		return nil, fmt.Errorf("%w: no committee to verify against", ErrUnverifiedQC)
	}
	if err := committee.VerifyQC(q); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnverifiedQC, err)
	}
	return q, nil
}

// EncodeQCHex is MarshalQC in hex with a trailing newline: the text form of
// `allegro pay --qc-out` files.
func EncodeQCHex(q *qc.QC) (string, error) {
	b, err := MarshalQC(q)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(b) + "\n", nil
}

// DecodeQCHex reads EncodeQCHex's form (surrounding space and a 0x prefix
// are allowed) and verifies the QC against committee.
func DecodeQCHex(s string, committee *qc.Committee) (*qc.QC, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "0x")
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("QC: not hex: %w", err)
	}
	return UnmarshalQC(b, committee)
}

// DecodeQCHexOf is DecodeQCHex verifying against committeeOf(epoch), the
// committee of the epoch the QC carries (of fallback's epoch when it
// carries none), on a network whose committee changes with epochs.
func DecodeQCHexOf(s string, fallback *qc.Committee, committeeOf func(uint64) *qc.Committee) (*qc.QC, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "0x")
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("QC: not hex: %w", err)
	}
	var w fastpayv1.QuorumCertificate
	if err := proto.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("QC protobuf: %w", err)
	}
	return UnmarshalQC(b, committeeFor(fallback, committeeOf, w.GetEpoch()))
}
