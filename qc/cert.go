package qc

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
)

// ValidatorID identifies a committee member: its 32-byte ed25519 public key.
type ValidatorID [32]byte

// Hex returns the 0x-prefixed lowercase hex form.
func (id ValidatorID) Hex() string { return "0x" + hex.EncodeToString(id[:]) }

// String returns a short form for logs.
func (id ValidatorID) String() string { return hex.EncodeToString(id[:4]) }

// PublicKey returns the id as an ed25519 public key.
func (id ValidatorID) PublicKey() ed25519.PublicKey { return ed25519.PublicKey(id[:]) }

// ValidatorIDFromBytes converts a 32-byte slice.
func ValidatorIDFromBytes(b []byte) (ValidatorID, error) {
	var id ValidatorID
	if len(b) != len(id) {
		return id, fmt.Errorf("validator id must be 32 bytes, got %d", len(b))
	}
	copy(id[:], b)
	return id, nil
}

// SignatureSize is the size of a certificate signature.
const SignatureSize = ed25519.SignatureSize

// Certificate is one validator's signed statement that it accepted the
// transaction TxHash with effects EffectsHash.
type Certificate struct {
	Signer     ValidatorID
	SignerName string
	TxHash     Hash
	// EffectsHash is what the signature covers; Effects is the summary it
	// must be the hash of.
	EffectsHash       Hash
	Effects           Effects
	Signature         [SignatureSize]byte
	CreatedUnixMillis uint64
}

// Errors returned by certificate and QC checks; match them with errors.Is.
var (
	ErrUnknownSigner   = errors.New("signer is not a committee member")
	ErrBadSignature    = errors.New("signature does not verify")
	ErrEffectsMismatch = errors.New("effects summary does not match effects_hash")
	ErrHashMismatch    = errors.New("certificate is for a different transaction or effects")
	ErrDuplicateSigner = errors.New("duplicate signer")
	ErrBelowQuorum     = errors.New("fewer certificates than the quorum")
	ErrQCHashMismatch  = errors.New("qc_hash does not match the certificates")
	ErrWrongEpoch      = errors.New("qc is of another epoch than the committee")
)

// Signer signs certificates for one validator in one domain.
type Signer struct {
	key    ed25519.PrivateKey
	id     ValidatorID
	name   string
	domain Domain
}

// NewSigner returns a signer for key in domain.
func NewSigner(key ed25519.PrivateKey, name string, domain Domain) *Signer {
	s := &Signer{key: key, name: name, domain: domain}
	copy(s.id[:], key.Public().(ed25519.PublicKey))
	return s
}

// ID returns the signer's validator id.
func (s *Signer) ID() ValidatorID { return s.id }

// Name returns the signer's human-readable name.
func (s *Signer) Name() string { return s.name }

// Domain returns the domain the signer signs in.
func (s *Signer) Domain() Domain { return s.domain }

// Sign certifies txHash with effects at createdUnixMillis.
func (s *Signer) Sign(txHash Hash, effects Effects, createdUnixMillis uint64) Certificate {
	c := Certificate{
		Signer:            s.id,
		SignerName:        s.name,
		TxHash:            txHash,
		EffectsHash:       effects.Hash(),
		Effects:           effects,
		CreatedUnixMillis: createdUnixMillis,
	}
	digest := CertDigest(s.domain, c.TxHash, c.EffectsHash)
	copy(c.Signature[:], sign(s.key, digest[:]))
	return c
}

// VerifySignature checks c's signature against its signer key in domain d
// under the mesh's ZIP215 rule. It does not check committee membership.
func (c *Certificate) VerifySignature(d Domain) error {
	digest := CertDigest(d, c.TxHash, c.EffectsHash)
	if !verifyZIP215(c.Signer, digest[:], c.Signature[:]) {
		return c.signatureError(d)
	}
	return nil
}

func (c *Certificate) signatureError(d Domain) error {
	return fmt.Errorf("%w: certificate by %s for tx %s under chain %d epoch %d", ErrBadSignature, c.Signer.Hex(), c.TxHash, d.ChainID, d.Epoch)
}

// CheckEffects verifies that the effects summary hashes to EffectsHash.
func (c *Certificate) CheckEffects() error {
	if c.Effects.Hash() != c.EffectsHash {
		return fmt.Errorf("%w: certificate by %s for tx %s", ErrEffectsMismatch, c.Signer.Hex(), c.TxHash)
	}
	return nil
}
