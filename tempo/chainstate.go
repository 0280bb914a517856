package tempo

import (
	"context"
	"errors"
	"math/big"

	"github.com/ethereum/go-ethereum/common"
)

// Head identifies a block the chain has produced.
type Head struct {
	Number     uint64
	Hash       common.Hash
	UnixMillis uint64
}

// ErrChainUnavailable is returned (wrapped) by chain readers when the node
// cannot be reached or answered badly. Validators turn it into
// TEMPORARY_UNAVAILABLE rather than a definitive reject.
var ErrChainUnavailable = errors.New("chain unavailable")

// ChainReader gives consistent views of chain state. Implementations must be
// safe for concurrent use.
type ChainReader interface {
	// Latest returns a view pinned to the newest known head.
	Latest(ctx context.Context) (ChainView, error)
}

// ChainView is chain state read at one block (Head().Number). Every answer of
// one view is for that block, so balances and nonces are mutually consistent.
// Implementations must be safe for concurrent use.
type ChainView interface {
	Head() Head
	// BalanceOf returns holder's TIP-20 balance of token, in token units;
	// for NativeGas, holder's native balance.
	BalanceOf(ctx context.Context, token, holder common.Address) (*big.Int, error)
	// NonceOf returns the next nonce the chain expects for (account, nonceKey):
	// the protocol nonce for key 0, the nonce precompile's value otherwise.
	NonceOf(ctx context.Context, account common.Address, nonceKey [32]byte) (uint64, error)
	// FeeTokenOf returns account's preferred fee token in Tempo's
	// FeeManager, or the zero address when it has none (or the chain has no
	// FeeManager).
	FeeTokenOf(ctx context.Context, account common.Address) (common.Address, error)
}

// NonceReads asks one view for each (account, nonce key)'s nonce once. A
// pass over the pending payments of a few accounts, which mostly share a
// few nonce keys, then costs a read per key rather than per payment. It is
// not safe for concurrent use.
type NonceReads struct {
	view ChainView
	next map[nonceSlot]uint64
}

// NewNonceReads returns an empty NonceReads of view.
func NewNonceReads(view ChainView) *NonceReads {
	return &NonceReads{view: view, next: make(map[nonceSlot]uint64)}
}

// Included reports whether the transaction of account with nonce seq on
// nonceKey is on chain at the view: the chain's next nonce there has passed
// seq.
func (r *NonceReads) Included(ctx context.Context, account common.Address, nonceKey [32]byte, seq uint64) (bool, error) {
	next, err := r.Next(ctx, account, nonceKey)
	if err != nil {
		return false, err
	}
	return next > seq, nil
}

// Known returns the next nonce of account on nonceKey if this NonceReads
// has read it, without asking the view.
func (r *NonceReads) Known(account common.Address, nonceKey [32]byte) (uint64, bool) {
	next, ok := r.next[nonceSlot{account, nonceKey}]
	return next, ok
}

// Next returns the chain's next nonce of account on nonceKey at the view:
// every transaction there with a lower nonce is included.
func (r *NonceReads) Next(ctx context.Context, account common.Address, nonceKey [32]byte) (uint64, error) {
	slot := nonceSlot{account, nonceKey}
	next, ok := r.next[slot]
	if !ok {
		var err error
		if next, err = r.view.NonceOf(ctx, account, nonceKey); err != nil {
			return 0, err
		}
		r.next[slot] = next
	}
	return next, nil
}
