package apiserver

// The JSON encoding of certificates, QCs and board events shared by the HTTP
// API and the dashboard. Conventions:
//   - bytes are 0x-prefixed lowercase hex strings (input: with or without 0x);
//   - u64 values are decimal strings (input: decimal string or JSON integer),
//     because JavaScript numbers lose precision above 2^53;
//   - a signer is {"name", "id"} with id the 32-byte ed25519 public key;
//   - effects are {sender, recipient, amount, asset, nonce_key, nonce_seq}.

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/bulletin"
	"github.com/allegro-mesh/allegro/qc"
)

// U64 is a uint64 encoded as a JSON decimal string. It decodes from a decimal
// string or a non-negative JSON integer.
type U64 uint64

// MarshalJSON encodes u as a decimal string.
func (u U64) MarshalJSON() ([]byte, error) {
	return strconv.AppendQuote(nil, strconv.FormatUint(uint64(u), 10)), nil
}

// UnmarshalJSON accepts "123" or 123; null leaves u unchanged.
func (u *U64) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	v, err := parseU64JSON(b)
	if err != nil {
		return err
	}
	*u = U64(v)
	return nil
}

// parseU64JSON parses a JSON decimal string or integer literal as a uint64.
func parseU64JSON(b []byte) (uint64, error) {
	b = bytes.TrimSpace(b)
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return 0, errors.New("must be a decimal string or integer")
		}
	}
	return parseDecimalU64(s)
}

