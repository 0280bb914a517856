package safety

import (
	"fmt"

	"github.com/allegro-mesh/allegro/qc"
)

// Every certificate, evidence record and QC the sources served is verified
// against the committee, and the valid ones are indexed for the rules.
// Honest boards hold only verified objects, so an honest sidecar serving one
// that does not verify breaks honest_served_invalid: light clients and
// children's parents could be fed forgeries (§7.1, §7.4).

// addSigned records a verified certificate.
func (c *checker) addSigned(cert qc.Certificate, seenBy []string) {
	k := signerKey{cert.Signer, cert.Effects.ContentionKey()}
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
		if err := c.committee.VerifyCertificate(&rec.Cert); err != nil {
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
		c.addSigned(rec.Cert, rec.SeenBy)
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
		if err := c.committee.VerifyEquivocation(ev); err != nil {
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
		c.addSigned(ev.First, rec.ReportedBy)
		c.addSigned(ev.Second, rec.ReportedBy)
		k := signerKey{ev.Signer(), ev.Key()}
		for _, s := range c.honestSources(rec.ReportedBy) {
			c.detected[k] = addName(c.detected[k], s)
		}
	}
}

// addValid records a verified QC.
func (c *checker) addValid(q *qc.QC, seenBy []string) {
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
	for _, s := range seenBy {
		v.seenBy = addName(v.seenBy, s)
	}
	if !c.distinctBy[q.Hash] {
		c.distinctBy[q.Hash] = true
		c.distinct = append(c.distinct, q)
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
		err := c.committee.VerifyQC(rec.QC)
		c.addQCSignatures(rec.QC, rec.SeenBy, err == nil)
		if err != nil {
			st.Invalid++
			if hs := c.honestSources(rec.SeenBy); len(hs) > 0 {
				c.violate(Violation{Kind: KindHonestServedInvalid,
					Message:  fmt.Sprintf("honest sidecar(s) served a QC for tx %s that does not verify: %v", rec.QC.TxHash, err),
					TxHashes: []string{rec.QC.TxHash.Hex()}, Validators: c.signerNames(rec.QC), Sources: hs})
			}
			continue
		}
		st.Valid++
		c.addValid(rec.QC, rec.SeenBy)
	}
}

// addQCSignatures records the certificates inside a QC as signatures by
// their signers: a QC proves a double-sign as well as a lone certificate.
// verified says the whole QC verified (so every certificate does).
func (c *checker) addQCSignatures(q *qc.QC, seenBy []string, verified bool) {
	for i := range q.Certs {
		cert := q.Certs[i]
		if !verified && c.committee.VerifyCertificate(&cert) != nil {
			continue
		}
		c.addSigned(cert, seenBy)
	}
}

func (c *checker) signerNames(q *qc.QC) []string {
	var out []string
	for i := range q.Certs {
		out = append(out, c.name(q.Certs[i].Signer))
	}
	return out
}
