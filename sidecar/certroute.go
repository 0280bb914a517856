package sidecar

import (
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/validator"
)

// maxTxEntries bounds the members a validator sends one certificate to:
// a payment submitted to more than one sidecar has more than one entry,
// and each gathers the certificates (so neither waits for a
// re-announcement with half of them), but a member that announces others'
// transactions again gains at most a copy of a bounded few.
const maxTxEntries = 3

// txRoute is where a transaction's certificates go when the mesh routes
// them to entries (p2p.Config.CertRouting "entry"): the members that
// announced it (the publisher of the first tx frame that brought it, this
// validator for its own clients' submissions, and members whose tx frames
// carried it again), and this validator's own certificate once signed, for
// entries learned after it.
type txRoute struct {
	entries []qc.ValidatorID
	own     *qc.Certificate
}

// addEntry records that member announced tx and returns this validator's
// certificate for tx when it was signed before member was known (it is
// owed to member), or nil.
func (s *Sidecar) addEntry(tx qc.Hash, member qc.ValidatorID) *qc.Certificate {
	s.routesMu.Lock()
	defer s.routesMu.Unlock()
	r, ok := s.routes.Peek(tx)
	if !ok {
		r = &txRoute{}
		s.routes.Add(tx, r)
	}
	for _, e := range r.entries {
		if e == member {
			return nil
		}
	}
	if len(r.entries) >= maxTxEntries {
		return nil
	}
	r.entries = append(r.entries, member)
	return r.own
}

// signedFor records this validator's certificate for tx and returns the
// entries it goes to (nil: none known).
func (s *Sidecar) signedFor(tx qc.Hash, cert qc.Certificate) []qc.ValidatorID {
	s.routesMu.Lock()
	defer s.routesMu.Unlock()
	r, ok := s.routes.Peek(tx)
	if !ok {
		return nil
	}
	r.own = &cert
	return append([]qc.ValidatorID(nil), r.entries...)
}

// onTxRepeat: another member's tx frame carried transactions this node had
// already; that member is one more entry for them.
func (s *Sidecar) onTxRepeat(publisher qc.ValidatorID, txs []qc.Hash) {
	if !s.mesh.RoutesCertificatesToEntry() || publisher == s.v.Signer().ID() || !s.v.Committee().Contains(publisher) {
		return
	}
	for _, tx := range txs {
		if own := s.addEntry(tx, publisher); own != nil {
			s.sendOwnCertificate(publisher, *own)
		}
	}
}

// routeOwnCertificate sends a certificate this validator signed for p to
// p's entries, keeping it for the QC when this validator is one, and
// reports whether it must go on the bulletin instead: p has no known
// entry, or a send failed.
func (s *Sidecar) routeOwnCertificate(p *validator.Payment, cert qc.Certificate) (bulletin bool) {
	entries := s.signedFor(p.TxHash, cert)
	if len(entries) == 0 {
		return true
	}
	for _, e := range entries {
		if e != s.v.Signer().ID() && !s.sendOwnCertificate(e, cert) {
			bulletin = true
		}
	}
	return bulletin
}

// sendOwnCertificate sends cert to the member entry over the certificate
// stream and reports whether it was queued there.
func (s *Sidecar) sendOwnCertificate(entry qc.ValidatorID, cert qc.Certificate) bool {
	err := s.mesh.SendCertificate(s.ctx, entry, cert)
	if err != nil && s.ctx.Err() == nil {
		s.log.Debug("send certificate to an entry; publishing it on the bulletin", "tx", cert.TxHash, "entry", entry.Hex(), "err", err)
	}
	return err == nil
}
