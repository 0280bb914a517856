package qc

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
)

// CloseDomainTag separates close signatures from every other signature a
// sidecar key makes.
const CloseDomainTag = "tempo.fastpay.close.v1"

// MaxCloseEntries bounds the entries of one close before any verification
// work is done.
const MaxCloseEntries = 1 << 16

// A Close is an old member's hand-over of epoch Epoch (SPEC §5a): made after
// it stopped signing in that epoch, it lists every contention key the member
// signed or adopted that is still unsettled at finalized height Height.
// Members of the next committee sign only after they hold closes from a
// quorum of this one, and adopt what the closes list.
type Close struct {
	ChainID uint64
	Epoch   uint64 // the epoch closed
	Height  uint64 // the finalized height the list was taken at
	Signer  ValidatorID
	Entries []CloseEntry
	// Signature by Signer over CloseDigest, which covers every entry's
	// certificate, so nobody can strip an entry from an honest close.
	Signature [SignatureSize]byte
}

// A CloseEntry is one unsettled transaction: the user-signed request (its
// encoding; the adopter checks that it hashes to Cert.TxHash) and a
// certificate for it of epoch CertEpoch. The certificate is the closer's
// own when it signed the transaction in the closed epoch; a transaction it
// adopted from an earlier close carries that close's certificate forward.
type CloseEntry struct {
	Request   []byte
	Cert      Certificate
	CertEpoch uint64
}

// CloseDigest is what a close's signer signs: sha256(tag ‖ chain_id ‖ epoch
// ‖ height ‖ signer ‖ count ‖ per entry: cert_epoch ‖ cert signer ‖ tx_hash
// ‖ effects_hash), integers big-endian.
func CloseDigest(c *Close) Hash {
	e := make(encoder, 0, len(CloseDomainTag)+8*3+32+4+len(c.Entries)*(8+32*3))
	e = e.str(CloseDomainTag)
	e = e.u64(c.ChainID)
	e = e.u64(c.Epoch)
	e = e.u64(c.Height)
	e = e.raw(c.Signer[:])
	e = e.u32(uint32(len(c.Entries)))
	for i := range c.Entries {
		en := &c.Entries[i]
		e = e.u64(en.CertEpoch)
		e = e.raw(en.Cert.Signer[:])
		e = e.raw(en.Cert.TxHash[:])
		e = e.raw(en.Cert.EffectsHash[:])
	}
	return sha256.Sum256(e)
}

// SignClose fills in c's signer and signature with key.
func SignClose(key ed25519.PrivateKey, c *Close) error {
	if len(key) != ed25519.PrivateKeySize {
		return fmt.Errorf("qc: close key of %d bytes", len(key))
	}
	id, err := ValidatorIDFromBytes(key.Public().(ed25519.PublicKey))
	if err != nil {
		return err
	}
	c.Signer = id
	d := CloseDigest(c)
	copy(c.Signature[:], sign(key, d[:]))
	return nil
}

// Errors of VerifyClose, matched with errors.Is.
var (
	ErrCloseSignature = errors.New("qc: close signature does not verify under its signer")
	ErrCloseChain     = errors.New("qc: close is for another chain")
	ErrCloseEpoch     = errors.New("qc: close is for another epoch than the committee it is checked against")
	ErrCloseSigner    = errors.New("qc: close signer is not a member of the closed epoch's committee")
	ErrCloseTooLarge  = errors.New("qc: close lists too many entries")
)

// VerifyClose checks c against the committee of the epoch it closes: the
// chain, the epoch, the signer's membership and the signature (ZIP215). A
// close that claims another signer or epoch than it was signed for fails
// the signature. Entries are not checked here (CheckCloseEntry): one that
// does not verify is dropped by whoever adopts the close, not the close.
func (c *Committee) VerifyClose(cl *Close) error {
	switch {
	case cl.ChainID != c.domain.ChainID:
		return fmt.Errorf("%w: chain %d, want %d", ErrCloseChain, cl.ChainID, c.domain.ChainID)
	case cl.Epoch != c.domain.Epoch:
		return fmt.Errorf("%w: close of epoch %d, committee of epoch %d", ErrCloseEpoch, cl.Epoch, c.domain.Epoch)
	case !c.Contains(cl.Signer):
		return fmt.Errorf("%w: %s", ErrCloseSigner, cl.Signer.Hex())
	case len(cl.Entries) > MaxCloseEntries:
		return fmt.Errorf("%w: %d, at most %d", ErrCloseTooLarge, len(cl.Entries), MaxCloseEntries)
	}
	d := CloseDigest(cl)
	if !c.keys[c.index[cl.Signer]].verify(d[:], cl.Signature[:]) {
		return fmt.Errorf("%w: %s", ErrCloseSignature, cl.Signer.Hex())
	}
	return nil
}

// ErrCloseEntry is wrapped by CheckCloseEntry's refusals.
var ErrCloseEntry = errors.New("qc: close entry does not verify")

// CheckCloseEntry checks entry i of a close already verified with
// VerifyClose: its certificate is valid under the committee of its epoch
// (committeeOf returns nil for an epoch it does not know), no later than
// the closed epoch, and, when of the closed epoch itself, the closer's own.
func CheckCloseEntry(cl *Close, i int, committeeOf func(epoch uint64) *Committee) error {
	en := &cl.Entries[i]
	if en.CertEpoch > cl.Epoch {
		return fmt.Errorf("%w: certificate of epoch %d in a close of epoch %d", ErrCloseEntry, en.CertEpoch, cl.Epoch)
	}
	if en.CertEpoch == cl.Epoch && en.Cert.Signer != cl.Signer {
		return fmt.Errorf("%w: certificate of the closed epoch by %s, not by the closer", ErrCloseEntry, en.Cert.Signer)
	}
	c := committeeOf(en.CertEpoch)
	if c == nil {
		return fmt.Errorf("%w: committee of epoch %d unknown", ErrCloseEntry, en.CertEpoch)
	}
	if err := c.VerifyCertificate(&en.Cert); err != nil {
		return fmt.Errorf("%w: %w", ErrCloseEntry, err)
	}
	return nil
}

// SignClose signs cl as this signer: its signer and signature, for the
// signer's chain and epoch, which must be cl's.
func (s *Signer) SignClose(cl *Close) error {
	if cl.ChainID != s.domain.ChainID || cl.Epoch != s.domain.Epoch {
		return fmt.Errorf("qc: close of chain %d epoch %d by a signer of chain %d epoch %d", cl.ChainID, cl.Epoch, s.domain.ChainID, s.domain.Epoch)
	}
	return SignClose(s.key, cl)
}
