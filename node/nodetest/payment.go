package nodetest

import (
	"crypto/ecdsa"
	"math/big"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
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

// Pay is a payment request under construction.
type Pay struct {
	Key       *ecdsa.PrivateKey
	ChainID   uint64
	Nonce     uint64
	Recipient common.Address
	Amount    uint64
	Parent    *qc.QC // sets parent_qc_hash and carries the QC
	MaxHeight uint64 // expiry; default 1,000,000
}

// Fee terms of every request: gas limit and fee cap (wei per gas).
const (
	payGas       = 250_000
	payGasFeeCap = 100_000_000_000
)

// MaxFee is a request's maximum fee under Tempo's fee rule, in token units:
// gas × fee cap / 10^12.
const MaxFee = payGas * payGasFeeCap / 1_000_000_000_000

// Request signs an EIP-1559 token transfer and wraps it as a FastPay
// request.
func (p Pay) Request(t testing.TB) *fastpayv1.SubmitFastPayRequest {
	t.Helper()
	data := make([]byte, 4+64)
	copy(data, []byte{0xa9, 0x05, 0x9c, 0xbb})
	copy(data[4+12:], p.Recipient[:])
	new(big.Int).SetUint64(p.Amount).FillBytes(data[4+32:])
	chainID := new(big.Int).SetUint64(p.ChainID)
	token := devkit.TokenAddress
	tx, err := types.SignTx(types.NewTx(&types.DynamicFeeTx{
		ChainID: chainID, Nonce: p.Nonce, GasTipCap: big.NewInt(1_000_000_000), GasFeeCap: big.NewInt(payGasFeeCap),
		Gas: payGas, To: &token, Value: new(big.Int), Data: data,
	}), types.LatestSignerForChainID(chainID), p.Key)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := tx.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	height := p.MaxHeight
	if height == 0 {
		height = 1_000_000
	}
	req := &fastpayv1.SubmitFastPayRequest{Tx: &fastpayv1.FastPayTx{
		ChainId:       &fastpayv1.ChainId{Value: p.ChainID},
		TempoTx:       &fastpayv1.TempoTxBytes{Data: raw},
		Nonce:         &fastpayv1.Nonce2D{NonceKeyBe: make([]byte, 32), NonceSeq: p.Nonce},
		Expiry:        &fastpayv1.Expiry{Kind: &fastpayv1.Expiry_MaxBlockHeight{MaxBlockHeight: height}},
		TempoTxFormat: fastpayv1.TempoTxFormat_EVM_OPAQUE_BYTES_V1,
	}}
	if p.Parent != nil {
		req.Tx.ParentQcHash = append([]byte(nil), p.Parent.Hash[:]...)
		req.ParentQcs = []*fastpayv1.QuorumCertificate{fastpayv1.NewQuorumCertificate(p.Parent)}
	}
	return req
}
