package validator

import (
	"context"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
)

var (
	otherToken = common.HexToAddress("0x20c0000000000000000000000000000000000002")
	daveKey    = mustKey("dave")
	dave       = addressOf(daveKey)
)

// feeTx is a type-0x76 payment of amount from alice to bob in token with
// a gas limit of 250,000 and a fee cap of 4 gwei: a maximum fee of 1,000
// token units under Tempo's rule.
type feeTx struct {
	amount   *big.Int
	feeToken *common.Address
	sponsor  bool // dave pays the fee
	before   *uint64
	after    *uint64
}

const feeTxFee = 1_000

func (f feeTx) request(t *testing.T) *fastpayv1.SubmitFastPayRequest {
	t.Helper()
	tx := &tempo.TempoTx{
		ChainID: testChainID, GasLimit: 250_000, MaxFeePerGas: big.NewInt(4_000_000_000),
		Calls:       []tempo.Call{{To: &token, Input: transferCalldata(bob, f.amount)}},
		FeeToken:    f.feeToken,
		Sponsored:   f.sponsor,
		ValidBefore: f.before,
		ValidAfter:  f.after,
	}
	if err := tx.SignSecp256k1(aliceKey); err != nil {
		t.Fatal(err)
	}
	if f.sponsor {
		if err := tx.SignFeePayer(daveKey, alice); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := tx.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return &fastpayv1.SubmitFastPayRequest{Tx: &fastpayv1.FastPayTx{
		ChainId:       &fastpayv1.ChainId{Value: testChainID},
		TempoTx:       &fastpayv1.TempoTxBytes{Data: raw},
		Nonce:         &fastpayv1.Nonce2D{NonceKeyBe: make([]byte, 32)},
		Expiry:        &fastpayv1.Expiry{Kind: &fastpayv1.Expiry_MaxBlockHeight{MaxBlockHeight: 1000}},
		TempoTxFormat: fastpayv1.TempoTxFormat_TEMPO_NATIVE_V1,
	}}
}

func unixAfter(d time.Duration) *uint64 {
	u := uint64(time.Now().Add(d).Unix())
	return &u
}

// TestFees: the validator signs only when the payer can pay the maximum fee
// in the fee token Tempo would charge, besides the amount.
func TestFees(t *testing.T) {
	amount := dollars(10)
	units := func(n int64) *big.Int { return big.NewInt(n) }
	cases := []struct {
		name    string
		tx      feeTx
		fees    tempo.FeeModel
		setup   func(c *tempo.MemChain)
		want    fastpayv1.RejectCode // UNSPECIFIED: certified
		message string               // in the reject's message
	}{
		{"balance = amount, fee from the same token", feeTx{amount: amount}, nil,
			func(c *tempo.MemChain) { c.SetBalance(token, alice, dollars(10)) },
			fastpayv1.RejectCode_INSUFFICIENT_FUNDS, "maximum fee of 1000"},
		{"balance = amount + fee", feeTx{amount: amount}, nil,
			func(c *tempo.MemChain) { c.SetBalance(token, alice, dollarsLess(10, -feeTxFee)) },
			fastpayv1.RejectCode_REJECT_CODE_UNSPECIFIED, ""},
		{"preference set, nothing of that token", feeTx{amount: amount}, nil,
			func(c *tempo.MemChain) {
				c.SetBalance(token, alice, dollars(50))
				c.SetFeeToken(alice, otherToken)
			},
			fastpayv1.RejectCode_INSUFFICIENT_FUNDS, "fee token " + otherToken.Hex()},
		{"preference set, fee in that token", feeTx{amount: amount}, nil,
			func(c *tempo.MemChain) {
				c.SetBalance(token, alice, dollars(10))
				c.SetBalance(otherToken, alice, units(feeTxFee))
				c.SetFeeToken(alice, otherToken)
			},
			fastpayv1.RejectCode_REJECT_CODE_UNSPECIFIED, ""},
		{"fee_token field beats the preference", feeTx{amount: amount, feeToken: &otherToken}, nil,
			func(c *tempo.MemChain) {
				c.SetBalance(token, alice, dollars(10))
				c.SetBalance(otherToken, alice, units(feeTxFee-1))
				c.SetFeeToken(alice, token)
			},
			fastpayv1.RejectCode_INSUFFICIENT_FUNDS, "fee token " + otherToken.Hex()},
		{"fee_token not a TIP-20 token", feeTx{amount: amount, feeToken: &dave}, nil,
			func(c *tempo.MemChain) { c.SetBalance(token, alice, dollars(50)) },
			fastpayv1.RejectCode_INVALID_FORMAT, "not a TIP-20"},
		{"sponsored: the fee payer pays", feeTx{amount: amount, sponsor: true}, nil,
			func(c *tempo.MemChain) {
				c.SetBalance(token, alice, dollars(10))
				c.SetBalance(token, dave, units(feeTxFee))
			},
			fastpayv1.RejectCode_REJECT_CODE_UNSPECIFIED, ""},
		{"sponsored: the fee payer cannot pay", feeTx{amount: amount, sponsor: true}, nil,
			func(c *tempo.MemChain) {
				c.SetBalance(token, alice, dollars(50))
				c.SetBalance(token, dave, units(feeTxFee-1))
			},
			fastpayv1.RejectCode_INSUFFICIENT_FUNDS, "fee payer " + dave.Hex()},
		{"native gas: no native balance", feeTx{amount: amount}, tempo.NativeFees{},
			func(c *tempo.MemChain) { c.SetBalance(token, alice, dollars(50)) },
			fastpayv1.RejectCode_INSUFFICIENT_FUNDS, "(native gas)"},
		{"native gas: enough", feeTx{amount: amount}, tempo.NativeFees{},
			func(c *tempo.MemChain) {
				c.SetBalance(token, alice, dollars(10))
				c.SetBalance(tempo.NativeGas, alice, big.NewInt(250_000*4_000_000_000))
			},
			fastpayv1.RejectCode_REJECT_CODE_UNSPECIFIED, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 4)
			tc.setup(c.chain)
			cfg := DefaultConfig()
			cfg.Fees = tc.fees
			v := c.validatorWith(t, 0, "", cfg)
			_, err := v.Submit(context.Background(), tc.tx.request(t))
			if tc.want == fastpayv1.RejectCode_REJECT_CODE_UNSPECIFIED {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantReject(t, err, tc.want)
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("reject %q does not mention %q", err, tc.message)
			}
		})
	}
}

