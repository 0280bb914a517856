package qc

import (
	"crypto/sha256"
	"fmt"

	lru "github.com/hashicorp/golang-lru/v2"
)

// DefaultVerifierCacheSize is the number of verified signatures a Verifier
// remembers by default: seconds of certificates at saturation, while a
// signature is needed again only until its QC arrives (milliseconds).
const DefaultVerifierCacheSize = 1 << 14

// signatureKey identifies a certificate signature by a SHA-256 of
// everything it binds: the signer, the signed digest's inputs and the
// signature itself. A remembered key proves that exact signature verified
// under the committee's domain; two certificates share a key only through
// a SHA-256 collision. The digest rather than the 160 bytes themselves
// keeps the memo small: every validator remembers every certificate of
// every recent payment, n per payment.
type signatureKey [sha256.Size]byte

// signatureKeyTag separates the memo's digests from every other hash.
const signatureKeyTag = "allegro/verified-signature/1"

// Verifier checks certificates and QCs against a committee like Committee
// does, but remembers the signatures it has verified, so a QC assembled
// from certificates this node already checked costs hashing, not ed25519
// verifications. Each validator learns every certificate on the bulletin
// and then the same signatures again inside QCs (bulletin and QC shard);
// without the memo most of its verification time is repeated work.
//
// A Verifier is safe for concurrent use. Give each node its own: sharing
// one between in-process nodes would let one node skip work another did.
type Verifier struct {
	*Committee
	verified SignatureMemo
}

// SignatureMemo is where a Verifier remembers verified signatures, by a
// 32-byte digest of everything each binds. A key added must be reported
// as contained until the memo chooses to forget it. It must be safe for
// concurrent use.
type SignatureMemo interface {
	Add(key [32]byte)
	Contains(key [32]byte) bool
}

// lruMemo is the default SignatureMemo.
type lruMemo struct{ *lru.Cache[[32]byte, struct{}] }

func (m lruMemo) Add(key [32]byte) { m.Cache.Add(key, struct{}{}) }

// NewVerifier returns a Verifier for c remembering up to size signatures
// in an LRU cache (DefaultVerifierCacheSize when size <= 0).
func NewVerifier(c *Committee, size int) *Verifier {
	if size <= 0 {
		size = DefaultVerifierCacheSize
	}
	cache, err := lru.New[[32]byte, struct{}](size)
	if err != nil {
		panic(fmt.Sprintf("qc: verifier cache: %v", err)) // unreachable: size > 0
	}
	return NewVerifierWithMemo(c, lruMemo{cache})
}

// NewVerifierWithMemo returns a Verifier for c remembering signatures in
// memo.
func NewVerifierWithMemo(c *Committee, memo SignatureMemo) *Verifier {
	return &Verifier{Committee: c, verified: memo}
}

func keyOf(cert *Certificate) signatureKey {
	var b [len(signatureKeyTag) + len(ValidatorID{}) + 2*len(Hash{}) + SignatureSize]byte
	n := copy(b[:], signatureKeyTag)
	n += copy(b[n:], cert.Signer[:])
	n += copy(b[n:], cert.TxHash[:])
	n += copy(b[n:], cert.EffectsHash[:])
	copy(b[n:], cert.Signature[:])
	return sha256.Sum256(b[:])
}

// Remember records cert's signature as valid without verifying it. Use it
// only for certificates this node signed itself.
func (v *Verifier) Remember(cert *Certificate) { v.verified.Add(keyOf(cert)) }

// VerifyCertificate is Committee.VerifyCertificate with the memo: the
// membership and effects checks always run, the signature check only for a
// signature not verified before.
func (v *Verifier) VerifyCertificate(cert *Certificate) error {
	if err := v.checkCertificate(cert); err != nil {
		return err
	}
	k := keyOf(cert)
	if v.verified.Contains(k) {
		return nil
	}
	if err := v.verifySignature(cert); err != nil {
		return err
	}
	v.verified.Add(k)
	return nil
}

