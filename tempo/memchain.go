package tempo

import (
	"context"
	"math/big"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
)

// MemChain is an in-memory ChainReader for tests and simulations: balances and
// nonces are set directly, and every mutation can advance the head.
type MemChain struct {
	mu       sync.Mutex
	head     Head
	balances map[[2]common.Address]*big.Int
	nonces   map[nonceSlot]uint64
	feeToken map[common.Address]common.Address
	failWith error
	// shared is set when a view references the maps; the next mutation
	// copies them first, so views stay immutable and Latest stays O(1).
	shared bool
}

type nonceSlot struct {
	account common.Address
	key     [32]byte
}

// NewMemChain returns a chain at height 1 with no balances.
func NewMemChain() *MemChain {
	return &MemChain{
		head:     Head{Number: 1, UnixMillis: uint64(time.Now().UnixMilli())},
		balances: make(map[[2]common.Address]*big.Int),
		nonces:   make(map[nonceSlot]uint64),
		feeToken: make(map[common.Address]common.Address),
	}
}

func (m *MemChain) unshare() {
	if !m.shared {
		return
	}
	balances := make(map[[2]common.Address]*big.Int, len(m.balances))
	for k, b := range m.balances {
		balances[k] = b
	}
	nonces := make(map[nonceSlot]uint64, len(m.nonces))
	for k, n := range m.nonces {
		nonces[k] = n
	}
	feeToken := make(map[common.Address]common.Address, len(m.feeToken))
	for k, t := range m.feeToken {
		feeToken[k] = t
	}
	m.balances, m.nonces, m.feeToken, m.shared = balances, nonces, feeToken, false
}

// SetFeeToken sets account's preferred fee token (zero clears it), as
// Tempo's FeeManager setUserToken would.
func (m *MemChain) SetFeeToken(account, token common.Address) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.unshare()
	if token == (common.Address{}) {
		delete(m.feeToken, account)
		return
	}
	m.feeToken[account] = token
}

// SetBalance sets holder's balance of token.
func (m *MemChain) SetBalance(token, holder common.Address, amount *big.Int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.unshare()
	m.balances[[2]common.Address{token, holder}] = new(big.Int).Set(amount)
}

// SetNonce sets the chain's next nonce for (account, key).
func (m *MemChain) SetNonce(account common.Address, key [32]byte, next uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.unshare()
	m.nonces[nonceSlot{account, key}] = next
}

// SetHead moves the head to number.
func (m *MemChain) SetHead(number uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.head = Head{Number: number, UnixMillis: uint64(time.Now().UnixMilli())}
	m.head.Hash[0] = byte(number)
}

// FailWith makes every read fail with err (nil restores normal answers).
func (m *MemChain) FailWith(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failWith = err
}

// Latest implements ChainReader. Later mutations do not change the
// returned view.
func (m *MemChain) Latest(context.Context) (ChainView, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failWith != nil {
		return nil, m.failWith
	}
	m.shared = true
	return &memView{head: m.head, balances: m.balances, nonces: m.nonces, feeToken: m.feeToken}, nil
}

type memView struct {
	head     Head
	balances map[[2]common.Address]*big.Int
	nonces   map[nonceSlot]uint64
	feeToken map[common.Address]common.Address
}

func (v *memView) FeeTokenOf(_ context.Context, account common.Address) (common.Address, error) {
	return v.feeToken[account], nil
}

func (v *memView) Head() Head { return v.head }

func (v *memView) BalanceOf(_ context.Context, token, holder common.Address) (*big.Int, error) {
	if b, ok := v.balances[[2]common.Address{token, holder}]; ok {
		return new(big.Int).Set(b), nil
	}
	return new(big.Int), nil
}

func (v *memView) NonceOf(_ context.Context, account common.Address, key [32]byte) (uint64, error) {
	return v.nonces[nonceSlot{account, key}], nil
}
