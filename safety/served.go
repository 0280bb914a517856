package safety

import (
	"errors"
	"fmt"

	"github.com/allegro-mesh/allegro/qc"
)

// Every certificate, evidence record and QC the sources served is verified
// against the committee of its epoch, and the valid ones are indexed for
// the rules. Honest boards hold only verified objects, so an honest sidecar
// serving one that does not verify breaks honest_served_invalid: light
// clients and children's parents could be fed forgeries (§7.1, §7.4).

// addSigned records a certificate verified in committee com, under its
// signer's seat: a validator signs one transaction per contention key,
// in every epoch together.
func (c *checker) addSigned(cert qc.Certificate, com *qc.Committee, seenBy []string) {
	seat, _ := com.SeatOf(cert.Signer)
	k := signerKey{seat, cert.Effects.ContentionKey()}
	m := c.signed[k]
	if m == nil {
		m = make(map[txEffects]*signedEntry)
		c.signed[k] = m
	}
	te := txEffects{cert.TxHash, cert.EffectsHash}
	e := m[te]
	if e == nil {
		e = &signedEntry{cert: cert}
		m[te] = e
	}
	e.epochs = addEpoch(e.epochs, com.Domain().Epoch)
	for _, s := range seenBy {
		e.seenBy = addName(e.seenBy, s)
	}
	if _, ok := c.txKey[cert.TxHash]; !ok {
		c.txKey[cert.TxHash] = k.key
	}
}

func (c *checker) certificates() {
	c.signed = make(map[signerKey]map[txEffects]*signedEntry)
	c.txKey = make(map[qc.Hash]qc.ContentionKey)
	st := &c.r.Certificates
	st.InvalidBySigner = make(map[string]int)
	for i := range c.h.Certificates {
		rec := &c.h.Certificates[i]
		st.Distinct++
		com, err := c.committees.VerifyCertificate(&rec.Cert)
		if err != nil {
			st.Invalid++
			st.InvalidBySigner[c.name(rec.Cert.Signer)]++
			if hs := c.honestSources(rec.SeenBy); len(hs) > 0 {
				c.violate(Violation{Kind: KindHonestServedInvalid,
					Message:    fmt.Sprintf("honest sidecar(s) served a certificate by %s for tx %s that does not verify: %v", c.name(rec.Cert.Signer), rec.Cert.TxHash, err),
					TxHashes:   []string{rec.Cert.TxHash.Hex()},
					Validators: []string{c.name(rec.Cert.Signer)}, Sources: hs})
			}
			continue
		}
		st.Valid++
		c.addSigned(rec.Cert, com, rec.SeenBy)
	}
}

func (c *checker) evidence() {
	c.detected = make(map[signerKey][]string)
	st := &c.r.Evidence
	st.BySigner = make(map[string]int)
	for i := range c.h.Evidence {
		rec := &c.h.Evidence[i]
		st.Records++
		ev := &rec.Evidence
		first, second, err := c.committees.VerifyEquivocation(ev)
		if err != nil {
			st.Invalid++
			if hs := c.honestSources(rec.ReportedBy); len(hs) > 0 {
				c.violate(Violation{Kind: KindHonestServedInvalid,
					Message:    fmt.Sprintf("honest sidecar(s) reported equivocation evidence against %s that does not verify: %v", c.name(ev.Signer()), err),
					TxHashes:   []string{ev.First.TxHash.Hex(), ev.Second.TxHash.Hex()},
					Validators: []string{c.name(ev.Signer())}, Sources: hs})
			}
			continue
		}
		st.Valid++
		st.BySigner[c.name(ev.Signer())]++
		// Evidence certificates are signatures like any other.
		c.addSigned(ev.First, first, rec.ReportedBy)
		c.addSigned(ev.Second, second, rec.ReportedBy)
		seat, _ := first.SeatOf(ev.Signer())
		k := signerKey{seat, ev.Key()}
		for _, s := range c.honestSources(rec.ReportedBy) {
			c.detected[k] = addName(c.detected[k], s)
		}
	}
}

