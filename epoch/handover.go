// Package epoch is the safety of a committee change (SPEC §5a): how a member
// of committee e+1 takes over from committee e. Old members close epoch e
// (qc.Close: every contention key they signed or adopted that is still
// unsettled); a new member signs in e+1 only after it holds closes from a
// quorum of committee e and its finalized head reached the highest close
// height, and then signs a listed key only for a transaction listed for it.
// Any QC of epoch e had a quorum of signers, and any quorum of closes shares
// at least f+1 members with it, so at least one honest close lists its key.
//
// Nothing here runs or stores: a Handover is the state one member keeps for
// one boundary, fed by whoever receives closes and follows the chain.
package epoch

import (
	"errors"
	"fmt"
	"sync"

	"github.com/allegro-mesh/allegro/qc"
)

// Errors of Handover, matched with errors.Is.
var (
	// ErrPending is returned while the handover is not complete: the
	// member must not sign yet, and a client should retry.
	ErrPending = errors.New("epoch: handover into the new epoch is not complete")
	// ErrListed is returned for a contention key a close listed with
	// another transaction, or with several and no QC known.
	ErrListed = errors.New("epoch: contention key is held by the previous epoch")
)

// CheckRequest checks that request (a SubmitFastPayRequest's encoding) is
// the transaction txHash names with the given effects. The handover drops
// close entries it refuses.
type CheckRequest func(request []byte, txHash qc.Hash, effects qc.Effects) error

// Listed is a transaction a close listed for a contention key.
type Listed struct {
	TxHash    qc.Hash
	Effects   qc.Effects
	Request   []byte
	Cert      qc.Certificate // a certificate for it, as the close carried it
	CertEpoch uint64
}

// Handover is one member's entry into epoch Next from the committee of
// epoch Next−1. It is safe for concurrent use.
type Handover struct {
	next        uint64
	prev        *qc.Committee
	committeeOf func(uint64) *qc.Committee
	check       CheckRequest

	mu      sync.Mutex
	closed  map[qc.ValidatorID]*qc.Close // by seat of the previous committee
	height  uint64                       // highest close height adopted
	listed  map[qc.ContentionKey][]*Listed
	senders map[qc.Address]map[qc.ContentionKey]struct{} // listed keys by sender
	dropped int
}

// NewHandover starts the handover into the epoch after prev's. committeeOf
// returns the committee of an earlier epoch (nil when unknown), for entries
// a close carries forward from before the epoch it closes; check verifies
// each entry's request.
func NewHandover(prev *qc.Committee, committeeOf func(uint64) *qc.Committee, check CheckRequest) (*Handover, error) {
	switch {
	case prev == nil:
		return nil, errors.New("epoch: handover without the previous committee")
	case check == nil:
		return nil, errors.New("epoch: handover without a request check")
	}
	if committeeOf == nil {
		committeeOf = func(uint64) *qc.Committee { return nil }
	}
	return &Handover{next: prev.Domain().Epoch + 1, prev: prev, committeeOf: committeeOf, check: check,
		closed: make(map[qc.ValidatorID]*qc.Close), listed: make(map[qc.ContentionKey][]*Listed),
		senders: make(map[qc.Address]map[qc.ContentionKey]struct{})}, nil
}

// Next returns the epoch being entered.
func (h *Handover) Next() uint64 { return h.next }

// Previous returns the committee of the epoch being left.
func (h *Handover) Previous() *qc.Committee { return h.prev }

// CommitteeOf returns the committee of an epoch before Next, when known
// (the previous one always).
func (h *Handover) CommitteeOf(e uint64) *qc.Committee {
	if e == h.prev.Domain().Epoch {
		return h.prev
	}
	if e >= h.next {
		return nil
	}
	return h.committeeOf(e)
}

// Adopted says what AddClose did with a close.
type Adopted struct {
	New     bool // the first close of its seat
	Entries int  // entries adopted
	Dropped int  // entries that did not verify
}

// AddClose verifies cl against the previous committee and adopts its
// entries. A close that does not verify (another chain or epoch, a signer
// that is not a member, a signature that does not verify: a close lying
// about its signer or epoch) is refused with the error. A second close of a
// seat already closed adds nothing. Entries that do not verify are dropped
// and counted; the rest are adopted.
func (h *Handover) AddClose(cl *qc.Close) (Adopted, error) {
	if err := h.prev.VerifyClose(cl); err != nil {
		return Adopted{}, err
	}
	seat, _ := h.prev.SeatOf(cl.Signer)
	committeeOf := h.CommitteeOf
	// Entries are checked before taking the lock: verification is the
	// expensive part and touches no handover state.
	good := make([]*Listed, 0, len(cl.Entries))
	dropped := 0
	for i := range cl.Entries {
		en := &cl.Entries[i]
		if qc.CheckCloseEntry(cl, i, committeeOf) != nil || h.check(en.Request, en.Cert.TxHash, en.Cert.Effects) != nil {
			dropped++
			continue
		}
		good = append(good, &Listed{TxHash: en.Cert.TxHash, Effects: en.Cert.Effects, Request: en.Request, Cert: en.Cert, CertEpoch: en.CertEpoch})
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if _, dup := h.closed[seat]; dup {
		return Adopted{}, nil
	}
	h.closed[seat] = cl
	h.height = max(h.height, cl.Height)
	h.dropped += dropped
	for _, l := range good {
		key := l.Effects.ContentionKey()
		if !containsTx(h.listed[key], l.TxHash) {
			h.listed[key] = append(h.listed[key], l)
			keys := h.senders[key.Sender]
			if keys == nil {
				keys = make(map[qc.ContentionKey]struct{})
				h.senders[key.Sender] = keys
			}
			keys[key] = struct{}{}
		}
	}
	return Adopted{New: true, Entries: len(good), Dropped: dropped}, nil
}

func containsTx(ls []*Listed, tx qc.Hash) bool {
	for _, l := range ls {
		if l.TxHash == tx {
			return true
		}
	}
	return false
}

// Signers returns the signers of the closes adopted.
func (h *Handover) Signers() []qc.ValidatorID {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]qc.ValidatorID, 0, len(h.closed))
	for _, cl := range h.closed {
		out = append(out, cl.Signer)
	}
	return out
}

