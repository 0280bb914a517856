package qc

import (
	"errors"
	"fmt"
)

// Equivocation is proof that one committee seat signed two different
// transactions (or two different effects) for one contention key: one
// member twice, or two members of one seat (two sidecar keys bound to one
// consensus key). Anyone can check it with Committee.VerifyEquivocation.
type Equivocation struct {
	First  Certificate
	Second Certificate
}

// Signer returns the equivocating validator (the first certificate's signer).
func (e *Equivocation) Signer() ValidatorID { return e.First.Signer }

// Key returns the contention key signed twice.
func (e *Equivocation) Key() ContentionKey { return e.First.Effects.ContentionKey() }

// ErrNotEquivocation is returned for evidence that proves nothing.
var ErrNotEquivocation = errors.New("not equivocation evidence")

// CheckShape checks everything VerifyEquivocation does but membership,
// effects and signatures: one signer, one contention key, and a difference
// in transaction or effects.
func (e *Equivocation) CheckShape() error {
	if e.First.Signer != e.Second.Signer {
		return fmt.Errorf("%w: different signers", ErrNotEquivocation)
	}
	return e.checkConflict()
}

// checkConflict checks that the certificates conflict: one contention key,
// different transaction or effects.
func (e *Equivocation) checkConflict() error {
	if e.First.Effects.ContentionKey() != e.Second.Effects.ContentionKey() {
		return fmt.Errorf("%w: different contention keys", ErrNotEquivocation)
	}
	if e.First.TxHash == e.Second.TxHash && e.First.EffectsHash == e.Second.EffectsHash {
		return fmt.Errorf("%w: the same transaction and effects", ErrNotEquivocation)
	}
	return nil
}

// VerifyEquivocation checks that both certificates are valid, by one seat
// (one member, or two members of one seat), for one contention key, and
// differ in transaction or effects.
func (c *Committee) VerifyEquivocation(e *Equivocation) error {
	if e.First.Signer != e.Second.Signer {
		a, okA := c.SeatOf(e.First.Signer)
		b, okB := c.SeatOf(e.Second.Signer)
		if !okA || !okB || a != b {
			return fmt.Errorf("%w: signers of different seats", ErrNotEquivocation)
		}
	}
	if err := e.checkConflict(); err != nil {
		return err
	}
	if err := c.VerifyCertificate(&e.First); err != nil {
		return fmt.Errorf("first certificate: %w", err)
	}
	if err := c.VerifyCertificate(&e.Second); err != nil {
		return fmt.Errorf("second certificate: %w", err)
	}
	return nil
}