// addValid records a QC verified in committee com.
func (c *checker) addValid(q *qc.QC, com *qc.Committee, seenBy []string) {
	te := txEffects{q.TxHash, q.EffectsHash}
	v := c.valid[te]
	if v == nil {
		v = &validQC{qc: q}
		c.valid[te] = v
		if _, ok := c.certified[q.TxHash]; !ok {
			c.certified[q.TxHash] = v
		}
		if _, ok := c.txKey[q.TxHash]; !ok {
			c.txKey[q.TxHash] = q.Effects().ContentionKey()
		}
	}
	v.epochs = addEpoch(v.epochs, com.Domain().Epoch)
	for _, s := range seenBy {
		v.seenBy = addName(v.seenBy, s)
	}
	if !c.distinctBy[q.Hash] {
		c.distinctBy[q.Hash] = true
		c.distinct = append(c.distinct, q)
		if len(c.committees.List()) > 1 {
			if c.r.QCs.ValidByEpoch == nil {
				c.r.QCs.ValidByEpoch = make(map[uint64]int)
			}
			c.r.QCs.ValidByEpoch[com.Domain().Epoch]++
		}
	}
}

func (c *checker) qcs() {
	c.valid = make(map[txEffects]*validQC)
	c.certified = make(map[qc.Hash]*validQC)
	c.distinctBy = make(map[qc.Hash]bool)
	st := &c.r.QCs
	for i := range c.h.QCs {
		rec := &c.h.QCs[i]
		st.Distinct++
		com, err := c.committees.VerifyQC(rec.QC)
		c.addQCSignatures(rec.QC, com, rec.SeenBy)
		switch {
		case errors.Is(err, ErrUnknownEpoch):
			st.UnknownEpoch++
			c.unverifiable(rec.QC, err, c.honestSources(rec.SeenBy), rec.SeenBy)
			continue
		case err != nil:
			st.Invalid++
			if hs := c.honestSources(rec.SeenBy); len(hs) > 0 {
				c.violate(Violation{Kind: KindHonestServedInvalid,
					Message:  fmt.Sprintf("honest sidecar(s) served a QC for tx %s that does not verify: %v", rec.QC.TxHash, err),
					TxHashes: []string{rec.QC.TxHash.Hex()}, Validators: c.signerNames(rec.QC), Sources: hs})
			}
			continue
		}
		st.Valid++
		c.addValid(rec.QC, com, rec.SeenBy)
	}
}

// unverifiable reports a QC of an epoch without a committee: a violation
// when an honest sidecar or a light client (holders) holds it, since the
// checker cannot vouch for it, else a note (a Byzantine sidecar may carry
// any epoch).
func (c *checker) unverifiable(q *qc.QC, err error, holders, seenBy []string) {
	if len(holders) == 0 {
		c.note("QC for tx %s served only by Byzantine source(s) %v is not checked: %v", q.TxHash, seenBy, err)
		return
	}
	c.violate(Violation{Kind: KindUnverifiableQC,
		Message:  fmt.Sprintf("cannot check a QC for tx %s held by %v (give the history the committee of its epoch): %v", q.TxHash, holders, err),
		TxHashes: []string{q.TxHash.Hex()}, Sources: holders, Epochs: []uint64{q.Epoch}})
}

// addQCSignatures records the certificates inside a QC as signatures by
// their signers' seats: a QC proves a double-sign as well as a lone
// certificate. com is the committee the whole QC verified in (so every
// certificate does), or nil: then each certificate is verified alone.
func (c *checker) addQCSignatures(q *qc.QC, com *qc.Committee, seenBy []string) {
	for i := range q.Certs {
		cert := q.Certs[i]
		in := com
		if in == nil {
			var err error
			if in, err = c.committees.VerifyCertificate(&cert); err != nil {
				continue
			}
		}
		c.addSigned(cert, in, seenBy)
	}
}

func (c *checker) signerNames(q *qc.QC) []string {
	var out []string
	for i := range q.Certs {
		out = append(out, c.name(q.Certs[i].Signer))
	}
	return out
}
