package qc

import (
	"fmt"

	lru "github.com/hashicorp/golang-lru/v2"
)

// DefaultVerifierCacheSize is the number of verified signatures a Verifier
// remembers by default: seconds of certificates at saturation, while a
// signature is needed again only until its QC arrives (milliseconds).
const DefaultVerifierCacheSize = 1 << 14

// signatureKey is everything an ed25519 certificate signature binds: the
// signer, the signed digest's inputs, and the signature itself. A cached
// key proves that exact signature verified under the committee's domain.
type signatureKey struct {
	signer      ValidatorID
	txHash      Hash
	effectsHash Hash
	sig         [SignatureSize]byte
}

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
	verified *lru.Cache[signatureKey, struct{}]
}

// NewVerifier returns a Verifier for c remembering up to size signatures
// (DefaultVerifierCacheSize when size <= 0).
func NewVerifier(c *Committee, size int) *Verifier {
	if size <= 0 {
		size = DefaultVerifierCacheSize
	}
	cache, err := lru.New[signatureKey, struct{}](size)
	if err != nil {
		panic(fmt.Sprintf("qc: verifier cache: %v", err)) // unreachable: size > 0
	}
	return &Verifier{Committee: c, verified: cache}
}

func keyOf(cert *Certificate) signatureKey {
	return signatureKey{signer: cert.Signer, txHash: cert.TxHash, effectsHash: cert.EffectsHash, sig: cert.Signature}
}

// Remember records cert's signature as valid without verifying it. Use it
// only for certificates this node signed itself.
func (v *Verifier) Remember(cert *Certificate) { v.verified.Add(keyOf(cert), struct{}{}) }

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
	v.verified.Add(k, struct{}{})
	return nil
}

// VerifyQC is Committee.VerifyQC with the memo: shape, quorum, distinct
// member signers and the QC hash are always checked.
func (v *Verifier) VerifyQC(q *QC) error {
	if err := v.checkQCShape(q); err != nil {
		return err
	}
	for i := range q.Certs {
		if err := v.VerifyCertificate(&q.Certs[i]); err != nil {
			return fmt.Errorf("qc for tx %s: certificate %d: %w", q.TxHash, i, err)
		}
	}
	return nil
}
