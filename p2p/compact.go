package p2p

import (
	"github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// Objects travel in frames in a compact form of the client API's messages
// (the API keeps the reference's full form):
//   - a certificate names its signer by id only (the API repeats the key
//     as pubkey);
//   - a certificate inside a QC leaves out the tx_hash and effects_hash,
//     which are the QC's, and, after the first, the effects, which are the
//     first certificate's.
// A QC of q certificates repeats the effects q times in full form, most of
// its bytes. Decoding fills the fields back in before anything is checked,
// and accepts the full form too, so signatures and hashes are verified as
// ever: a QC whose certificates did not sign its tx_hash, effects_hash and
// effects fails verification.

// meshCertificate encodes a certificate for a frame.
func meshCertificate(c *qc.Certificate) *fastpayv1.ValidatorCertificate {
	w := fastpayv1.NewValidatorCertificate(c)
	w.Signer.Pubkey = nil
	return w
}

// meshQC encodes a QC for a frame.
func meshQC(q *qc.QC) *fastpayv1.QuorumCertificate {
	w := fastpayv1.NewQuorumCertificate(q)
	for i, c := range w.Certs {
		c.Signer.Pubkey, c.TxHash, c.EffectsHash = nil, nil, nil
		if i > 0 {
			c.Effects = nil
		}
	}
	return w
}

// expandQC fills in what meshQC left out of a decoded wire QC, in place.
// A certificate's own fields, when present, are kept (and checked later as
// any QC's are).
func expandQC(w *fastpayv1.QuorumCertificate) {
	for i, c := range w.GetCerts() {
		if c == nil {
			continue
		}
		if len(c.TxHash) == 0 {
			c.TxHash = w.TxHash
		}
		if len(c.EffectsHash) == 0 {
			c.EffectsHash = w.EffectsHash
		}
		if c.Effects == nil && i > 0 && w.Certs[0] != nil {
			c.Effects = w.Certs[0].Effects
		}
	}
}
