package validator

import (
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/allegro-mesh/allegro/qc"
)

// Equivocation is proof that one committee member signed two different
// transactions (or effects) for one contention key.
type Equivocation struct {
	Signer qc.ValidatorID
	Key    qc.ContentionKey
	First  qc.Certificate
	Second qc.Certificate
}

// EvidenceLog watches verified certificates for equivocation. It keeps the
// first certificate per (signer, contention key) in a bounded LRU and every
// conflict found in a bounded list. Safe for concurrent use.
type EvidenceLog struct {
	committee *qc.Committee
	first     *lru.Cache[signerKey, qc.Certificate]

	mu       sync.Mutex
	found    []Equivocation
	max      int
	offender map[qc.ValidatorID]int
}

type signerKey struct {
	signer qc.ValidatorID
	key    qc.ContentionKey
}

// NewEvidenceLog keeps at most maxEvidence conflicts and remembers the first
// certificate of up to window (signer, key) pairs.
func NewEvidenceLog(committee *qc.Committee, maxEvidence, window int) *EvidenceLog {
	first, _ := lru.New[signerKey, qc.Certificate](window)
	return &EvidenceLog{committee: committee, first: first, max: maxEvidence, offender: make(map[qc.ValidatorID]int)}
}

// Observe records a verified certificate and returns the evidence it
// completes, if it conflicts with an earlier certificate by the same signer.
func (l *EvidenceLog) Observe(cert qc.Certificate) *Equivocation {
	k := signerKey{cert.Signer, cert.Effects.ContentionKey()}
	prev, seen, _ := l.first.PeekOrAdd(k, cert)
	if !seen || (prev.TxHash == cert.TxHash && prev.EffectsHash == cert.EffectsHash) {
		return nil
	}
	ev := Equivocation{Signer: cert.Signer, Key: k.key, First: prev, Second: cert}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.found {
		if e.Signer == ev.Signer && e.Key == ev.Key && e.Second.TxHash == ev.Second.TxHash && e.Second.EffectsHash == ev.Second.EffectsHash {
			return nil // already recorded
		}
	}
	if len(l.found) >= l.max {
		l.found = l.found[1:]
	}
	l.found = append(l.found, ev)
	l.offender[cert.Signer]++
	return &ev
}

// All returns the recorded evidence, oldest first.
func (l *EvidenceLog) All() []Equivocation {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Equivocation(nil), l.found...)
}

// IsEquivocator reports whether signer has been caught equivocating.
func (l *EvidenceLog) IsEquivocator(signer qc.ValidatorID) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.offender[signer] > 0
}
