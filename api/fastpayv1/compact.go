package fastpayv1

import "github.com/allegro-mesh/allegro/qc"

// The compact form of certificates and QCs, for the mesh's frames and the
// validator's store (the client API sends the reference's full form):
//   - a certificate names its signer by id only (the full form repeats the
//     key as pubkey);
//   - a certificate inside a QC leaves out the tx_hash and effects_hash,
//     which are the QC's, and, after the first, the effects, which are the
//     first certificate's.
// A QC of q certificates repeats the effects q times in full form, most of
// its bytes. ToQC fills the fields back in and takes either form, and
// nothing is trusted for it: a QC whose certificates did not sign its
// tx_hash, effects_hash and effects fails verification as a forged one
// does.

// NewCompactValidatorCertificate wraps a domain certificate in compact form.
func NewCompactValidatorCertificate(c *qc.Certificate) *ValidatorCertificate {
	w := NewValidatorCertificate(c)
	w.Signer.Pubkey = nil
	return w
}

// NewCompactQuorumCertificate wraps a domain QC in compact form.
func NewCompactQuorumCertificate(q *qc.QC) *QuorumCertificate {
	w := NewQuorumCertificate(q)
	for i, c := range w.Certs {
		c.Signer.Pubkey, c.TxHash, c.EffectsHash = nil, nil, nil
		if i > 0 {
			c.Effects = nil
		}
	}
	return w
}

// expandedCert returns certificate i of q with what the compact form
// leaves out taken from q; the wire certificate itself is not modified.
func (q *QuorumCertificate) expandedCert(i int) *ValidatorCertificate {
	c := q.Certs[i]
	if c == nil {
		return nil
	}
	var first *EffectsSummary
	if i > 0 && q.Certs[0] != nil {
		first = q.Certs[0].Effects
	}
	if len(c.TxHash) > 0 && len(c.EffectsHash) > 0 && (c.Effects != nil || first == nil) {
		return c
	}
	out := &ValidatorCertificate{Signer: c.Signer, TxHash: c.TxHash, EffectsHash: c.EffectsHash, Effects: c.Effects,
		Signature: c.Signature, CreatedUnixMillis: c.CreatedUnixMillis}
	if len(out.TxHash) == 0 {
		out.TxHash = q.TxHash
	}
	if len(out.EffectsHash) == 0 {
		out.EffectsHash = q.EffectsHash
	}
	if out.Effects == nil {
		out.Effects = first
	}
	return out
}
