package committee

import (
	"errors"
	"fmt"
	"math"
)

// ErrEpochOutOfRange marks an epoch whose blocks lie beyond uint64 heights.
var ErrEpochOutOfRange = errors.New("committee: epoch out of range")

// Schedule cuts the chain into mesh epochs of EpochLength blocks (SPEC §5a):
// epoch e is the blocks [e·L, (e+1)·L), and its committee is the active
// validator set in the state after block e·L − 1, the last block of epoch
// e − 1 (for epoch 0 the genesis state, block 0). Every sidecar derives the
// same committee because it reads the same block. Methods other than
// Validate need a schedule that passed Validate.
type Schedule struct {
	// EpochLength is L, a network parameter (Tempo's testnet: 21,600).
	EpochLength uint64 `toml:"epoch_length"`
}

// Validate checks the epoch length.
func (s Schedule) Validate() error {
	if s.EpochLength == 0 {
		return errors.New("epoch_length must be positive")
	}
	return nil
}

// EpochOf returns the epoch block height belongs to: height / L.
func (s Schedule) EpochOf(height uint64) uint64 { return height / s.EpochLength }

// FirstBlock returns e·L, the first block of epoch e: members of committee
// e − 1 stop signing once their finalized head reaches it.
func (s Schedule) FirstBlock(e uint64) (uint64, error) {
	if e > math.MaxUint64/s.EpochLength {
		return 0, fmt.Errorf("%w: epoch %d of %d blocks starts beyond block 2^64", ErrEpochOutOfRange, e, s.EpochLength)
	}
	return e * s.EpochLength, nil
}

// CommitteeBlock returns the block whose post-state holds the validator set
// of committee e: e·L − 1, or 0 (genesis) for epoch 0.
func (s Schedule) CommitteeBlock(e uint64) (uint64, error) {
	if e == 0 {
		return 0, nil
	}
	first, err := s.FirstBlock(e)
	if err != nil {
		return 0, err
	}
	return first - 1, nil
}
