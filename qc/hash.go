package qc

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// Tags prefixing each canonical preimage. They are written as raw bytes
// without a length prefix.
const (
	txHashTag       = "tempo.fastpay.tx.v1"
	effectsHashTag  = "tempo.fastpay.effects.v1"
	qcHashTag       = "tempo.fastpay.qc.v1"
	certPreimageTag = "tempo.fastpay.cert.preimage.v1"
	committeeTag    = "tempo.fastpay.committee.v1"

	// CertDomainTag and ProtocolVersion are bound into every certificate
	// signature.
	CertDomainTag          = "tempo.fastpay.cert.v1"
	ProtocolVersion uint16 = 1
)

// Hash is a 32-byte SHA-256 digest (tx hash, effects hash, QC hash).
type Hash [32]byte

// Hex returns the 0x-prefixed lowercase hex form.
func (h Hash) Hex() string { return "0x" + hex.EncodeToString(h[:]) }

// String implements fmt.Stringer.
func (h Hash) String() string { return h.Hex() }

// IsZero reports whether h is all zeros.
func (h Hash) IsZero() bool { return h == Hash{} }

// HashFromBytes converts a 32-byte slice.
func HashFromBytes(b []byte) (Hash, error) {
	var h Hash
	if len(b) != len(h) {
		return h, fmt.Errorf("hash must be 32 bytes, got %d", len(b))
	}
	copy(h[:], b)
	return h, nil
}

// Address is a 20-byte account or token address.
type Address [20]byte

// Hex returns the 0x-prefixed lowercase hex form.
func (a Address) Hex() string { return "0x" + hex.EncodeToString(a[:]) }

// String implements fmt.Stringer.
func (a Address) String() string { return a.Hex() }

// NonceKey is a Tempo nonce key: a U256 as 32 big-endian bytes.
type NonceKey [32]byte

// ExpiryKind says how an Expiry is measured.
type ExpiryKind uint8

// Expiry kinds; the values are the canonical tag bytes.
const (
	ExpiryMaxBlockHeight ExpiryKind = 0
	ExpiryUnixMillis     ExpiryKind = 1
)

// Expiry bounds the validity of a FastPay transaction.
type Expiry struct {
	Kind  ExpiryKind
	Value uint64
}

// TxHashInput is everything tx_hash commits to.
type TxHashInput struct {
	ChainID  uint64
	TempoTx  []byte
	NonceKey NonceKey
	NonceSeq uint64
	Expiry   Expiry
	// ParentQCHash is nil when the transaction has no parent.
	ParentQCHash *Hash
}

// encoder appends canonical big-endian fields.
type encoder []byte

// The encoder's methods return the extended encoding rather than append
// through a pointer, so that an encoding built on a local buffer stays on
// the stack.
func (e encoder) raw(b []byte) encoder       { return append(e, b...) }
func (e encoder) str(s string) encoder       { return append(e, s...) }
func (e encoder) u8(v uint8) encoder         { return append(e, v) }
func (e encoder) u16(v uint16) encoder       { return binary.BigEndian.AppendUint16(e, v) }
func (e encoder) u32(v uint32) encoder       { return binary.BigEndian.AppendUint32(e, v) }
func (e encoder) u64(v uint64) encoder       { return binary.BigEndian.AppendUint64(e, v) }
func (e encoder) lenBytes(b []byte) encoder  { return e.u32(uint32(len(b))).raw(b) }
func (e encoder) lenString(s string) encoder { return e.u32(uint32(len(s))).str(s) }

// TxHash computes tx_hash (SPEC §2.1).
func TxHash(in TxHashInput) Hash {
	var buf [512]byte
	e := encoder(buf[:0])
	if need := len(txHashTag) + 8 + 4 + len(in.TempoTx) + 32 + 8 + 9 + 33; need > len(buf) {
		e = make(encoder, 0, need)
	}
	e = e.str(txHashTag)
	e = e.u64(in.ChainID)
	e = e.lenBytes(in.TempoTx)
	e = e.raw(in.NonceKey[:])
	e = e.u64(in.NonceSeq)
	e = e.u8(uint8(in.Expiry.Kind))
	e = e.u64(in.Expiry.Value)
	if in.ParentQCHash != nil {
		e = e.u8(1)
		e = e.raw(in.ParentQCHash[:])
	} else {
		e = e.u8(0)
	}
	return sha256.Sum256(e)
}

// Effects is what a certificate attests a transaction does: the payment and
// the nonce it consumes. Its hash is effects_hash.
type Effects struct {
	Sender    Address
	Recipient Address
	Amount    uint64
	Asset     Address
	NonceKey  NonceKey
	NonceSeq  uint64
}

// Hash computes effects_hash (SPEC §2.1).
func (f Effects) Hash() Hash {
	e := make(encoder, 0, len(effectsHashTag)+20+20+8+20+32+8)
	e = e.str(effectsHashTag)
	e = e.raw(f.Sender[:])
	e = e.raw(f.Recipient[:])
	e = e.u64(f.Amount)
	e = e.raw(f.Asset[:])
	e = e.raw(f.NonceKey[:])
	e = e.u64(f.NonceSeq)
	return sha256.Sum256(e)
}

// ContentionKey returns the (sender, nonce_key, nonce_seq) key a validator
// signs at most once.
func (f Effects) ContentionKey() ContentionKey {
	return ContentionKey{Sender: f.Sender, NonceKey: f.NonceKey, NonceSeq: f.NonceSeq}
}

// ContentionKey is the unit of the equivocation guard.
type ContentionKey struct {
	Sender   Address
	NonceKey NonceKey
	NonceSeq uint64
}

// String renders the key for logs and errors.
func (k ContentionKey) String() string {
	return fmt.Sprintf("%s/%x/%d", k.Sender.Hex(), k.NonceKey[:], k.NonceSeq)
}

// Domain binds certificates to one chain and committee epoch.
type Domain struct {
	ChainID uint64
	Epoch   uint64
}

// CertPreimage returns the bytes whose SHA-256 a validator signs.
func CertPreimage(d Domain, txHash, effectsHash Hash) []byte {
	return appendCertPreimage(make([]byte, 0, certPreimageSize), d, txHash, effectsHash)
}

const certPreimageSize = len(certPreimageTag) + 4 + len(CertDomainTag) + 2 + 8 + 8 + 64

func appendCertPreimage(b []byte, d Domain, txHash, effectsHash Hash) []byte {
	e := encoder(b)
	e = e.str(certPreimageTag)
	e = e.lenString(CertDomainTag)
	e = e.u16(ProtocolVersion)
	e = e.u64(d.ChainID)
	e = e.u64(d.Epoch)
	e = e.raw(txHash[:])
	e = e.raw(effectsHash[:])
	return e
}

// CertDigest is SHA256(CertPreimage): the 32-byte message signed with ed25519.
func CertDigest(d Domain, txHash, effectsHash Hash) Hash {
	var buf [certPreimageSize]byte
	return sha256.Sum256(appendCertPreimage(buf[:0], d, txHash, effectsHash))
}
