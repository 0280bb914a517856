package apiserver

import (
	"github.com/allegro-mesh/allegro/bulletin"
	"github.com/allegro-mesh/allegro/qc"
)

// EpochBoard is the bulletin board of an earlier epoch, kept readable after
// that epoch's node stopped.
type EpochBoard struct {
	Epoch uint64
	Board *bulletin.Board
}

// EarlierBoards is implemented by backends of sidecars that change epochs:
// the boards of the last epochs before the current one, newest first. A
// payment certified just before a boundary stays visible to its wallet
// after it: the transaction status, its QC, the bulletin (with ?epoch=E)
// and the evidence read them too.
type EarlierBoards interface {
	EarlierBoards() []EpochBoard
}

// earlierBoards returns the backend's earlier boards (none when it keeps
// none).
func (s *Server) earlierBoards() []EpochBoard {
	if eb, ok := s.backend.(EarlierBoards); ok {
		return eb.EarlierBoards()
	}
	return nil
}

// boardOf returns the board of epoch e: the current one, or an earlier one
// still kept.
func (s *Server) boardOf(e uint64) (*bulletin.Board, bool) {
	if s.backend.Info().Epoch == e {
		return s.backend.Board(), true
	}
	for _, eb := range s.earlierBoards() {
		if eb.Epoch == e {
			return eb.Board, true
		}
	}
	return nil, false
}

// boardEpochs lists the epochs whose boards the node serves: the current
// first, then the earlier ones, newest first.
func (s *Server) boardEpochs(current uint64) []U64 {
	out := []U64{U64(current)}
	for _, eb := range s.earlierBoards() {
		out = append(out, U64(eb.Epoch))
	}
	return out
}

// txStatus finds a transaction's status on the current board, else on an
// earlier one. A transaction certified before a boundary and signed again
// after it (it had not settled) has its QC on the earlier board: the QC is
// taken from there.
func (s *Server) txStatus(h qc.Hash) (bulletin.TxStatus, bool) {
	st, ok := s.backend.Board().Status(h)
	for _, eb := range s.earlierBoards() {
		if ok && st.QC != nil {
			break
		}
		old, found := eb.Board.Status(h)
		switch {
		case !found:
		case !ok:
			st, ok = old, true
		case old.QC != nil:
			st.QC, st.QCAt = old.QC, old.QCAt
		}
	}
	return st, ok
}

// txQC finds a transaction's QC on the current board, else on an earlier
// one.
func (s *Server) txQC(h qc.Hash) (*qc.QC, bool) {
	if q, ok := s.backend.Board().QC(h); ok {
		return q, true
	}
	for _, eb := range s.earlierBoards() {
		if q, ok := eb.Board.QC(h); ok {
			return q, true
		}
	}
	return nil, false
}
