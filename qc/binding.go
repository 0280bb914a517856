package qc

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
)

// BindingDomainTag separates binding signatures from every other signature
// a consensus key makes.
const BindingDomainTag = "tempo.fastpay.binding.v1"

// A Binding is a validator's consensus key vouching for the sidecar key that
// signs in the mesh on its behalf (SPEC §5a): the consensus key never enters
// the sidecar. It takes effect at FirstEpoch and replaces the consensus
// key's bindings with a lower FirstEpoch.
//
// The sidecar key signs the same digest: without its consent anyone could
// bind another validator's published sidecar key to their own seat, and a
// sidecar key claimed by two seats signs for neither.
type Binding struct {
	ChainID          uint64
	ConsensusKey     ValidatorID // the ed25519 key in the chain's validator set
	SidecarKey       ValidatorID // the key the sidecar signs certificates with
	FirstEpoch       uint64
	Signature        [SignatureSize]byte // by ConsensusKey over BindingDigest
	SidecarSignature [SignatureSize]byte // by SidecarKey over BindingDigest
}

// BindingDigest is what a binding's consensus key signs:
// sha256(tag ‖ chain_id ‖ consensus_key ‖ sidecar_key ‖ first_epoch), with
// integers as 8 big-endian bytes.
func BindingDigest(chainID uint64, consensusKey, sidecarKey ValidatorID, firstEpoch uint64) Hash {
	e := make(encoder, 0, len(BindingDomainTag)+8+32+32+8)
	e = e.str(BindingDomainTag)
	e = e.u64(chainID)
	e = e.raw(consensusKey[:])
	e = e.raw(sidecarKey[:])
	e = e.u64(firstEpoch)
	return sha256.Sum256(e)
}

// SignBinding returns the binding of sidecarKey by consensusKey, signed by
// both.
func SignBinding(consensusKey, sidecarKey ed25519.PrivateKey, chainID uint64, firstEpoch uint64) (Binding, error) {
	if len(consensusKey) != ed25519.PrivateKeySize {
		return Binding{}, fmt.Errorf("qc: consensus key of %d bytes", len(consensusKey))
	}
	if len(sidecarKey) != ed25519.PrivateKeySize {
		return Binding{}, fmt.Errorf("qc: sidecar key of %d bytes", len(sidecarKey))
	}
	ck, err := ValidatorIDFromBytes(consensusKey.Public().(ed25519.PublicKey))
	if err != nil {
		return Binding{}, err
	}
	sk, err := ValidatorIDFromBytes(sidecarKey.Public().(ed25519.PublicKey))
	if err != nil {
		return Binding{}, err
	}
	b := Binding{ChainID: chainID, ConsensusKey: ck, SidecarKey: sk, FirstEpoch: firstEpoch}
	d := b.Digest()
	copy(b.Signature[:], sign(consensusKey, d[:]))
	copy(b.SidecarSignature[:], sign(sidecarKey, d[:]))
	return b, nil
}

// Digest returns the binding's BindingDigest.
func (b *Binding) Digest() Hash {
	return BindingDigest(b.ChainID, b.ConsensusKey, b.SidecarKey, b.FirstEpoch)
}

// Errors of CheckBinding, matched with errors.Is.
var (
	ErrBindingSignature = errors.New("qc: binding signature does not verify under its consensus key")
	ErrBindingChain     = errors.New("qc: binding is for another chain")
	ErrBindingInactive  = errors.New("qc: binding's consensus key is not an active validator")
	ErrBindingSelf      = errors.New("qc: binding binds the consensus key to itself")
	// ErrBindingSidecarSignature: the sidecar key did not consent.
	ErrBindingSidecarSignature = errors.New("qc: binding signature does not verify under its sidecar key")
)

// CheckBinding verifies b for chainID against the consensus keys active in
// the validator set it is used with: both signatures (ZIP215, the mesh's one
// signature rule), the chain, and that the consensus key is active. A
// sidecar key equal to the consensus key is refused: the consensus key must
// never be in a sidecar.
func CheckBinding(b *Binding, chainID uint64, active func(ValidatorID) bool) error {
	switch {
	case b.ChainID != chainID:
		return fmt.Errorf("%w: chain %d, want %d", ErrBindingChain, b.ChainID, chainID)
	case b.SidecarKey == b.ConsensusKey:
		return ErrBindingSelf
	case !active(b.ConsensusKey):
		return fmt.Errorf("%w: %s", ErrBindingInactive, b.ConsensusKey)
	}
	d := b.Digest()
	if !verifyZIP215(b.ConsensusKey, d[:], b.Signature[:]) {
		return fmt.Errorf("%w: consensus key %s", ErrBindingSignature, b.ConsensusKey)
	}
	if !verifyZIP215(b.SidecarKey, d[:], b.SidecarSignature[:]) {
		return fmt.Errorf("%w: sidecar key %s", ErrBindingSidecarSignature, b.SidecarKey)
	}
	return nil
}
