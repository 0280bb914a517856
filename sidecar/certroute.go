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
// carried it again), and whether this validator has signed it, so that an
// entry learned later gets its certificate (from the board) too.
type txRoute struct {
	entries [maxTxEntries]qc.ValidatorID
	n       uint8
	signed  bool
}

// addEntry records that member announced tx and reports whether this
// validator signed tx before member was known (its certificate is owed to
// member).
func (s *Sidecar) addEntry(tx qc.Hash, member qc.ValidatorID) (owed bool) {
	s.routesMu.Lock()
	defer s.routesMu.Unlock()
	r, ok := s.routes.Peek(tx)
	if !ok {
		r = &txRoute{}
		s.routes.Add(tx, r)
	}
	for _, e := range r.entries[:r.n] {
		if e == member {
			return false
		}
	}
	if int(r.n) == maxTxEntries {
		return false
	}
	r.entries[r.n] = member
	r.n++
	return r.signed
}

// signedFor records that this validator signed tx and returns the entries
// its certificate goes to (nil: none known).
func (s *Sidecar) signedFor(tx qc.Hash) []qc.ValidatorID {
	s.routesMu.Lock()
	defer s.routesMu.Unlock()
	r, ok := s.routes.Peek(tx)
	if !ok {
		return nil
	}
	r.signed = true
	return append([]qc.ValidatorID(nil), r.entries[:r.n]...)
}

// sendOwed sends this validator's certificate for tx, from the board, to
// an entry learned after it signed.
func (s *Sidecar) sendOwed(tx qc.Hash, entry qc.ValidatorID) {
	st, ok := s.board.Status(tx)
	if !ok {
		return
	}
	self := s.v.Signer().ID()
	for i := range st.Certs {
		if st.Certs[i].Signer == self {
			s.sendOwnCertificate(entry, st.Certs[i])
			return
		}
	}
}

// onTxRepeat: another member's tx frame carried transactions this node had
// already; that member is one more entry for them.
func (s *Sidecar) onTxRepeat(publisher qc.ValidatorID, txs []qc.Hash) {
	if !s.mesh.RoutesCertificatesToEntry() || publisher == s.v.Signer().ID() || !s.v.Committee().Contains(publisher) {
		return
	}
	for _, tx := range txs {
		if s.addEntry(tx, publisher) {
			s.sendOwed(tx, publisher)
		}
	}
}

// routeOwnCertificate sends a certificate this validator signed for p to
// p's entries, keeping it for the QC when this validator is one, and
// reports whether it must go on the bulletin instead: p has no known
// entry, or a send failed.
func (s *Sidecar) routeOwnCertificate(p *validator.Payment, cert qc.Certificate) (bulletin bool) {
	entries := s.signedFor(p.TxHash)
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