// VerifyQC is Committee.VerifyQC with the memo: shape, quorum, distinct
// member signers and the QC hash are always checked, and the signatures not
// known yet are verified together in one batch.
func (v *Verifier) VerifyQC(q *QC) error {
	b := v.NewBatch()
	if err := b.AddQC(q); err != nil {
		return err
	}
	if err := b.Verify(); err != nil {
		return fmt.Errorf("qc for tx %s: %w", q.TxHash, err)
	}
	return nil
}

// Batch gathers signatures to verify together: those of one gossip frame
// (SPEC §5: a frame is accepted only after every signature in it verified)
// or of one anti-entropy exchange. Membership and effects are checked as
// entries are added; with a Verifier's memo, signatures it already knows
// are not queued again. A Batch is used by one goroutine and once.
type Batch struct {
	c       *Committee
	memo    SignatureMemo // nil: no memo
	entries []batchEntry
	certs   []*Certificate // parallel to entries; nil for other signatures
	keys    []signatureKey // parallel to entries; the memo keys of certs
	queued  map[signatureKey]struct{}
}

// NewBatch starts an empty batch against v's committee and memo; the
// certificates of a batch that verifies are remembered.
func (v *Verifier) NewBatch() *Batch { return &Batch{c: v.Committee, memo: v.verified} }

// NewBatch starts an empty batch against the committee, without a memo.
func (c *Committee) NewBatch() *Batch { return &Batch{c: c} }

// AddCertificate checks cert's signer and effects and queues its signature
// unless it is known to verify.
func (b *Batch) AddCertificate(cert *Certificate) error {
	if err := b.c.checkCertificate(cert); err != nil {
		return err
	}
	k := keyOf(cert)
	if b.memo != nil && b.memo.Contains(k) {
		return nil
	}
	if _, dup := b.queued[k]; dup {
		return nil
	}
	if b.queued == nil {
		b.queued = make(map[signatureKey]struct{})
	}
	b.queued[k] = struct{}{}
	digest := CertDigest(b.c.domain, cert.TxHash, cert.EffectsHash)
	b.entries = append(b.entries, batchEntry{key: b.c.keys[b.c.index[cert.Signer]], msg: digest[:], sig: cert.Signature[:]})
	b.certs = append(b.certs, cert)
	b.keys = append(b.keys, k)
	return nil
}

// AddQC checks q's shape (quorum of distinct members, hash) and queues its
// certificates' signatures.
func (b *Batch) AddQC(q *QC) error {
	if err := b.c.checkQCShape(q); err != nil {
		return err
	}
	for i := range q.Certs {
		if err := b.AddCertificate(&q.Certs[i]); err != nil {
			return fmt.Errorf("qc for tx %s: certificate %d: %w", q.TxHash, i, err)
		}
	}
	return nil
}

// AddMemberSignature queues sig as signer's signature of msg; the signer
// must be a committee member.
func (b *Batch) AddMemberSignature(signer ValidatorID, msg, sig []byte) error {
	if !b.c.Contains(signer) {
		return fmt.Errorf("%w: %s", ErrUnknownSigner, signer.Hex())
	}
	b.entries = append(b.entries, batchEntry{key: b.c.keys[b.c.index[signer]], msg: msg, sig: sig})
	b.certs = append(b.certs, nil)
	b.keys = append(b.keys, signatureKey{})
	return nil
}

// Len is the number of signatures queued.
func (b *Batch) Len() int { return len(b.entries) }

// Verify checks every queued signature. On success the certificates are
// remembered as verified (with a memo); otherwise the error names the first
// signature that failed and nothing is remembered.
func (b *Batch) Verify() error {
	ok, valid := verifyBatch(b.entries)
	if !ok {
		for i, good := range valid {
			if good {
				continue
			}
			if c := b.certs[i]; c != nil {
				return c.signatureError(b.c.domain)
			}
			return fmt.Errorf("%w: signature %d of the batch", ErrBadSignature, i)
		}
	}
	if b.memo != nil {
		for i, c := range b.certs {
			if c != nil {
				b.memo.Add(b.keys[i])
			}
		}
	}
	return nil
}
