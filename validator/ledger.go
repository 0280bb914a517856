package validator

import (
	"math/big"
	"sort"

	"github.com/allegro-mesh/allegro/qc"
)

// ledgerKey names one account's pending amounts in one asset.
type ledgerKey struct {
	account qc.Address
	asset   qc.Address
}

// ledgerEntry is one pending amount: a payment this validator signed
// (debit of its sender), the fee it reserved (debit of the fee payer), or
// a QC's credit to its recipient.
type ledgerEntry struct {
	seq    uint64
	tx     qc.Hash
	amount uint64
	big    *big.Int // instead of amount (a fee); never modified
	credit bool
	fee    bool
}

func (e *ledgerEntry) same(o *ledgerEntry) bool {
	return e.seq == o.seq && e.tx == o.tx && e.credit == o.credit && e.fee == o.fee
}

func (e *ledgerEntry) value(scratch *big.Int) *big.Int {
	if e.big != nil {
		return e.big
	}
	return scratch.SetUint64(e.amount)
}

// laneLedger holds the entries of one account and asset that belong to one
// lane (a sender and nonce key), in nonce order. A lane settles in nonce
// order, so the entries still pending at a chain state are those at or
// above the lane's next nonce there: the lane's sums minus those of the
// entries below it, which pruning has not removed yet.
type laneLedger struct {
	entries []ledgerEntry // sorted by seq; entries[start:] are live
	start   int
	debits  big.Int
	credits big.Int
	// The entries below belowNext, the next nonce of the last funds check,
	// are the first belowCount live ones, and these are their sums. The
	// chain's nonce only grows, so the next check adds the entries settled
	// since instead of all that wait for pruning.
	belowNext    uint64
	belowCount   int
	belowDebits  big.Int
	belowCredits big.Int
}

// addTo adds e's amount to debits or credits (sign −1: subtracts it).
func (e *ledgerEntry) addTo(debits, credits *big.Int, sign int) {
	var scratch big.Int
	sum := debits
	if e.credit {
		sum = credits
	}
	if sign < 0 {
		sum.Sub(sum, e.value(&scratch))
	} else {
		sum.Add(sum, e.value(&scratch))
	}
}

// settled returns the sums of the entries below next, the lane's next nonce.
func (l *laneLedger) settled(next uint64) (debits, credits *big.Int) {
	if next < l.belowNext {
		// An older chain state than the last check's: count again.
		l.belowNext, l.belowCount = 0, 0
		l.belowDebits.SetUint64(0)
		l.belowCredits.SetUint64(0)
	}
	live := l.live()
	for l.belowCount < len(live) && live[l.belowCount].seq < next {
		live[l.belowCount].addTo(&l.belowDebits, &l.belowCredits, 1)
		l.belowCount++
	}
	l.belowNext = next
	return &l.belowDebits, &l.belowCredits
}

func (l *laneLedger) live() []ledgerEntry { return l.entries[l.start:] }

func (l *laneLedger) add(e ledgerEntry) {
	e.addTo(&l.debits, &l.credits, 1)
	if e.seq < l.belowNext {
		e.addTo(&l.belowDebits, &l.belowCredits, 1)
		l.belowCount++
	}
	live := l.live()
	// Nonces mostly arrive in order: the common case appends.
	i := len(live)
	if i > 0 && live[i-1].seq > e.seq {
		i = sort.Search(len(live), func(j int) bool { return live[j].seq > e.seq })
	}
	l.entries = append(l.entries, ledgerEntry{})
	at := l.start + i
	copy(l.entries[at+1:], l.entries[at:])
	l.entries[at] = e
}

// remove takes e out and reports whether it was there.
func (l *laneLedger) remove(e ledgerEntry) bool {
	live := l.live()
	i := sort.Search(len(live), func(j int) bool { return live[j].seq >= e.seq })
	for ; i < len(live) && live[i].seq == e.seq; i++ {
		if !live[i].same(&e) {
			continue
		}
		live[i].addTo(&l.debits, &l.credits, -1)
		if e.seq < l.belowNext {
			live[i].addTo(&l.belowDebits, &l.belowCredits, -1)
			l.belowCount--
		}
		at := l.start + i
		if i == 0 {
			// Pruning settles a lane from its lowest nonce: drop the head
			// without moving the rest.
			l.entries[at] = ledgerEntry{}
			l.start++
		} else {
			copy(l.entries[at:], l.entries[at+1:])
			l.entries[len(l.entries)-1] = ledgerEntry{}
			l.entries = l.entries[:len(l.entries)-1]
		}
		if l.start > 32 && l.start > len(l.entries)/2 {
			n := copy(l.entries, l.entries[l.start:])
			clear(l.entries[n:])
			l.entries = l.entries[:n]
			l.start = 0
		}
		return true
	}
	return false
}

// pendingLedger sums what each account has pending, per asset and lane, so
// that a funds check costs a few operations per lane instead of one per
// pending payment: a busy sender or recipient has thousands in flight.
// Callers hold the validator's mu.
type pendingLedger struct {
	accounts map[ledgerKey]map[cursorSlot]*laneLedger
}

func newPendingLedger() *pendingLedger {
	return &pendingLedger{accounts: make(map[ledgerKey]map[cursorSlot]*laneLedger)}
}

func (p *pendingLedger) add(k ledgerKey, lane cursorSlot, e ledgerEntry) {
	lanes := p.accounts[k]
	if lanes == nil {
		lanes = make(map[cursorSlot]*laneLedger)
		p.accounts[k] = lanes
	}
	l := lanes[lane]
	if l == nil {
		l = new(laneLedger)
		lanes[lane] = l
	}
	l.add(e)
}

// remove takes out an entry added before; it reports whether it was there.
func (p *pendingLedger) remove(k ledgerKey, lane cursorSlot, e ledgerEntry) bool {
	lanes := p.accounts[k]
	l := lanes[lane]
	if l == nil || !l.remove(e) {
		return false
	}
	if len(l.live()) == 0 {
		delete(lanes, lane)
		if len(lanes) == 0 {
			delete(p.accounts, k)
		}
	}
	return true
}

// lanes appends the lanes of k's entries to dst.
func (p *pendingLedger) lanes(k ledgerKey, dst []cursorSlot) []cursorSlot {
	for lane := range p.accounts[k] {
		dst = append(dst, lane)
	}
	return dst
}

// addPending adds to balance k's pending credits and subtracts its pending
// debits at a chain state where next gives each lane's next nonce: entries
// below it are settled, and the balance already shows them. A lane next does
// not know counts its debits whole and none of its credits, which can only
// make the result smaller.
func (p *pendingLedger) addPending(k ledgerKey, next func(cursorSlot) (uint64, bool), balance *big.Int) {
	for lane, l := range p.accounts[k] {
		n, known := next(lane)
		if !known {
			balance.Sub(balance, &l.debits)
			continue
		}
		settledDebits, settledCredits := l.settled(n)
		balance.Add(balance, &l.credits)
		balance.Sub(balance, settledCredits)
		balance.Sub(balance, &l.debits)
		balance.Add(balance, settledDebits)
	}
}
