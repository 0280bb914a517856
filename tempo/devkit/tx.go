package devkit

import (
	"crypto/ecdsa"
	"errors"
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
)

// DefaultTransferGas is the gas limit SignTransfer uses when given 0. The dev
// chain runs the newest forks, where a transfer to a new holder costs about
// 146k gas; 250k leaves room. Estimate (eth_estimateGas) when it matters.
const DefaultTransferGas = 250_000

// Fees are EIP-1559 fee caps in wei. Zero fields take DefaultFees' values.
type Fees struct {
	MaxFeePerGas         *big.Int
	MaxPriorityFeePerGas *big.Int
}

// DefaultFees are generous for the dev chain: tip 1 gwei, cap 100 gwei (the
// base fee starts at 1 gwei and falls while blocks are empty).
func DefaultFees() Fees {
	return Fees{MaxFeePerGas: big.NewInt(100e9), MaxPriorityFeePerGas: big.NewInt(1e9)}
}

// TransferCalldata encodes transfer(to, amount).
func TransferCalldata(to common.Address, amount *big.Int) []byte {
	data := make([]byte, 4+64)
	copy(data, SelectorTransfer[:])
	copy(data[4+12:], to.Bytes())
	amount.FillBytes(data[36:68])
	return data
}

// TransferWithMemoCalldata encodes transferWithMemo(to, amount, memo).
func TransferWithMemoCalldata(to common.Address, amount *big.Int, memo [32]byte) []byte {
	data := make([]byte, 4+96)
	copy(data, SelectorTransferWithMemo[:])
	copy(data[4+12:], to.Bytes())
	amount.FillBytes(data[36:68])
	copy(data[68:], memo[:])
	return data
}

// BalanceOfCalldata encodes balanceOf(holder).
func BalanceOfCalldata(holder common.Address) []byte {
	data := make([]byte, 4+32)
	copy(data, SelectorBalanceOf[:])
	copy(data[4+12:], holder.Bytes())
	return data
}

// SignTransfer returns a signed EIP-1559 transaction calling
// TokenAddress.transfer(to, amount) from key's address. gasLimit 0 means
// DefaultTransferGas; nil fee fields mean DefaultFees.
func SignTransfer(key *ecdsa.PrivateKey, nonce uint64, to common.Address, amount *big.Int, chainID *big.Int, gasLimit uint64, fees Fees) (*types.Transaction, error) {
	return signTokenCall(key, nonce, TransferCalldata(to, amount), amount, chainID, gasLimit, fees)
}

// SignTransferWithMemo is SignTransfer for transferWithMemo(to, amount, memo).
func SignTransferWithMemo(key *ecdsa.PrivateKey, nonce uint64, to common.Address, amount *big.Int, memo [32]byte, chainID *big.Int, gasLimit uint64, fees Fees) (*types.Transaction, error) {
	return signTokenCall(key, nonce, TransferWithMemoCalldata(to, amount, memo), amount, chainID, gasLimit, fees)
}

func signTokenCall(key *ecdsa.PrivateKey, nonce uint64, data []byte, amount, chainID *big.Int, gasLimit uint64, fees Fees) (*types.Transaction, error) {
	if amount == nil || amount.Sign() < 0 || amount.BitLen() > 256 {
		return nil, errors.New("devchain: amount must be in [0, 2^256)")
	}
	return SignCall(key, nonce, TokenAddress, data, chainID, gasLimit, fees)
}

// DefaultCallGas is the gas limit SignCall uses when given 0: enough for
// the ValidatorConfig owner's calls, which store a validator's record of up
// to 18 new storage words (about 2 million gas under the dev chain's forks).
const DefaultCallGas = 4_000_000

// SignCall returns a signed EIP-1559 transaction calling contract to with
// data and no value. gasLimit 0 means DefaultCallGas (DefaultTransferGas
// for the token); nil fee fields mean DefaultFees.
func SignCall(key *ecdsa.PrivateKey, nonce uint64, to common.Address, data []byte, chainID *big.Int, gasLimit uint64, fees Fees) (*types.Transaction, error) {
	switch {
	case key == nil:
		return nil, errors.New("devchain: nil key")
	case chainID == nil || chainID.Sign() <= 0:
		return nil, errors.New("devchain: chain id must be positive")
	}
	if gasLimit == 0 && to == TokenAddress {
		gasLimit = DefaultTransferGas
	} else if gasLimit == 0 {
		gasLimit = DefaultCallGas
	}
	def := DefaultFees()
	if fees.MaxFeePerGas == nil {
		fees.MaxFeePerGas = def.MaxFeePerGas
	}
	if fees.MaxPriorityFeePerGas == nil {
		fees.MaxPriorityFeePerGas = def.MaxPriorityFeePerGas
	}
	tx := types.NewTx(&types.DynamicFeeTx{
		ChainID:   new(big.Int).Set(chainID),
		Nonce:     nonce,
		GasTipCap: new(big.Int).Set(fees.MaxPriorityFeePerGas),
		GasFeeCap: new(big.Int).Set(fees.MaxFeePerGas),
		Gas:       gasLimit,
		To:        &to,
		Value:     new(big.Int),
		Data:      data,
	})
	return types.SignTx(tx, types.LatestSignerForChainID(chainID), key)
}
