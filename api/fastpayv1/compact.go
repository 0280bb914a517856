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
