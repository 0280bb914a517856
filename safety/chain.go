package safety

import (
	"context"
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/rpc"

	"github.com/allegro-mesh/allegro/qc"
)

// balanceOfSelector is the ABI selector of balanceOf(address).
var balanceOfSelector = []byte{0x70, 0xa0, 0x82, 0x31}

// maxBatch bounds the calls sent in one JSON-RPC batch.
const maxBatch = 100

// Balances reads balanceOf(account) of token for every account from the
// chain's JSON-RPC endpoint at chainRPC, at the latest block; for
// NativeToken it reads the native balances (eth_getBalance), which pay gas
// on a chain with native fees.
func Balances(ctx context.Context, chainRPC string, token qc.Address, accounts []qc.Address) (map[qc.Address]*big.Int, error) {
	client, err := dial(ctx, chainRPC, "balances")
	if err != nil {
		return nil, err
	}
	defer client.Close()
	out := make(map[qc.Address]*big.Int, len(accounts))
	if token == NativeToken {
		results := make([]hexutil.Big, len(accounts))
		err := inBatches(ctx, client, chainRPC, "native balances", accounts,
			func(i int, a qc.Address) rpc.BatchElem {
				return rpc.BatchElem{Method: "eth_getBalance", Result: &results[i], Args: []any{common.Address(a), "latest"}}
			},
			func(i int, a qc.Address, err error) error {
				if err != nil {
					return fmt.Errorf("safety: native balance of %s: %w", a.Hex(), err)
				}
				out[a] = results[i].ToInt()
				return nil
			})
		if err != nil {
			return nil, err
		}
		return out, nil
	}
	to := common.Address(token)
	results := make([]hexutil.Bytes, len(accounts))
	err = inBatches(ctx, client, chainRPC, "balances", accounts,
		func(i int, a qc.Address) rpc.BatchElem {
			data := make([]byte, 4+32)
			copy(data, balanceOfSelector)
			copy(data[4+12:], a[:])
			return rpc.BatchElem{Method: "eth_call", Result: &results[i],
				Args: []any{map[string]any{"to": to, "data": hexutil.Bytes(data)}, "latest"}}
		},
		func(i int, a qc.Address, err error) error {
			if err != nil {
				return fmt.Errorf("safety: balanceOf(%s) of token %s: %w", a.Hex(), token.Hex(), err)
			}
			if len(results[i]) != 32 {
				return fmt.Errorf("safety: balanceOf(%s) of token %s: answer of %d bytes, want 32", a.Hex(), token.Hex(), len(results[i]))
			}
			out[a] = new(big.Int).SetBytes(results[i])
			return nil
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Nonces reads the next nonce (nonce key 0, eth_getTransactionCount at the
// latest block) of every account from chainRPC. On an error it returns the
// nonces read so far with it.
func Nonces(ctx context.Context, chainRPC string, accounts []qc.Address) (map[qc.Address]uint64, error) {
	out := make(map[qc.Address]uint64, len(accounts))
	if len(accounts) == 0 {
		return out, nil
	}
	client, err := dial(ctx, chainRPC, "nonces")
	if err != nil {
		return nil, err
	}
	defer client.Close()
	results := make([]hexutil.Uint64, len(accounts))
	err = inBatches(ctx, client, chainRPC, "nonces", accounts,
		func(i int, a qc.Address) rpc.BatchElem {
			return rpc.BatchElem{Method: "eth_getTransactionCount", Result: &results[i], Args: []any{common.Address(a), "latest"}}
		},
		func(i int, a qc.Address, err error) error {
			if err != nil {
				return fmt.Errorf("safety: nonce of %s: %w", a.Hex(), err)
			}
			out[a] = uint64(results[i])
			return nil
		})
	return out, err
}

// Included reads the receipts of txs (chain hashes) from the chain's
// JSON-RPC endpoint at chainRPC and returns the block of each that the chain
// holds with a successful receipt. Transactions unknown to the chain, or
// reverted, are absent: neither completed its payment. On an error it
// returns what it read so far with it.
func Included(ctx context.Context, chainRPC string, txs []qc.Hash) (map[qc.Hash]uint64, error) {
	out := make(map[qc.Hash]uint64)
	if len(txs) == 0 {
		return out, nil
	}
	client, err := dial(ctx, chainRPC, "receipts")
	if err != nil {
		return nil, err
	}
	defer client.Close()
	type receipt struct {
		BlockNumber *hexutil.Uint64 `json:"blockNumber"`
		Status      *hexutil.Uint64 `json:"status"`
	}
	results := make([]*receipt, len(txs))
	err = inBatches(ctx, client, chainRPC, "receipts", txs,
		func(i int, tx qc.Hash) rpc.BatchElem {
			return rpc.BatchElem{Method: "eth_getTransactionReceipt", Result: &results[i], Args: []any{common.Hash(tx)}}
		},
		func(i int, tx qc.Hash, err error) error {
			if err != nil {
				return fmt.Errorf("safety: receipt of %s: %w", tx, err)
			}
			if r := results[i]; r != nil && r.BlockNumber != nil && r.Status != nil && *r.Status == 1 {
				out[tx] = uint64(*r.BlockNumber)
			}
			return nil
		})
	return out, err
}

func dial(ctx context.Context, chainRPC, what string) (*rpc.Client, error) {
	client, err := rpc.DialContext(ctx, chainRPC)
	if err != nil {
		return nil, fmt.Errorf("safety: %s: dial %s: %w", what, chainRPC, err)
	}
	return client, nil
}

// inBatches makes one call per item, at most maxBatch to a JSON-RPC batch.
// call builds item i's call (its Result a place of the caller's); after each
// batch, answer is given every item of it in order with the call's own
// error, and the first error answer returns stops the work. A failed batch
// is "safety: <what> from <chainRPC>".
func inBatches[T any](ctx context.Context, client *rpc.Client, chainRPC, what string, items []T,
	call func(i int, item T) rpc.BatchElem, answer func(i int, item T, err error) error) error {
	for start := 0; start < len(items); start += maxBatch {
		end := min(start+maxBatch, len(items))
		batch := make([]rpc.BatchElem, 0, end-start)
		for i := start; i < end; i++ {
			batch = append(batch, call(i, items[i]))
		}
		if err := client.BatchCallContext(ctx, batch); err != nil {
			return fmt.Errorf("safety: %s from %s: %w", what, chainRPC, err)
		}
		for k, el := range batch {
			if err := answer(start+k, items[start+k], el.Error); err != nil {
				return err
			}
		}
	}
	return nil
}

func copyBalances(m map[qc.Address]*big.Int) map[qc.Address]*big.Int {
	out := make(map[qc.Address]*big.Int, len(m))
	for a, b := range m {
		out[a] = new(big.Int).Set(b)
	}
	return out
}
