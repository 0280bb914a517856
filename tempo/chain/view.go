package chain

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/big"

	"github.com/allegro-mesh/allegro/tempo"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
)

// view reads state at one block number.
type view struct {
	c    *Client
	head tempo.Head
}

var _ tempo.ChainView = (*view)(nil)

func (v *view) Head() tempo.Head { return v.head }

func (v *view) blockTag() string { return hexutil.EncodeUint64(v.head.Number) }

// BalanceOf returns balanceOf(holder) of token at the view's block via
// eth_call (the answer must be exactly one 32-byte word), or for
// tempo.NativeGas holder's native balance (eth_getBalance).
func (v *view) BalanceOf(ctx context.Context, token, holder common.Address) (*big.Int, error) {
	q := queryKey{kind: queryBalance, a: token, b: holder}
	val, err := v.c.cached(ctx, v.head.Number, q, func(ctx context.Context) (any, error) {
		if token == tempo.NativeGas {
			var b *big.Int
			if err := v.c.call(ctx, "eth_getBalance", decodeBigQuantity(&b), holder, v.blockTag()); err != nil {
				return nil, err
			}
			return b, nil
		}
		data := make([]byte, 4+32)
		copy(data, selectorBalanceOf)
		copy(data[4+12:], holder.Bytes())
		var word [32]byte
		if err := v.c.call(ctx, "eth_call", decodeWord(&word), callArgs(token, data), v.blockTag()); err != nil {
			return nil, err
		}
		return new(big.Int).SetBytes(word[:]), nil
	})
	if err != nil {
		return nil, fmt.Errorf("chain: balanceOf(%s) of token %s at block %d: %w", holder, token, v.head.Number, err)
	}
	return new(big.Int).Set(val.(*big.Int)), nil
}

// NonceOf returns the next nonce of (account, nonceKey) at the view's block:
// eth_getTransactionCount for key 0, the nonce precompile's
// getNonce(account, key) otherwise.
func (v *view) NonceOf(ctx context.Context, account common.Address, nonceKey [32]byte) (uint64, error) {
	q := queryKey{kind: queryNonce, a: account, key: nonceKey}
	val, err := v.c.cached(ctx, v.head.Number, q, func(ctx context.Context) (any, error) {
		if nonceKey == ([32]byte{}) {
			var n uint64
			if err := v.c.call(ctx, "eth_getTransactionCount", decodeQuantity(&n), account, v.blockTag()); err != nil {
				return nil, err
			}
			return n, nil
		}
		var word [32]byte
		if err := v.c.call(ctx, "eth_call", decodeWord(&word), callArgs(NoncePrecompile, GetNonceCalldata(account, nonceKey)), v.blockTag()); err != nil {
			return nil, err
		}
		for _, b := range word[:24] {
			if b != 0 {
				f := &rpcFailure{method: "eth_call", kind: outcomeMalformed, err: malformed("nonce %x does not fit u64", word)}
				return nil, f
			}
		}
		return binary.BigEndian.Uint64(word[24:]), nil
	})
	if err != nil {
		return 0, fmt.Errorf("chain: nonce of (%s, key %x) at block %d: %w", account, nonceKey, v.head.Number, err)
	}
	return val.(uint64), nil
}

// FeeTokenOf returns account's preferred fee token from Tempo's FeeManager
// (getUserToken) at the view's block. A chain without a FeeManager answers
// with no data: no preference.
func (v *view) FeeTokenOf(ctx context.Context, account common.Address) (common.Address, error) {
	q := queryKey{kind: queryFeeToken, a: account}
	val, err := v.c.cached(ctx, v.head.Number, q, func(ctx context.Context) (any, error) {
		data := make([]byte, 4+32)
		copy(data, selectorGetUserToken)
		copy(data[4+12:], account.Bytes())
		var word [32]byte
		if err := v.c.call(ctx, "eth_call", decodeOptionalWord(&word), callArgs(tempo.FeeManager, data), v.blockTag()); err != nil {
			return nil, err
		}
		for _, b := range word[:12] {
			if b != 0 {
				return nil, &rpcFailure{method: "eth_call", kind: outcomeMalformed, err: malformed("getUserToken answer %x is not an address", word)}
			}
		}
		return common.BytesToAddress(word[12:]), nil
	})
	if err != nil {
		return common.Address{}, fmt.Errorf("chain: fee token of %s at block %d: %w", account, v.head.Number, err)
	}
	return val.(common.Address), nil
}

// GetNonceCalldata encodes getNonce(account, nonceKey) for the nonce
// precompile: 0x89535803 ‖ leftpad32(account) ‖ nonceKey.
func GetNonceCalldata(account common.Address, nonceKey [32]byte) []byte {
	data := make([]byte, 4+64)
	copy(data, selectorGetNonce)
	copy(data[4+12:], account.Bytes())
	copy(data[36:], nonceKey[:])
	return data
}

func callArgs(to common.Address, data []byte) map[string]any {
	return map[string]any{"to": to, "data": hexutil.Bytes(data)}
}

// cached answers q at block from the cache, or joins an identical request in
// flight, or fetches it. The fetch runs under the client's lifetime (not the
// caller's context, so one impatient caller does not fail the others) and
// RequestTimeout; each caller waits at most until its own ctx ends. Only
// successful answers are cached.
func (c *Client) cached(ctx context.Context, block uint64, q queryKey, fetch func(context.Context) (any, error)) (any, error) {
	if v, ok := c.cache.get(block, q); ok {
		c.metrics.cache.WithLabelValues("hit").Inc()
		return v, nil
	}
	life := c.lifeContext()
	if life.Err() != nil {
		return nil, fmt.Errorf("%w: %w", tempo.ErrChainUnavailable, ErrNotStarted)
	}
	ch := c.flights.DoChan(q.flightKey(block), func() (any, error) {
		if v, ok := c.cache.get(block, q); ok {
			return v, nil
		}
		c.metrics.cache.WithLabelValues("miss").Inc()
		v, err := fetch(life)
		if err == nil {
			c.cache.add(block, q, v)
		}
		return v, err
	})
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", tempo.ErrChainUnavailable, ctx.Err())
	case r := <-ch:
		if r.Shared {
			c.metrics.cache.WithLabelValues("shared").Inc()
		}
		return r.Val, r.Err
	}
}
