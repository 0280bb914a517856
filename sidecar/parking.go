package sidecar

import (
	"sync"
	"time"

	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/validator"
)

// parkingLot holds mesh transactions that cannot be decided yet: a later
// nonce that arrived before its predecessor, a child whose parent QC has not
// arrived, or one that met an unavailable chain. It is bounded in count and
// time; everything in it is eventually retried or dropped.
type parkingLot struct {
	mu    sync.Mutex
	max   int
	ttl   time.Duration
	count int
	byKey map[qc.ContentionKey][]parkedTx // waiting for this key to be signed
	byQC  map[qc.Hash][]parkedTx          // waiting for this QC
	retry []parkedTx                      // waiting for a time
}

type parkedTx struct {
	p     *validator.Payment
	until time.Time // dropped after (byKey, byQC); retried at (retry)
}

func newParkingLot(max int, ttl time.Duration) *parkingLot {
	return &parkingLot{max: max, ttl: ttl, byKey: make(map[qc.ContentionKey][]parkedTx), byQC: make(map[qc.Hash][]parkedTx)}
}

func (l *parkingLot) admit() bool {
	if l.count >= l.max {
		return false
	}
	l.count++
	return true
}

// parkKey parks p until key is signed. It returns false when full.
func (l *parkingLot) parkKey(key qc.ContentionKey, p *validator.Payment) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.admit() {
		return false
	}
	l.byKey[key] = append(l.byKey[key], parkedTx{p, time.Now().Add(l.ttl)})
	return true
}

// parkQC parks p until the QC with hash h is known.
func (l *parkingLot) parkQC(h qc.Hash, p *validator.Payment) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.admit() {
		return false
	}
	l.byQC[h] = append(l.byQC[h], parkedTx{p, time.Now().Add(l.ttl)})
	return true
}

// parkRetry parks p until at.
func (l *parkingLot) parkRetry(at time.Time, p *validator.Payment) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.admit() {
		return false
	}
	l.retry = append(l.retry, parkedTx{p, at})
	return true
}

// wake releases the transactions waiting for key.
func (l *parkingLot) wake(key qc.ContentionKey, release func(*validator.Payment)) {
	l.mu.Lock()
	waiting := l.byKey[key]
	delete(l.byKey, key)
	l.count -= len(waiting)
	l.mu.Unlock()
	for _, w := range waiting {
		release(w.p)
	}
}

// wakeQC releases the transactions waiting for QC h.
func (l *parkingLot) wakeQC(h qc.Hash, release func(*validator.Payment)) {
	l.mu.Lock()
	waiting := l.byQC[h]
	delete(l.byQC, h)
	l.count -= len(waiting)
	l.mu.Unlock()
	for _, w := range waiting {
		release(w.p)
	}
}

// wakeRetries releases every transaction waiting for a time, due or not:
// what made them wait (the handover into the epoch) has ended, and a payment
// that waits longer than it must risks its transaction landing on chain
// without this validator's certificate.
func (l *parkingLot) wakeRetries(release func(*validator.Payment)) {
	l.mu.Lock()
	waiting := l.retry
	l.retry = nil
	l.count -= len(waiting)
	l.mu.Unlock()
	for _, w := range waiting {
		release(w.p)
	}
}

// expire releases due retries and drops waits past their deadline,
// returning how many it dropped.
func (l *parkingLot) expire(now time.Time, release func(*validator.Payment)) int {
	var due []*validator.Payment
	dropped := 0
	l.mu.Lock()
	keep := l.retry[:0]
	for _, r := range l.retry {
		if now.Before(r.until) {
			keep = append(keep, r)
		} else {
			due = append(due, r.p)
		}
	}
	l.retry = keep
	for k, ws := range l.byKey {
		l.byKey[k], dropped = dropExpired(ws, now, dropped)
		if len(l.byKey[k]) == 0 {
			delete(l.byKey, k)
		}
	}
	for h, ws := range l.byQC {
		l.byQC[h], dropped = dropExpired(ws, now, dropped)
		if len(l.byQC[h]) == 0 {
			delete(l.byQC, h)
		}
	}
	l.count -= dropped + len(due)
	l.mu.Unlock()
	for _, p := range due {
		release(p)
	}
	return dropped
}

func dropExpired(ws []parkedTx, now time.Time, dropped int) ([]parkedTx, int) {
	keep := ws[:0]
	for _, w := range ws {
		if now.Before(w.until) {
			keep = append(keep, w)
		} else {
			dropped++
		}
	}
	return keep, dropped
}

// size returns the number of parked transactions.
func (l *parkingLot) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count
}
