package validator

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
)

// nativeRequest builds a type-0x76 payment request from key with nonce
// (key, seq); mutate edits the transaction before signing and fix edits the
// request after.
func nativeRequest(t *testing.T, key *ecdsa.PrivateKey, nonceKey [32]byte, seq uint64, mutate func(*tempo.TempoTx), fix func(*fastpayv1.FastPayTx)) *fastpayv1.SubmitFastPayRequest {
	t.Helper()
	tx := &tempo.TempoTx{
		ChainID: testChainID, GasLimit: 250_000, NonceKey: nonceKey, Nonce: seq,
		Calls: []tempo.Call{{To: &token, Value: nil, Input: transferCalldata(bob, dollars(2))}},
	}
	if mutate != nil {
		mutate(tx)
	}
	if err := tx.SignSecp256k1(key); err != nil {
		t.Fatal(err)
	}
	raw, err := tx.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	req := &fastpayv1.SubmitFastPayRequest{Tx: &fastpayv1.FastPayTx{
		ChainId:       &fastpayv1.ChainId{Value: testChainID},
		TempoTx:       &fastpayv1.TempoTxBytes{Data: raw},
		Nonce:         &fastpayv1.Nonce2D{NonceKeyBe: append([]byte(nil), nonceKey[:]...), NonceSeq: seq},
		Expiry:        &fastpayv1.Expiry{Kind: &fastpayv1.Expiry_MaxBlockHeight{MaxBlockHeight: 1000}},
		TempoTxFormat: fastpayv1.TempoTxFormat_TEMPO_NATIVE_V1,
	}}
	if fix != nil {
		fix(req.Tx)
	}
	return req
}

func TestNativeTempoTx(t *testing.T) {
	userKey := [32]byte{31: 7}
	cases := []struct {
		name   string
		key    [32]byte
		mutate func(*tempo.TempoTx)
		fix    func(*fastpayv1.FastPayTx)
		want   fastpayv1.RejectCode // UNSPECIFIED: certified
	}{
		{"user nonce key", userKey, nil, nil, fastpayv1.RejectCode_REJECT_CODE_UNSPECIFIED},
		{"protocol nonce key", [32]byte{}, nil, nil, fastpayv1.RejectCode_REJECT_CODE_UNSPECIFIED},
		{"claimed key differs from the tx's", userKey, nil, func(tx *fastpayv1.FastPayTx) { tx.Nonce.NonceKeyBe[31] = 8 }, fastpayv1.RejectCode_INVALID_FORMAT},
		{"expiring nonce key", tempo.ExpiringNonceKey, nil, nil, fastpayv1.RejectCode_INVALID_FORMAT},
		{"non-canonical v", userKey, nil, func(tx *fastpayv1.FastPayTx) {
			raw := tx.TempoTx.Data
			raw[len(raw)-1] -= 27
		}, fastpayv1.RejectCode_INVALID_FORMAT},
		{"two calls", userKey, func(tx *tempo.TempoTx) { tx.Calls = append(tx.Calls, tx.Calls[0]) }, nil, fastpayv1.RejectCode_NOT_PAYMENT_TX},
		{"valid_before passed", userKey, func(tx *tempo.TempoTx) { vb := uint64(1); tx.ValidBefore = &vb }, nil, fastpayv1.RejectCode_EXPIRED},
		{"signed for another chain", userKey, func(tx *tempo.TempoTx) { tx.ChainID = 4217 }, nil, fastpayv1.RejectCode_WRONG_CHAIN},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 4)
			v := c.validator(t, 0, "")
			cert, err := v.Submit(context.Background(), nativeRequest(t, aliceKey, tc.key, 0, tc.mutate, tc.fix))
			if tc.want == fastpayv1.RejectCode_REJECT_CODE_UNSPECIFIED {
				if err != nil {
					t.Fatal(err)
				}
				if cert.Effects.NonceKey != qc.NonceKey(tc.key) || cert.Effects.Sender != qc.Address(alice) {
					t.Fatalf("effects %+v", cert.Effects)
				}
				return
			}
			wantReject(t, err, tc.want)
		})
	}
}

// TestNativeP256Sender: a P256-signed transaction's sender is the address
// derived from the P256 key, and its funds are checked.
func TestNativeP256Sender(t *testing.T) {
	c := newCluster(t, 4)
	v := c.validator(t, 0, "")
	p256Key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sender, err := tempo.P256Address(&p256Key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	tx := &tempo.TempoTx{ChainID: testChainID, GasLimit: 250_000, Calls: []tempo.Call{{To: &token, Input: transferCalldata(bob, dollars(2))}}}
	if err := tx.SignP256(p256Key, false); err != nil {
		t.Fatal(err)
	}
	raw, _ := tx.MarshalBinary()
	req := &fastpayv1.SubmitFastPayRequest{Tx: &fastpayv1.FastPayTx{
		ChainId: &fastpayv1.ChainId{Value: testChainID}, TempoTx: &fastpayv1.TempoTxBytes{Data: raw},
		Nonce:         &fastpayv1.Nonce2D{NonceKeyBe: make([]byte, 32)},
		Expiry:        &fastpayv1.Expiry{Kind: &fastpayv1.Expiry_MaxBlockHeight{MaxBlockHeight: 1000}},
		TempoTxFormat: fastpayv1.TempoTxFormat_TEMPO_NATIVE_V1,
	}}
	_, err = v.Submit(context.Background(), req)
	wantReject(t, err, fastpayv1.RejectCode_INSUFFICIENT_FUNDS)
	c.chain.SetBalance(token, sender, dollars(3))
	cert, err := v.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Effects.Sender != qc.Address(sender) {
		t.Fatalf("sender %x, want %x", cert.Effects.Sender, sender)
	}
}
