package qc

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"slices"
)

// QC is a quorum certificate: certificates from at least a quorum of distinct
// committee members for one (tx hash, effects hash).
type QC struct {
	TxHash      Hash
	EffectsHash Hash
	Certs       []Certificate
	Threshold   uint32
	Hash        Hash
}

// Effects returns the attested effects (every certificate carries them).
func (q *QC) Effects() Effects {
	if len(q.Certs) == 0 {
		return Effects{}
	}
	return q.Certs[0].Effects
}

// ComputeQCHash computes qc_hash (SPEC §2.1) over certs in signer-id order.
// certs is not modified.
func ComputeQCHash(txHash, effectsHash Hash, threshold uint32, certs []Certificate) Hash {
	order := make([]int, len(certs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return bytes.Compare(certs[a].Signer[:], certs[b].Signer[:])
	})
	e := make(encoder, 0, len(qcHashTag)+64+8+len(certs)*(32+4+SignatureSize+8))
	e.str(qcHashTag)
	e.raw(txHash[:])
	e.raw(effectsHash[:])
	e.u32(threshold)
	e.u32(uint32(len(certs)))
	for _, i := range order {
		e.raw(certs[i].Signer[:])
		e.lenBytes(certs[i].Signature[:])
		e.u64(certs[i].CreatedUnixMillis)
	}
	return sha256.Sum256(e)
}

// VerifyQC checks q against the committee: threshold equals the quorum, at
// least a quorum of certificates, every certificate for q's hashes, from a
// distinct member, with a valid signature in the committee's domain, and
// qc_hash matching. A certificate from another chain or epoch fails its
// signature check.
func (c *Committee) VerifyQC(q *QC) error {
	if err := c.checkQCShape(q); err != nil {
		return err
	}
	entries := make([]batchEntry, len(q.Certs))
	for i := range q.Certs {
		cert := &q.Certs[i]
		if err := c.checkCertificate(cert); err != nil {
			return fmt.Errorf("qc for tx %s: certificate %d: %w", q.TxHash, i, err)
		}
		digest := CertDigest(c.domain, cert.TxHash, cert.EffectsHash)
		entries[i] = batchEntry{key: c.keys[c.index[cert.Signer]], msg: digest[:], sig: cert.Signature[:]}
	}
	if ok, valid := verifyBatch(entries); !ok {
		for i, good := range valid {
			if !good {
				return fmt.Errorf("qc for tx %s: certificate %d: %w", q.TxHash, i, q.Certs[i].signatureError(c.domain))
			}
		}
	}
	return nil
}

// checkQCShape runs every check of VerifyQC except signature verification.
func (c *Committee) checkQCShape(q *QC) error {
	quorum := c.Quorum()
	if q.Threshold != uint32(quorum) {
		return fmt.Errorf("%w: qc says %d, committee of %d needs %d", ErrThresholdMismatch, q.Threshold, c.N(), quorum)
	}
	if len(q.Certs) < quorum {
		return fmt.Errorf("%w: %d certificates, need %d", ErrBelowQuorum, len(q.Certs), quorum)
	}
	if len(q.Certs) > c.N() {
		return fmt.Errorf("%w: %d certificates for a committee of %d", ErrDuplicateSigner, len(q.Certs), c.N())
	}
	seen := make(map[ValidatorID]struct{}, len(q.Certs))
	for i := range q.Certs {
		cert := &q.Certs[i]
		if cert.TxHash != q.TxHash || cert.EffectsHash != q.EffectsHash {
			return fmt.Errorf("%w: certificate %d by %s", ErrHashMismatch, i, cert.Signer.Hex())
		}
		if _, dup := seen[cert.Signer]; dup {
			return fmt.Errorf("%w: %s", ErrDuplicateSigner, cert.Signer.Hex())
		}
		seen[cert.Signer] = struct{}{}
		if !c.Contains(cert.Signer) {
			return fmt.Errorf("%w: %s", ErrUnknownSigner, cert.Signer.Hex())
		}
	}
	if got := ComputeQCHash(q.TxHash, q.EffectsHash, q.Threshold, q.Certs); got != q.Hash {
		return fmt.Errorf("%w: carried %s, computed %s", ErrQCHashMismatch, q.Hash, got)
	}
	return nil
}

// Assembler gathers certificates for one (tx hash, effects hash) until a
// quorum is reached. It is not safe for concurrent use.
type Assembler struct {
	committee   *Committee
	txHash      Hash
	effectsHash Hash
	certs       map[ValidatorID]Certificate
}

// NewAssembler starts assembling a QC for (txHash, effectsHash).
func NewAssembler(c *Committee, txHash, effectsHash Hash) *Assembler {
	return &Assembler{committee: c, txHash: txHash, effectsHash: effectsHash, certs: make(map[ValidatorID]Certificate, c.Quorum())}
}

// Add verifies cert and adds it. It returns false without error when the
// signer already contributed (a signer is never counted twice).
func (a *Assembler) Add(cert Certificate) (bool, error) {
	if cert.TxHash != a.txHash || cert.EffectsHash != a.effectsHash {
		return false, fmt.Errorf("%w: assembling %s/%s, got %s/%s", ErrHashMismatch, a.txHash, a.effectsHash, cert.TxHash, cert.EffectsHash)
	}
	if _, dup := a.certs[cert.Signer]; dup {
		return false, nil
	}
	if err := a.committee.VerifyCertificate(&cert); err != nil {
		return false, err
	}
	a.certs[cert.Signer] = cert
	return true, nil
}

// AddVerified adds a certificate the caller has already verified against the
// same committee (for example on gossip ingress), skipping the signature check.
func (a *Assembler) AddVerified(cert Certificate) (bool, error) {
	if cert.TxHash != a.txHash || cert.EffectsHash != a.effectsHash {
		return false, fmt.Errorf("%w: assembling %s/%s, got %s/%s", ErrHashMismatch, a.txHash, a.effectsHash, cert.TxHash, cert.EffectsHash)
	}
	if !a.committee.Contains(cert.Signer) {
		return false, fmt.Errorf("%w: %s", ErrUnknownSigner, cert.Signer.Hex())
	}
	if _, dup := a.certs[cert.Signer]; dup {
		return false, nil
	}
	a.certs[cert.Signer] = cert
	return true, nil
}

// Count returns the number of distinct signers gathered.
func (a *Assembler) Count() int { return len(a.certs) }

// Ready reports whether a quorum has been gathered.
func (a *Assembler) Ready() bool { return len(a.certs) >= a.committee.Quorum() }

// Build returns the QC from exactly a quorum of certificates (the lowest
// signer ids, so every node holding the same certificates builds the same
// QC), or ErrBelowQuorum.
func (a *Assembler) Build() (*QC, error) {
	quorum := a.committee.Quorum()
	if len(a.certs) < quorum {
		return nil, fmt.Errorf("%w: %d of %d", ErrBelowQuorum, len(a.certs), quorum)
	}
	certs := make([]Certificate, 0, len(a.certs))
	for _, c := range a.certs {
		certs = append(certs, c)
	}
	slices.SortFunc(certs, func(x, y Certificate) int { return bytes.Compare(x.Signer[:], y.Signer[:]) })
	certs = certs[:quorum]
	q := &QC{TxHash: a.txHash, EffectsHash: a.effectsHash, Certs: certs, Threshold: uint32(quorum)}
	q.Hash = ComputeQCHash(q.TxHash, q.EffectsHash, q.Threshold, q.Certs)
	return q, nil
}
