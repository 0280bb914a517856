// Package devkit is what clients, tools and tests need to use the embedded
// development chain: its chain id, its TIP-20 token, its funded accounts
// with publicly known keys, and transaction signing for them. The chain
// itself (a go-ethereum node) is package tempo/devchain, which only
// development tools link.
package devkit

import (
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
)

// ChainID is the development chain's id (Tempo's dev chain id).
const ChainID = 1337

// TokenAddress is where the genesis places the TIP-20-style token.
var TokenAddress = common.HexToAddress("0x20c0000000000000000000000000000000000001")

// TokenDecimals is the token's decimals(): 1 dollar = 10^6 units.
const TokenDecimals = 6

// Dollar is one dollar in token units.
const Dollar = 1_000_000

// Function selectors served by the token contract.
var (
	SelectorBalanceOf        = [4]byte{0x70, 0xa0, 0x82, 0x31} // balanceOf(address)
	SelectorTransfer         = [4]byte{0xa9, 0x05, 0x9c, 0xbb} // transfer(address,uint256)
	SelectorTransferWithMemo = [4]byte{0x95, 0x77, 0x7d, 0x59} // transferWithMemo(address,uint256,bytes32)
	SelectorDecimals         = [4]byte{0x31, 0x3c, 0xe5, 0x67} // decimals()
	SelectorTotalSupply      = [4]byte{0x18, 0x16, 0x0d, 0xdd} // totalSupply()
)

// Event topics and the revert error the token emits.
var (
	// TransferEventTopic is keccak256("Transfer(address,address,uint256)"),
	// the standard ERC-20 event (from and to indexed, value in data).
	TransferEventTopic = crypto.Keccak256Hash([]byte("Transfer(address,address,uint256)"))
	// TransferWithMemoEventTopic is
	// keccak256("TransferWithMemo(address,address,uint256,bytes32)"): from, to
	// and memo indexed, value in data. transferWithMemo emits Transfer first,
	// then TransferWithMemo.
	TransferWithMemoEventTopic = crypto.Keccak256Hash([]byte("TransferWithMemo(address,address,uint256,bytes32)"))
	// InsufficientBalanceSelector is the 4-byte selector of the revert error
	// InsufficientBalance(uint256 available, uint256 required, address token).
	InsufficientBalanceSelector = [4]byte(crypto.Keccak256([]byte("InsufficientBalance(uint256,uint256,address)"))[:4])
)