// parseDecimalU64 parses plain ASCII digits (no sign, spaces, exponent or
// fraction) as a uint64.
func parseDecimalU64(s string) (uint64, error) {
	if s == "" {
		return 0, errors.New("must be a decimal string or integer, got an empty value")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("must be a non-negative decimal integer, got %q", truncate(s, 40))
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("does not fit in 64 bits: %q", truncate(s, 40))
	}
	return v, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Hex0x returns b as 0x-prefixed lowercase hex.
func Hex0x(b []byte) string { return "0x" + hex.EncodeToString(b) }

// ParseHex decodes hex with or without a 0x prefix. An empty string (or a
// bare "0x") is zero bytes.
func ParseHex(s string) ([]byte, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if len(s)%2 != 0 {
		return nil, fmt.Errorf("hex has an odd number of digits (%d)", len(s))
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		var inv hex.InvalidByteError
		if errors.As(err, &inv) {
			return nil, fmt.Errorf("not hex: invalid character %q", rune(inv))
		}
		return nil, fmt.Errorf("not hex: %v", err)
	}
	return b, nil
}

// parseFixedHex decodes exactly len(dst) bytes of hex into dst.
func parseFixedHex(dst []byte, s, field string) error {
	b, err := ParseHex(s)
	if err != nil {
		return fmt.Errorf("%s: %v", field, err)
	}
	if len(b) != len(dst) {
		return fmt.Errorf("%s: must be %d bytes, got %d", field, len(dst), len(b))
	}
	copy(dst, b)
	return nil
}

// ParseTxHash decodes a 32-byte transaction hash in hex.
func ParseTxHash(s string) (qc.Hash, error) {
	var h qc.Hash
	return h, parseFixedHex(h[:], s, "tx hash")
}

// ParseAddress decodes a 20-byte address in hex.
func ParseAddress(s string) (qc.Address, error) {
	var a qc.Address
	return a, parseFixedHex(a[:], s, "address")
}

// JSONSigner names a certificate's signer.
type JSONSigner struct {
	Name string `json:"name"`
	ID   string `json:"id"`
}

// JSONEffects is the JSON form of qc.Effects.
type JSONEffects struct {
	Sender    string `json:"sender"`
	Recipient string `json:"recipient"`
	Amount    U64    `json:"amount"`
	Asset     string `json:"asset"`
	NonceKey  string `json:"nonce_key"`
	NonceSeq  U64    `json:"nonce_seq"`
}

// NewJSONEffects encodes e.
func NewJSONEffects(e qc.Effects) JSONEffects {
	return JSONEffects{
		Sender: Hex0x(e.Sender[:]), Recipient: Hex0x(e.Recipient[:]), Amount: U64(e.Amount),
		Asset: Hex0x(e.Asset[:]), NonceKey: Hex0x(e.NonceKey[:]), NonceSeq: U64(e.NonceSeq),
	}
}

// ToEffects decodes j; field prefixes error messages.
func (j *JSONEffects) ToEffects(field string) (qc.Effects, error) {
	var e qc.Effects
	if err := parseFixedHex(e.Sender[:], j.Sender, field+".sender"); err != nil {
		return e, err
	}
	if err := parseFixedHex(e.Recipient[:], j.Recipient, field+".recipient"); err != nil {
		return e, err
	}
	if err := parseFixedHex(e.Asset[:], j.Asset, field+".asset"); err != nil {
		return e, err
	}
	if err := parseFixedHex(e.NonceKey[:], j.NonceKey, field+".nonce_key"); err != nil {
		return e, err
	}
	e.Amount, e.NonceSeq = uint64(j.Amount), uint64(j.NonceSeq)
	return e, nil
}

// JSONCertificate is the JSON form of a validator certificate.
type JSONCertificate struct {
	Signer            JSONSigner  `json:"signer"`
	TxHash            string      `json:"tx_hash"`
	EffectsHash       string      `json:"effects_hash"`
	Effects           JSONEffects `json:"effects"`
	Signature         string      `json:"signature"`
	CreatedUnixMillis U64         `json:"created_unix_millis"`
}

// NewJSONCertificate encodes c.
func NewJSONCertificate(c *qc.Certificate) JSONCertificate {
	return JSONCertificate{
		Signer:            JSONSigner{Name: c.SignerName, ID: Hex0x(c.Signer[:])},
		TxHash:            Hex0x(c.TxHash[:]),
		EffectsHash:       Hex0x(c.EffectsHash[:]),
		Effects:           NewJSONEffects(c.Effects),
		Signature:         Hex0x(c.Signature[:]),
		CreatedUnixMillis: U64(c.CreatedUnixMillis),
	}
}

// ToCertificate decodes j, checking lengths only (not the signature).
func (j *JSONCertificate) ToCertificate(field string) (qc.Certificate, error) {
	var c qc.Certificate
	if err := parseFixedHex(c.Signer[:], j.Signer.ID, field+".signer.id"); err != nil {
		return c, err
	}
	c.SignerName = j.Signer.Name
	if err := parseFixedHex(c.TxHash[:], j.TxHash, field+".tx_hash"); err != nil {
		return c, err
	}
	if err := parseFixedHex(c.EffectsHash[:], j.EffectsHash, field+".effects_hash"); err != nil {
		return c, err
	}
	var err error
	if c.Effects, err = j.Effects.ToEffects(field + ".effects"); err != nil {
		return c, err
	}
	if err := parseFixedHex(c.Signature[:], j.Signature, field+".signature"); err != nil {
		return c, err
	}
	c.CreatedUnixMillis = uint64(j.CreatedUnixMillis)
	return c, nil
}

// JSONQC is the JSON form of a quorum certificate. ProtoHex carries the
// protobuf QuorumCertificate bytes so a client can hand the QC back as a
// parent QC without re-encoding it.
type JSONQC struct {
	TxHash      string            `json:"tx_hash"`
	EffectsHash string            `json:"effects_hash"`
	QCHash      string            `json:"qc_hash"`
	Threshold   uint32            `json:"threshold"`
	Certs       []JSONCertificate `json:"certs"`
	// Epoch is the committee epoch whose members signed (0: not carried).
	Epoch    uint64 `json:"epoch,omitempty"`
	ProtoHex string `json:"proto_hex,omitempty"`
}

// NewJSONQC encodes q, including its protobuf bytes.
func NewJSONQC(q *qc.QC) JSONQC {
	j := JSONQC{
		TxHash: Hex0x(q.TxHash[:]), EffectsHash: Hex0x(q.EffectsHash[:]), QCHash: Hex0x(q.Hash[:]),
		Threshold: q.Threshold, Certs: make([]JSONCertificate, len(q.Certs)), Epoch: q.Epoch,
	}
	for i := range q.Certs {
		j.Certs[i] = NewJSONCertificate(&q.Certs[i])
	}
	if b, err := proto.Marshal(fastpayv1.NewQuorumCertificate(q)); err == nil {
		j.ProtoHex = Hex0x(b)
	}
	return j
}

// ToProto returns the wire QC that j describes, without verifying it. When
// ProtoHex is set, those bytes are authoritative and any tx_hash or qc_hash
// also given must agree with them; otherwise the JSON fields are converted.
func (j *JSONQC) ToProto(field string) (*fastpayv1.QuorumCertificate, error) {
	if j.ProtoHex != "" {
		b, err := ParseHex(j.ProtoHex)
		if err != nil {
			return nil, fmt.Errorf("%s.proto_hex: %v", field, err)
		}
		pq, err := ParseQCProto(b)
		if err != nil {
			return nil, fmt.Errorf("%s.proto_hex: %v", field, err)
		}
		for _, c := range []struct {
			name, got string
			want      []byte
		}{{"tx_hash", j.TxHash, pq.TxHash}, {"qc_hash", j.QCHash, pq.QcHash}} {
			if c.got == "" {
				continue
			}
			b, err := ParseHex(c.got)
			if err != nil {
				return nil, fmt.Errorf("%s.%s: %v", field, c.name, err)
			}
			if !bytes.Equal(b, c.want) {
				return nil, fmt.Errorf("%s.%s does not match the QC in proto_hex", field, c.name)
			}
		}
		return pq, nil
	}
	q, err := j.ToQC(field)
	if err != nil {
		return nil, err
	}
	return fastpayv1.NewQuorumCertificate(q), nil
}

// ToQC decodes the JSON fields of j (ignoring ProtoHex), checking lengths
// only; verify the result with qc.Committee.VerifyQC.
func (j *JSONQC) ToQC(field string) (*qc.QC, error) {
	if len(j.Certs) > fastpayv1.MaxQCCerts {
		return nil, fmt.Errorf("%s.certs: %d certificates, at most %d allowed", field, len(j.Certs), fastpayv1.MaxQCCerts)
	}
	q := &qc.QC{Threshold: j.Threshold, Epoch: j.Epoch, Certs: make([]qc.Certificate, len(j.Certs))}
	if err := parseFixedHex(q.TxHash[:], j.TxHash, field+".tx_hash"); err != nil {
		return nil, err
	}
	if err := parseFixedHex(q.EffectsHash[:], j.EffectsHash, field+".effects_hash"); err != nil {
		return nil, err
	}
	if err := parseFixedHex(q.Hash[:], j.QCHash, field+".qc_hash"); err != nil {
		return nil, err
	}
	for i := range j.Certs {
		c, err := j.Certs[i].ToCertificate(fmt.Sprintf("%s.certs[%d]", field, i))
		if err != nil {
			return nil, err
		}
		q.Certs[i] = c
	}
	return q, nil
}

// ParseQCProto decodes protobuf QuorumCertificate bytes and checks their
// shape (lengths, certificate count); it does not verify signatures.
func ParseQCProto(b []byte) (*fastpayv1.QuorumCertificate, error) {
	pq := new(fastpayv1.QuorumCertificate)
	if err := proto.Unmarshal(b, pq); err != nil {
		return nil, fmt.Errorf("not a protobuf QuorumCertificate: %v", err)
	}
	if _, err := pq.ToQC(); err != nil {
		return nil, err
	}
	return pq, nil
}

// JSONContentionKey is the (sender, nonce_key, nonce_seq) a validator signs
// at most once.
type JSONContentionKey struct {
	Sender   string `json:"sender"`
	NonceKey string `json:"nonce_key"`
	NonceSeq U64    `json:"nonce_seq"`
}

// JSONEquivocation is evidence that a signer certified two transactions (or
// two effects) for one contention key.
type JSONEquivocation struct {
	Signer JSONSigner        `json:"signer"`
	Key    JSONContentionKey `json:"key"`
	First  JSONCertificate   `json:"first"`
	Second JSONCertificate   `json:"second"`
}

// NewJSONEquivocation encodes e.
func NewJSONEquivocation(e *qc.Equivocation) JSONEquivocation {
	k := e.Key()
	return JSONEquivocation{
		Signer: JSONSigner{Name: e.First.SignerName, ID: Hex0x(e.First.Signer[:])},
		Key:    JSONContentionKey{Sender: Hex0x(k.Sender[:]), NonceKey: Hex0x(k.NonceKey[:]), NonceSeq: U64(k.NonceSeq)},
		First:  NewJSONCertificate(&e.First),
		Second: NewJSONCertificate(&e.Second),
	}
}

// JSONReject is a validation reject: code is the RejectCode name.
type JSONReject struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// JSONEvent is one bulletin-board event as sent on /api/v1/events (the data
// line; the SSE event name is Kind).
type JSONEvent struct {
	Kind        string            `json:"kind"`
	TxHash      string            `json:"tx_hash"`
	UnixMillis  U64               `json:"unix_millis"`
	Sender      string            `json:"sender,omitempty"`
	Recipient   string            `json:"recipient,omitempty"`
	Certificate *JSONCertificate  `json:"certificate,omitempty"`
	QC          *JSONQC           `json:"qc,omitempty"`
	Stage       string            `json:"stage,omitempty"`
	BlockHeight U64               `json:"block_height,omitempty"`
	Evidence    *JSONEquivocation `json:"evidence,omitempty"`
	Reason      string            `json:"reason,omitempty"`
}

// NewJSONEvent encodes a board event.
func NewJSONEvent(ev *bulletin.Event) JSONEvent {
	j := JSONEvent{Kind: ev.Kind.String(), TxHash: Hex0x(ev.TxHash[:]), UnixMillis: U64(ev.UnixMillis)}
	if ev.Sender != (qc.Address{}) {
		j.Sender = ev.Sender.Hex()
	}
	if ev.Recipient != (qc.Address{}) {
		j.Recipient = ev.Recipient.Hex()
	}
	switch ev.Kind {
	case bulletin.EventCertificate:
		if ev.Cert != nil {
			c := NewJSONCertificate(ev.Cert)
			j.Certificate = &c
		}
	case bulletin.EventQC:
		if ev.QC != nil {
			q := NewJSONQC(ev.QC)
			j.QC = &q
		}
	case bulletin.EventLifecycle:
		j.Stage = ev.Stage.String()
		j.BlockHeight = U64(ev.BlockHeight)
	case bulletin.EventEquivocation:
		if ev.Evidence != nil {
			e := NewJSONEquivocation(ev.Evidence)
			j.Evidence = &e
		}
	case bulletin.EventSettlementFailure:
		j.Reason = ev.Reason
	}
	return j
}
