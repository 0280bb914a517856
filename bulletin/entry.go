package bulletin

import (
	"time"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// A board holds MaxTxs transactions, so an entry is kept compact: the
// transaction hash and its effects once rather than in every certificate
// (a qc.Certificate is ~300 bytes, mostly hashes and effects every
// certificate of a transaction shares), signers as committee indexes, the
// QC as references to those certificates, and times as Unix nanoseconds
// instead of time.Time values and a map. Certificate records hold no
// pointers, so the collector need not scan them. Readers get ordinary qc
// values, built on demand.
type txEntry struct {
	txHash qc.Hash
	// effects is the first effects summary seen for the transaction
	// (variant 0); a certificate with other effects adds a variant to
	// others. hasEffects is false for an entry made by a stage alone.
	effectsHash qc.Hash
	effects     qc.Effects
	hasEffects  bool
	qcFromMesh  bool
	stage       Stage
	others      []effectsVariant
	certs       []certRecord // arrival order, one per (signer, effects)
	odd         []oddSigner  // signers certRecord.signer cannot index
	qc          *qcRecord
	// assemblers gather certificates by effects hash until the QC forms;
	// made on the first certificate and dropped with the QC.
	assemblers map[qc.Hash]*qc.Assembler
	height     uint64
	firstSeen  int64 // Unix nanoseconds
	qcAt       int64 // Unix nanoseconds, 0 before the QC
	// stageAt holds when each known stage was reached (Unix nanoseconds,
	// 0: not reached); moreStages the rare stage outside that range.
	stageAt    [fastpayv1.TxLifecycleUpdate_FINALIZED + 1]int64
	moreStages map[Stage]int64
	// failure is the last settlement failure reported ("": none).
	failure string
}

type effectsVariant struct {
	hash    qc.Hash
	effects qc.Effects
}

// certRecord is a certificate without what its entry holds: the
// transaction hash and the effects (a variant index).
type certRecord struct {
	sig     [qc.SignatureSize]byte
	created uint64
	variant uint32
	// signer >= 0 is the committee index of a signer whose certificate
	// carries its committee name; ^signer indexes the entry's odd signers
	// (a non-member, or a name the committee does not know it by).
	signer int32
}

type oddSigner struct {
	id   qc.ValidatorID
	name string
}

// roster maps committee members to the indexes records hold.
type roster struct {
	members []qc.Member
	index   map[qc.ValidatorID]int32
	epoch   uint64 // the committee's, carried by the QCs rebuilt from records
}

func newRoster(c *qc.Committee) *roster {
	r := &roster{members: c.Members(), index: make(map[qc.ValidatorID]int32, len(c.Members())), epoch: c.Domain().Epoch}
	for i, m := range r.members {
		r.index[m.ID] = int32(i)
	}
	return r
}

// qcRecord is a QC whose certificates are references: ref >= 0 is an index
// into the entry's certs, ref < 0 is ^index into extra (certificates that
// arrived only inside the QC). raw is set instead when the QC cannot be
// rebuilt exactly from those parts (a certificate for another hash).
type qcRecord struct {
	hash      qc.Hash
	threshold uint32
	variant   uint32
	refs      []int32
	extra     []certRecord
	raw       *qc.QC
}

func nanos(t time.Time) int64 { return t.UnixNano() }

// timeOf converts Unix nanoseconds back, 0 being the zero time.
func timeOf(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func (e *txEntry) sender() qc.Address {
	if !e.hasEffects {
		return qc.Address{}
	}
	return e.effects.Sender
}

func (e *txEntry) recipient() qc.Address {
	if !e.hasEffects {
		return qc.Address{}
	}
	return e.effects.Recipient
}

// variant returns the index of (hash, effects), adding it if new.
func (e *txEntry) variant(hash qc.Hash, effects *qc.Effects) uint32 {
	if !e.hasEffects {
		e.effectsHash, e.effects, e.hasEffects = hash, *effects, true
		return 0
	}
	if e.effectsHash == hash && e.effects == *effects {
		return 0
	}
	for i := range e.others {
		if e.others[i].hash == hash && e.others[i].effects == *effects {
			return uint32(i + 1)
		}
	}
	e.others = append(e.others, effectsVariant{hash: hash, effects: *effects})
	return uint32(len(e.others))
}

func (e *txEntry) variantOf(v uint32) (qc.Hash, *qc.Effects) {
	if v == 0 {
		return e.effectsHash, &e.effects
	}
	o := &e.others[v-1]
	return o.hash, &o.effects
}

// signerRef returns how a record names c's signer, adding an odd signer
// if need be.
func (e *txEntry) signerRef(ro *roster, c *qc.Certificate) int32 {
	if i, ok := ro.index[c.Signer]; ok && ro.members[i].Name == c.SignerName {
		return i
	}
	for i, o := range e.odd {
		if o.id == c.Signer && o.name == c.SignerName {
			return ^int32(i)
		}
	}
	e.odd = append(e.odd, oddSigner{id: c.Signer, name: c.SignerName})
	return ^int32(len(e.odd) - 1)
}

func (e *txEntry) signerOf(ro *roster, ref int32) (qc.ValidatorID, string) {
	if ref >= 0 {
		m := &ro.members[ref]
		return m.ID, m.Name
	}
	o := &e.odd[^ref]
	return o.id, o.name
}

func (e *txEntry) record(ro *roster, c *qc.Certificate) certRecord {
	return certRecord{sig: c.Signature, created: c.CreatedUnixMillis, variant: e.variant(c.EffectsHash, &c.Effects),
		signer: e.signerRef(ro, c)}
}

func (e *txEntry) certOf(ro *roster, r *certRecord) qc.Certificate {
	h, effects := e.variantOf(r.variant)
	id, name := e.signerOf(ro, r.signer)
	return qc.Certificate{Signer: id, SignerName: name, TxHash: e.txHash, EffectsHash: h, Effects: *effects,
		Signature: r.sig, CreatedUnixMillis: r.created}
}

func (e *txEntry) cert(ro *roster, i int) qc.Certificate { return e.certOf(ro, &e.certs[i]) }

// hasCert reports whether a certificate by signer for effectsHash is held.
func (e *txEntry) hasCert(ro *roster, signer qc.ValidatorID, effectsHash qc.Hash) bool {
	for i := range e.certs {
		h, _ := e.variantOf(e.certs[i].variant)
		if id, _ := e.signerOf(ro, e.certs[i].signer); id == signer && h == effectsHash {
			return true
		}
	}
	return false
}

// compactQC records q, referring to the entry's certificates where q holds
// the very same ones.
func (e *txEntry) compactQC(ro *roster, q *qc.QC) *qcRecord {
	r := &qcRecord{hash: q.Hash, threshold: q.Threshold, refs: make([]int32, 0, len(q.Certs))}
	if q.TxHash != e.txHash || len(q.Certs) == 0 {
		r.raw = q
		return r
	}
	r.variant = e.variant(q.EffectsHash, &q.Certs[0].Effects)
	for i := range q.Certs {
		c := &q.Certs[i]
		if c.TxHash != q.TxHash || c.EffectsHash != q.EffectsHash || c.Effects != q.Certs[0].Effects {
			return &qcRecord{raw: q}
		}
		who := e.signerRef(ro, c)
		ref, found := int32(0), false
		for j := range e.certs {
			if rec := &e.certs[j]; rec.variant == r.variant && rec.signer == who && rec.sig == c.Signature &&
				rec.created == c.CreatedUnixMillis {
				ref, found = int32(j), true
				break
			}
		}
		if !found {
			r.extra = append(r.extra, certRecord{sig: c.Signature, created: c.CreatedUnixMillis, variant: r.variant, signer: who})
			ref = ^int32(len(r.extra) - 1)
		}
		r.refs = append(r.refs, ref)
	}
	return r
}

// qcOf rebuilds the entry's QC (nil if none); callers must not modify it.
func (e *txEntry) qcOf(ro *roster) *qc.QC {
	r := e.qc
	switch {
	case r == nil:
		return nil
	case r.raw != nil:
		return r.raw
	}
	h, _ := e.variantOf(r.variant)
	q := &qc.QC{TxHash: e.txHash, EffectsHash: h, Threshold: r.threshold, Hash: r.hash, Epoch: ro.epoch, Certs: make([]qc.Certificate, len(r.refs))}
	for i, ref := range r.refs {
		if ref >= 0 {
			q.Certs[i] = e.cert(ro, int(ref))
		} else {
			q.Certs[i] = e.certOf(ro, &r.extra[^ref])
		}
	}
	return q
}

func (e *txEntry) setStageAt(s Stage, at int64) {
	if s >= 0 && int(s) < len(e.stageAt) {
		e.stageAt[s] = at
		return
	}
	if e.moreStages == nil {
		e.moreStages = make(map[Stage]int64)
	}
	e.moreStages[s] = at
}

func (e *txEntry) stageTimes() map[Stage]time.Time {
	out := make(map[Stage]time.Time, len(e.moreStages)+2)
	for s, at := range e.stageAt {
		if at != 0 {
			out[Stage(s)] = timeOf(at)
		}
	}
	for s, at := range e.moreStages {
		out[s] = timeOf(at)
	}
	return out
}
