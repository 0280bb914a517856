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
	client, err := rpc.DialContext(ctx, chainRPC)
	if err != nil {
		return nil, fmt.Errorf("safety: balances: dial %s: %w", chainRPC, err)
	}
	defer client.Close()
	if token == NativeToken {
		return nativeBalances(ctx, client, chainRPC, accounts)
	}
	out := make(map[qc.Address]*big.Int, len(accounts))
	to := common.Address(token)
	for start := 0; start < len(accounts); start += maxBatch {
		chunk := accounts[start:min(start+maxBatch, len(accounts))]
		results := make([]hexutil.Bytes, len(chunk))
		batch := make([]rpc.BatchElem, len(chunk))
		for i, a := range chunk {
			data := make([]byte, 4+32)
			copy(data, balanceOfSelector)
			copy(data[4+12:], a[:])
			batch[i] = rpc.BatchElem{Method: "eth_call", Result: &results[i],
				Args: []any{map[string]any{"to": to, "data": hexutil.Bytes(data)}, "latest"}}
		}
		if err := client.BatchCallContext(ctx, batch); err != nil {
			return nil, fmt.Errorf("safety: balances from %s: %w", chainRPC, err)
		}
		for i, el := range batch {
			if el.Error != nil {
				return nil, fmt.Errorf("safety: balanceOf(%s) of token %s: %w", chunk[i].Hex(), token.Hex(), el.Error)
			}
			if len(results[i]) != 32 {
				return nil, fmt.Errorf("safety: balanceOf(%s) of token %s: answer of %d bytes, want 32", chunk[i].Hex(), token.Hex(), len(results[i]))
			}
			out[chunk[i]] = new(big.Int).SetBytes(results[i])
		}
	}
	return out, nil
}

// nativeBalances reads eth_getBalance of every account at the latest block.
func nativeBalances(ctx context.Context, client *rpc.Client, chainRPC string, accounts []qc.Address) (map[qc.Address]*big.Int, error) {
	out := make(map[qc.Address]*big.Int, len(accounts))
	for start := 0; start < len(accounts); start += maxBatch {
		chunk := accounts[start:min(start+maxBatch, len(accounts))]
		results := make([]hexutil.Big, len(chunk))
		batch := make([]rpc.BatchElem, len(chunk))
		for i, a := range chunk {
			batch[i] = rpc.BatchElem{Method: "eth_getBalance", Result: &results[i], Args: []any{common.Address(a), "latest"}}
		}
		if err := client.BatchCallContext(ctx, batch); err != nil {
			return nil, fmt.Errorf("safety: native balances from %s: %w", chainRPC, err)
		}
		for i, el := range batch {
			if el.Error != nil {
				return nil, fmt.Errorf("safety: native balance of %s: %w", chunk[i].Hex(), el.Error)
			}
			out[chunk[i]] = results[i].ToInt()
		}
	}
	return out, nil
}

// Nonces reads the next nonce (nonce key 0, eth_getTransactionCount at the
// latest block) of every account from chainRPC.
func Nonces(ctx context.Context, chainRPC string, accounts []qc.Address) (map[qc.Address]uint64, error) {
	out := make(map[qc.Address]uint64, len(accounts))
	if len(accounts) == 0 {
		return out, nil
	}
	client, err := rpc.DialContext(ctx, chainRPC)
	if err != nil {
		return nil, fmt.Errorf("safety: nonces: dial %s: %w", chainRPC, err)
	}
	defer client.Close()
	for start := 0; start < len(accounts); start += maxBatch {
		chunk := accounts[start:min(start+maxBatch, len(accounts))]
		results := make([]hexutil.Uint64, len(chunk))
		batch := make([]rpc.BatchElem, len(chunk))
		for i, a := range chunk {
			batch[i] = rpc.BatchElem{Method: "eth_getTransactionCount", Result: &results[i], Args: []any{common.Address(a), "latest"}}
		}
		if err := client.BatchCallContext(ctx, batch); err != nil {
			return out, fmt.Errorf("safety: nonces from %s: %w", chainRPC, err)
		}
		for i, el := range batch {
			if el.Error != nil {
				return out, fmt.Errorf("safety: nonce of %s: %w", chunk[i].Hex(), el.Error)
			}
			out[chunk[i]] = uint64(results[i])
		}
	}
	return out, nil
}

// Included reads the receipts of txs (chain hashes) from the chain's
// JSON-RPC endpoint at chainRPC and returns the block of each that the chain
// holds with a successful receipt. Transactions unknown to the chain, or
// reverted, are absent: neither completed its payment.
func Included(ctx context.Context, chainRPC string, txs []qc.Hash) (map[qc.Hash]uint64, error) {
	out := make(map[qc.Hash]uint64)
	if len(txs) == 0 {
		return out, nil
	}
	client, err := rpc.DialContext(ctx, chainRPC)
	if err != nil {
		return nil, fmt.Errorf("safety: receipts: dial %s: %w", chainRPC, err)
	}
	defer client.Close()
	type receipt struct {
		BlockNumber *hexutil.Uint64 `json:"blockNumber"`
		Status      *hexutil.Uint64 `json:"status"`
	}
	for start := 0; start < len(txs); start += maxBatch {
		chunk := txs[start:min(start+maxBatch, len(txs))]
		results := make([]*receipt, len(chunk))
		batch := make([]rpc.BatchElem, len(chunk))
		for i, tx := range chunk {
			batch[i] = rpc.BatchElem{Method: "eth_getTransactionReceipt", Result: &results[i], Args: []any{common.Hash(tx)}}
		}
		if err := client.BatchCallContext(ctx, batch); err != nil {
			return out, fmt.Errorf("safety: receipts from %s: %w", chainRPC, err)
		}
		for i, el := range batch {
			if el.Error != nil {
				return out, fmt.Errorf("safety: receipt of %s: %w", chunk[i], el.Error)
			}
			if r := results[i]; r != nil && r.BlockNumber != nil && r.Status != nil && *r.Status == 1 {
				out[chunk[i]] = uint64(*r.BlockNumber)
			}
		}
	}
	return out, nil
}

func copyBalances(m map[qc.Address]*big.Int) map[qc.Address]*big.Int {
	out := make(map[qc.Address]*big.Int, len(m))
	for a, b := range m {
		out[a] = new(big.Int).Set(b)
	}
	return out
}
