package devkit

import (
	"crypto/ecdsa"
	"fmt"
	"math/big"
	"strconv"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
)

// Account is a funded genesis account with a deterministic, publicly known
// private key. Never use these keys outside development chains.
type Account struct {
	Name    string
	Key     *ecdsa.PrivateKey
	Address common.Address
	// Tokens is the genesis token balance in units (1 dollar = 1_000_000).
	Tokens uint64
}

// Genesis token balances of the demo accounts.
const (
	AliceTokens = 15 * Dollar
	BobTokens   = 5 * Dollar
	CarolTokens = 5 * Dollar
	// LoadTokens is the genesis balance of every load-test account.
	LoadTokens = 1_000_000 * Dollar
)

// GenesisEther is the ETH (in wei) every funded account receives for gas:
// 10,000 ETH.
var GenesisEther = new(big.Int).Mul(big.NewInt(10_000), big.NewInt(1e18))

// DeterministicKey returns the private key keccak256(seed).
func DeterministicKey(seed string) *ecdsa.PrivateKey {
	key, err := crypto.ToECDSA(crypto.Keccak256([]byte(seed)))
	if err != nil {
		// keccak256 output ≥ the curve order: astronomically unlikely, and
		// the seeds used here are fixed and tested.
		panic(fmt.Sprintf("devchain: seed %q gives no valid key: %v", seed, err))
	}
	return key
}

func newAccount(name, seed string, tokens uint64) Account {
	key := DeterministicKey(seed)
	return Account{Name: name, Key: key, Address: crypto.PubkeyToAddress(key.PublicKey), Tokens: tokens}
}

// DemoAccounts returns Alice (15 dollars), Bob (5) and Carol (5), whose keys
// are keccak256("allegro-demo-alice"), keccak256("allegro-demo-bob") and
// keccak256("allegro-demo-carol"):
//
//	alice 0xc55A68109eCCBC8daA8e7e8Fc703A7DD44FB17A9
//	bob   0xBa009677d5DC2699804BB5c11c6C284C406c64c0
//	carol 0x05E4142955fDFFFae409f596305B94A06Fef0572
func DemoAccounts() []Account {
	return []Account{
		newAccount("alice", "allegro-demo-alice", AliceTokens),
		newAccount("bob", "allegro-demo-bob", BobTokens),
		newAccount("carol", "allegro-demo-carol", CarolTokens),
	}
}

// ValidatorConfigOwner is the owner of the development chain's
// ValidatorConfig (the only account that may add validators or change their
// status), key keccak256("allegro-demo-validator-config-owner"), funded with
// ether for gas and no tokens.
func ValidatorConfigOwner() Account {
	return newAccount("validator-config-owner", "allegro-demo-validator-config-owner", 0)
}

// LoadAccounts returns the first n load-test accounts, named "load-<i>" with
// key keccak256("allegro-load-<i>") for i = 0..n-1 (decimal i), each holding
// 1,000,000 dollars at genesis (load-0 is
// 0x5C83D6c3b3bC921331F531d55F0AbAD51B8B6275).
func LoadAccounts(n int) []Account {
	if n < 0 {
		n = 0
	}
	out := make([]Account, n)
	for i := range n {
		s := strconv.Itoa(i)
		out[i] = newAccount("load-"+s, "allegro-load-"+s, LoadTokens)
	}
	return out
}

// ValidatorAddress is the validator address the dev tools give a consensus
// key in the dev chain's ValidatorConfig: the last 20 bytes of
// keccak256(public key).
func ValidatorAddress(pub [32]byte) common.Address {
	return common.BytesToAddress(crypto.Keccak256(pub[:])[12:])
}