// TestFeeReservedFromPayer: a sponsor's reserved fee counts against its
// own payments, and the reservation survives a restart.
func TestFeeReservedFromPayer(t *testing.T) {
	c := newCluster(t, 4)
	c.chain.SetBalance(token, alice, dollars(10))
	c.chain.SetBalance(token, dave, dollarsLess(1, -feeTxFee))
	dir := t.TempDir()
	v := c.validatorWith(t, 0, dir, DefaultConfig())
	if _, err := v.Submit(context.Background(), feeTx{amount: dollars(10), sponsor: true}.request(t)); err != nil {
		t.Fatal(err)
	}
	if o := v.OverlayOf(qc.Address(dave)); len(o.Fees) != 1 || o.Fees[0].Amount.Int64() != feeTxFee || len(o.Debits) != 0 {
		t.Fatalf("dave's overlay %+v", o)
	}
	if err := v.store.Close(); err != nil {
		t.Fatal(err)
	}
	v = c.validatorWith(t, 0, dir, DefaultConfig())
	// Dave has 1 dollar left after the reserved fee: with his own fee he can
	// pay 1 dollar less one fee, not a unit more.
	_, err := v.Submit(context.Background(), pay(daveKey, 0, carol, dollarsLess(1, testFee-1)).request(t))
	wantReject(t, err, fastpayv1.RejectCode_INSUFFICIENT_FUNDS)
	if _, err := v.Submit(context.Background(), pay(daveKey, 0, carol, dollarsLess(1, testFee)).request(t)); err != nil {
		t.Fatal(err)
	}
}

// TestValidityMargin: a 0x76 transaction is certified only when it stays
// valid for the settlement margin, and not long before it becomes valid.
func TestValidityMargin(t *testing.T) {
	cases := []struct {
		name string
		tx   feeTx
		want fastpayv1.RejectCode
	}{
		{"valid_before beyond the margin", feeTx{before: unixAfter(30 * time.Second)}, fastpayv1.RejectCode_REJECT_CODE_UNSPECIFIED},
		{"valid_before inside the margin", feeTx{before: unixAfter(5 * time.Second)}, fastpayv1.RejectCode_EXPIRED},
		{"valid_after within the margin", feeTx{after: unixAfter(5 * time.Second)}, fastpayv1.RejectCode_REJECT_CODE_UNSPECIFIED},
		{"valid_after beyond the margin", feeTx{after: unixAfter(time.Minute)}, fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE},
		{"valid_after passed", feeTx{after: unixAfter(-time.Minute)}, fastpayv1.RejectCode_REJECT_CODE_UNSPECIFIED},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 4)
			c.chain.SetBalance(token, alice, dollars(50))
			v := c.validatorWith(t, 0, "", DefaultConfig())
			tc.tx.amount = dollars(1)
			_, err := v.Submit(context.Background(), tc.tx.request(t))
			if tc.want == fastpayv1.RejectCode_REJECT_CODE_UNSPECIFIED {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantReject(t, err, tc.want)
		})
	}
}
