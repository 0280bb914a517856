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
	// Threshold is the quorum the QC was formed for. It is carried and
	// hashed for the reference's clients; verifiers count seats themselves.
	Threshold uint32
	Hash      Hash
	// Epoch is the committee epoch whose members signed (SPEC §5a). It is
	// not hashed: the certificates' signatures bind it. Zero may also mean
	// "not carried" (reference clients drop it); the signatures decide.
	Epoch uint64
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
	var buf [1024]byte
	e := encoder(buf[:0])
	if need := len(qcHashTag) + 64 + 8 + len(certs)*(32+4+SignatureSize+8); need > len(buf) {
		e = make(encoder, 0, need)
	}
	e = e.str(qcHashTag)
	e = e.raw(txHash[:])
	e = e.raw(effectsHash[:])
	e = e.u32(threshold)
	e = e.u32(uint32(len(certs)))
	for _, i := range order {
		e = e.raw(certs[i].Signer[:])
		e = e.lenBytes(certs[i].Signature[:])
		e = e.u64(certs[i].CreatedUnixMillis)
	}
	return sha256.Sum256(e)
}

// VerifyQC checks q against the committee: certificates from distinct
// members of at least a quorum of distinct seats, every certificate for q's
// hashes with a valid signature in the committee's domain, and qc_hash
// matching. A certificate from another chain or epoch fails its signature
// check. The carried threshold is not trusted (SPEC §5a): the committee's
// own quorum is what counts.
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
	if q.Epoch != 0 && q.Epoch != c.domain.Epoch {
		return fmt.Errorf("%w: qc of epoch %d, committee of epoch %d", ErrWrongEpoch, q.Epoch, c.domain.Epoch)
	}
	if len(q.Certs) > len(c.members) {
		return fmt.Errorf("%w: %d certificates for a committee of %d signing keys", ErrDuplicateSigner, len(q.Certs), len(c.members))
	}
	seen := make(map[ValidatorID]struct{}, len(q.Certs))
	seats := make(map[int]struct{}, len(q.Certs))
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
		seats[c.seatIndex(cert.Signer)] = struct{}{}
	}
	if quorum := c.Quorum(); len(seats) < quorum {
		return fmt.Errorf("%w: %d seats signed, need %d of %d", ErrBelowQuorum, len(seats), quorum, c.N())
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
	// certs in arrival order; signers indexes them, so a signer counts
	// once. Certificates are held once, in the slice: a map of whole
	// certificates would allocate eight slots of them per transaction.
	certs   []Certificate
	signers map[ValidatorID]int
	seats   map[int]int // seat index → certificates of its members
}

// NewAssembler starts assembling a QC for (txHash, effectsHash).
func NewAssembler(c *Committee, txHash, effectsHash Hash) *Assembler {
	return &Assembler{committee: c, txHash: txHash, effectsHash: effectsHash,
		certs: make([]Certificate, 0, c.Quorum()), signers: make(map[ValidatorID]int, c.Quorum()), seats: make(map[int]int, c.Quorum())}
}

// Add verifies cert and adds it. It returns false without error when the
// signer already contributed (a signer is never counted twice).
func (a *Assembler) Add(cert Certificate) (bool, error) {
	if cert.TxHash != a.txHash || cert.EffectsHash != a.effectsHash {
		return false, fmt.Errorf("%w: assembling %s/%s, got %s/%s", ErrHashMismatch, a.txHash, a.effectsHash, cert.TxHash, cert.EffectsHash)
	}
	if _, dup := a.signers[cert.Signer]; dup {
		return false, nil
	}
	if err := a.committee.VerifyCertificate(&cert); err != nil {
		return false, err
	}
	a.add(cert)
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
	if _, dup := a.signers[cert.Signer]; dup {
		return false, nil
	}
	a.add(cert)
	return true, nil
}

func (a *Assembler) add(cert Certificate) {
	a.signers[cert.Signer] = len(a.certs)
	a.certs = append(a.certs, cert)
	a.seats[a.committee.seatIndex(cert.Signer)]++
}

// Count returns the number of distinct seats gathered.
func (a *Assembler) Count() int { return len(a.seats) }

// Ready reports whether a quorum has been gathered.
func (a *Assembler) Ready() bool { return len(a.seats) >= a.committee.Quorum() }

// Build returns the QC from exactly a quorum of seats, one certificate each
// (the lowest signer ids, so every node holding the same certificates
// builds the same QC), or ErrBelowQuorum.
func (a *Assembler) Build() (*QC, error) {
	quorum := a.committee.Quorum()
	if len(a.seats) < quorum {
		return nil, fmt.Errorf("%w: %d of %d", ErrBelowQuorum, len(a.seats), quorum)
	}
	all := slices.Clone(a.certs)
	slices.SortFunc(all, func(x, y Certificate) int { return bytes.Compare(x.Signer[:], y.Signer[:]) })
	certs := make([]Certificate, 0, min(quorum, len(all)))
	used := make(map[int]struct{}, quorum)
	for _, c := range all {
		seat := a.committee.seatIndex(c.Signer)
		if _, dup := used[seat]; dup {
			continue
		}
		used[seat] = struct{}{}
		if certs = append(certs, c); len(certs) == quorum {
			break
		}
	}
	q := &QC{TxHash: a.txHash, EffectsHash: a.effectsHash, Certs: certs, Threshold: uint32(quorum), Epoch: a.committee.domain.Epoch}
	q.Hash = ComputeQCHash(q.TxHash, q.EffectsHash, q.Threshold, q.Certs)
	return q, nil
}