// Status is what a handover has gathered.
type Status struct {
	Next         uint64
	Closes       int    // seats of the previous committee that closed
	Quorum       int    // closes needed
	CloseHeight  uint64 // the head must reach it
	ListedKeys   int
	DroppedEntry int
}

// Status reports progress.
func (h *Handover) Status() Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Status{Next: h.next, Closes: len(h.closed), Quorum: h.prev.Quorum(), CloseHeight: h.height,
		ListedKeys: len(h.listed), DroppedEntry: h.dropped}
}

// Complete reports whether the member may start signing in the new epoch:
// it holds closes from a quorum of the previous committee's seats and its
// finalized head is at or above the highest close height it adopted (so
// what it reads of the chain is no older than what the closes saw).
func (h *Handover) Complete(finalizedHead uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.closed) >= h.prev.Quorum() && finalizedHead >= h.height
}

// MaySign says whether the member may sign txHash for key in the new
// epoch: not before the handover completed (ErrPending); for a listed key
// only a listed transaction, and only when it is the one listed or a QC
// for txHash itself is known (qcForTx) (ErrListed). Keys nobody listed are
// the member's own guards' business.
func (h *Handover) MaySign(finalizedHead uint64, key qc.ContentionKey, txHash qc.Hash, qcForTx bool) error {
	if !h.Complete(finalizedHead) {
		st := h.Status()
		return fmt.Errorf("%w: %d of %d closes of epoch %d, head %d of %d", ErrPending, st.Closes, st.Quorum, h.next-1, finalizedHead, st.CloseHeight)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	ls, ok := h.listed[key]
	if !ok {
		return nil
	}
	if !containsTx(ls, txHash) {
		return fmt.Errorf("%w: %s is listed for another transaction", ErrListed, key)
	}
	if len(ls) > 1 && !qcForTx {
		return fmt.Errorf("%w: %s is listed for %d transactions and no QC for this one is known", ErrListed, key, len(ls))
	}
	return nil
}

// Release forgets a listed key: the chain's nonce for it has passed, or
// the transactions listed for it can no longer be included.
func (h *Handover) Release(key qc.ContentionKey) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.forget(key)
}

// forget drops a listed key; h.mu is held.
func (h *Handover) forget(key qc.ContentionKey) {
	delete(h.listed, key)
	if keys := h.senders[key.Sender]; keys != nil {
		delete(keys, key)
		if len(keys) == 0 {
			delete(h.senders, key.Sender)
		}
	}
}

// Keys returns the listed keys.
func (h *Handover) Keys() []qc.ContentionKey {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]qc.ContentionKey, 0, len(h.listed))
	for k := range h.listed {
		out = append(out, k)
	}
	return out
}

// ListedFor returns the transactions listed for key (nil if none).
func (h *Handover) ListedFor(key qc.ContentionKey) []*Listed {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*Listed(nil), h.listed[key]...)
}

// ListedBySender returns the listed transactions of sender by key.
func (h *Handover) ListedBySender(sender qc.Address) map[qc.ContentionKey][]*Listed {
	h.mu.Lock()
	defer h.mu.Unlock()
	keys := h.senders[sender]
	if len(keys) == 0 {
		return nil
	}
	out := make(map[qc.ContentionKey][]*Listed, len(keys))
	for k := range keys {
		out[k] = append([]*Listed(nil), h.listed[k]...)
	}
	return out
}

// PendingDebit returns what the listed transactions of sender may still
// take from its balance: per listed key the largest listed amount (one of
// them at most can settle for a nonce).
func (h *Handover) PendingDebit(sender qc.Address) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var sum uint64
	for k := range h.senders[sender] {
		var most uint64
		for _, l := range h.listed[k] {
			most = max(most, l.Effects.Amount)
		}
		sum += most
	}
	return sum
}

// CarryForward returns the entries this member must list in its own close
// of the new epoch for keys it adopted and that are still listed: each
// listed transaction with the certificate it was adopted with.
func (h *Handover) CarryForward() []qc.CloseEntry {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []qc.CloseEntry
	for _, ls := range h.listed {
		for _, l := range ls {
			out = append(out, qc.CloseEntry{Request: l.Request, Cert: l.Cert, CertEpoch: l.CertEpoch})
		}
	}
	return out
}
