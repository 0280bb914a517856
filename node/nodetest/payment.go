package nodetest

import (
	"crypto/ecdsa"
	"math/big"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/client"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// Key returns a deterministic secp256k1 key for name.
func Key(name string) *ecdsa.PrivateKey {
	k, err := crypto.ToECDSA(crypto.Keccak256([]byte("nodetest-" + name)))
	if err != nil {
		panic(err)
	}
	return k
}

// Address returns key's address.
func Address(key *ecdsa.PrivateKey) common.Address { return crypto.PubkeyToAddress(key.PublicKey) }

// FundedChain returns an in-memory chain at block 10 where each of keys
// holds balance units of the dev chain's token.
func FundedChain(balance int64, keys ...*ecdsa.PrivateKey) *tempo.MemChain {
	c := tempo.NewMemChain()
	for _, k := range keys {
		c.SetBalance(devkit.TokenAddress, Address(k), big.NewInt(balance))
	}
	c.SetHead(10)
	return c
}

// MaxFee is a request's maximum fee under Tempo's fee rule, in token units:
// the client library's default gas limit and fee cap, / 10^12.
var MaxFee = new(big.Int).Div(new(big.Int).Mul(big.NewInt(client.DefaultGasLimit), client.DefaultMaxFeePerGas), big.NewInt(1e12)).Uint64()

// Pay is a payment request under construction: an EIP-1559 transfer of the
// dev chain's token, built with the client library.
type Pay struct {
	Key       *ecdsa.PrivateKey
	ChainID   uint64
	Nonce     uint64
	Recipient common.Address
	Amount    uint64
	Parent    *qc.QC // sets parent_qc_hash and carries the QC
	MaxHeight uint64 // expiry; default 1,000,000
}

// Request signs the payment and wraps it as a FastPay request.
func (p Pay) Request(t testing.TB) *fastpayv1.SubmitFastPayRequest {
	t.Helper()
	height := p.MaxHeight
	if height == 0 {
		height = 1_000_000
	}
	opts := []client.PaymentOption{client.WithMaxBlockHeight(height)}
	if p.Parent != nil {
		opts = append(opts, client.WithParent(p.Parent))
	}
	req, err := client.NewEVMPayment(p.Key, p.ChainID, p.Nonce, devkit.TokenAddress, p.Recipient, p.Amount, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// The accounts of in-process tests: each holds 100 dollars in Funded.
var (
	Alice = Key("alice")
	Bob   = Key("bob")
	Carol = Key("carol")
)

// Funded returns an in-memory chain at block 10 where Alice, Bob and Carol
// hold 100 dollars each.
func Funded() *tempo.MemChain { return FundedChain(100_000_000, Alice, Bob, Carol) }
