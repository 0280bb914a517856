package bulletin

import (
	"sync"
	"sync/atomic"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// EventKind says what an Event carries.
type EventKind uint8

// Event kinds.
const (
	EventCertificate EventKind = iota + 1
	EventQC
	EventLifecycle
	EventEquivocation
	EventSettlementFailure
)

func (k EventKind) String() string {
	switch k {
	case EventCertificate:
		return "certificate"
	case EventQC:
		return "qc"
	case EventLifecycle:
		return "lifecycle"
	case EventEquivocation:
		return "equivocation"
	case EventSettlementFailure:
		return "settlement_failure"
	}
	return "unknown"
}

// Stage is a transaction's lifecycle stage (the wire enum).
type Stage = fastpayv1.TxLifecycleUpdate_Stage

// Event is one thing the board learned. Pointers are shared between
// subscribers and must not be modified.
type Event struct {
	Kind EventKind
	// Seq numbers the board's events in emission order, from 1.
	Seq         uint64
	TxHash      qc.Hash
	UnixMillis  uint64
	Cert        *qc.Certificate  // EventCertificate
	QC          *qc.QC           // EventQC
	Stage       Stage            // EventLifecycle
	BlockHeight uint64           // EventLifecycle
	Evidence    *qc.Equivocation // EventEquivocation
	Reason      string           // EventSettlementFailure
	Sender      qc.Address       // when known
	Recipient   qc.Address       // when known
}

// Subscription delivers events matching its filter until closed.
type Subscription struct {
	ch      chan Event
	filter  func(*Event) bool
	dropped atomic.Uint64
	once    sync.Once
	board   *Board
	id      uint64
}

// C returns the event channel. It is closed by Close.
func (s *Subscription) C() <-chan Event { return s.ch }

// Dropped returns how many events were lost because the subscriber lagged.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close ends the subscription and closes its channel.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.board.subMu.Lock()
		delete(s.board.subs, s.id)
		s.board.subMu.Unlock()
		close(s.ch)
	})
}
