package settlement

import (
	"bytes"

	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/validator"
)

// Offer hands the settler a payment whose raw transaction this sidecar
// holds (the validator accepted it, or it arrived on the transaction topic).
// The bytes are kept until the transaction is included, fails, or gets no QC
// within MaxAge. A QC the request carries for the payment's parent is used to
// identify the parent once the payment itself is certified.
func (s *Settler) Offer(p *validator.Payment) {
	if p == nil || p.Tx == nil || len(p.Tx.Raw) == 0 {
		return
	}
	alias := parentAlias(p)
	effectsHash := p.Effects.Hash()
	now := s.now()

	s.mu.Lock()
	if s.doneTx.has(p.TxHash) {
		s.mu.Unlock()
		return
	}
	e := s.entries[p.TxHash]
	if e != nil && (e.raw != nil || e.included) {
		s.mu.Unlock()
		return
	}
	if e != nil && e.effectsHash != effectsHash {
		s.m.dropped.WithLabelValues(dropMismatch).Inc()
		s.mu.Unlock()
		s.log.Error("offered transaction does not match its QC's effects; raw bytes ignored", "tx", p.TxHash)
		return
	}
	if s.rawBytes+len(p.Tx.Raw) > s.cfg.MaxRawBytes {
		s.refuseLocked(dropBytes, p.TxHash)
		return
	}
	if e == nil {
		if len(s.entries) >= s.cfg.MaxPending {
			s.refuseLocked(dropFull, p.TxHash)
			return
		}
		e = &entry{txHash: p.TxHash, effects: p.Effects, effectsHash: effectsHash, offeredAt: now}
		e.uncertElem = s.uncert.PushBack(e)
		s.entries[p.TxHash] = e
		s.m.pending.Set(float64(len(s.entries)))
	}
	e.raw = p.Tx.Raw
	e.chainHash = p.Tx.TxHash
	if p.ParentQCHash != nil {
		h := *p.ParentQCHash
		e.parent = &h
		e.alias = alias
	}
	s.rawBytes += len(e.raw)
	s.full = false
	certified := e.certified
	s.mu.Unlock()
	if certified {
		s.poke()
	}
}

// Certified tells the settler a transaction's QC is known (formed or received
// by the board, or verified as a parent). The caller has verified it against
// the committee. QCs of one transaction with different certificate subsets
// are all remembered, so a child naming any of them finds its parent.
func (s *Settler) Certified(q *qc.QC) {
	if q == nil || len(q.Certs) == 0 {
		return
	}
	eff := q.Effects()
	if eff.Hash() != q.EffectsHash {
		s.log.Error("QC effects do not match its effects hash; ignored", "tx", q.TxHash)
		return
	}
	now := s.now()

	s.mu.Lock()
	if s.doneTx.has(q.TxHash) {
		s.doneQC.add(q.Hash)
		s.mu.Unlock()
		return
	}
	e := s.entries[q.TxHash]
	switch {
	case e == nil:
		if !s.makeRoomLocked() {
			s.refuseLocked(dropFull, q.TxHash)
			return
		}
		e = &entry{txHash: q.TxHash, effects: eff, effectsHash: q.EffectsHash, offeredAt: now}
		s.entries[q.TxHash] = e
		s.m.pending.Set(float64(len(s.entries)))
	case e.certified:
		s.addQCLocked(e, q.Hash)
		s.mu.Unlock()
		return
	default:
		if e.effectsHash != q.EffectsHash {
			// The offered bytes are not what the committee certified.
			s.m.dropped.WithLabelValues(dropMismatch).Inc()
			s.log.Error("offered transaction does not match its QC's effects; raw bytes dropped", "tx", q.TxHash)
			s.releaseRawLocked(e)
			e.parent, e.alias = nil, nil
			e.effects, e.effectsHash = eff, q.EffectsHash
		}
		s.uncert.Remove(e.uncertElem)
		e.uncertElem = nil
	}
	e.certified = true
	e.certifiedAt = now
	e.outageAt = s.outageClockLocked(now)
	s.addQCLocked(e, q.Hash)
	s.full = false
	s.mu.Unlock()
	s.poke()
}

func (s *Settler) addQCLocked(e *entry, h qc.Hash) {
	if _, ok := s.byQC[h]; ok || len(e.qcs) >= maxQCsPerTx {
		return
	}
	e.qcs = append(e.qcs, h)
	s.byQC[h] = e.txHash
}

// makeRoomLocked reports whether a new certified entry fits, evicting the
// oldest entry without a QC when full.
func (s *Settler) makeRoomLocked() bool {
	if len(s.entries) < s.cfg.MaxPending {
		return true
	}
	front := s.uncert.Front()
	if front == nil {
		return false
	}
	s.m.dropped.WithLabelValues(dropEvicted).Inc()
	s.removeLocked(front.Value.(*entry), false)
	return true
}

// refuseLocked counts a refused input, logs the first refusal of a full
// episode, and unlocks.
func (s *Settler) refuseLocked(reason string, txHash qc.Hash) {
	s.m.dropped.WithLabelValues(reason).Inc()
	first := !s.full
	s.full = true
	pending, bytes := len(s.entries), s.rawBytes
	s.mu.Unlock()
	if first {
		s.log.Warn("settlement backlog full; refusing transactions (other sidecars still settle them)",
			"reason", reason, "tx", txHash, "pending", pending, "raw_bytes", bytes)
	}
}

// parentAlias returns the parent named by p's parent_qc_hash as described by
// the QC the request carries for it. The QC's signatures are not checked
// here: its qc_hash (recomputed) commits to its tx hash and effects hash, and
// the child is only ever sent once certified, by validators that verified
// that very QC, so a QC hashing to parent_qc_hash is the genuine one.
func parentAlias(p *validator.Payment) *parentRef {
	if p.ParentQCHash == nil || p.Request == nil {
		return nil
	}
	for _, w := range p.Request.GetParentQcs() {
		if w == nil || !bytes.Equal(w.GetQcHash(), p.ParentQCHash[:]) {
			continue
		}
		q, err := w.ToQC()
		if err != nil || len(q.Certs) == 0 {
			continue
		}
		if qc.ComputeQCHash(q.TxHash, q.EffectsHash, q.Threshold, q.Certs) != q.Hash {
			continue
		}
		eff := q.Certs[0].Effects
		if eff.Hash() != q.EffectsHash {
			continue
		}
		return &parentRef{txHash: q.TxHash, effects: eff}
	}
	return nil
}
