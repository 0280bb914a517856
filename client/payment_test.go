package client_test

import (
	"bytes"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"google.golang.org/protobuf/proto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/client"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
)

// checkConsistent asserts what validators check in stage 1: the FastPay
// nonce, overlay and format agree with the signed transaction.
func checkConsistent(t *testing.T, req *fastpayv1.SubmitFastPayRequest, format fastpayv1.TempoTxFormat, key qc.NonceKey, nonce uint64, recipient common.Address, amount uint64) *tempo.DecodedTx {
	t.Helper()
	tx := req.Tx
	if tx.TempoTxFormat != format || tx.ChainId.GetValue() != chainID {
		t.Fatalf("format %s chain %d", tx.TempoTxFormat, tx.ChainId.GetValue())
	}
	gotKey, gotNonce, err := tx.Nonce.ToNonce("nonce")
	if err != nil || gotKey != key || gotNonce != nonce {
		t.Fatalf("nonce (%x, %d) %v", gotKey, gotNonce, err)
	}
	var decoded *tempo.DecodedTx
	if format == fastpayv1.TempoTxFormat_EVM_OPAQUE_BYTES_V1 {
		decoded, err = tempo.DecodeEVMTx(tx.TempoTx.Data)
	} else {
		decoded, err = tempo.DecodeTempoTx(tx.TempoTx.Data)
	}
	if err != nil {
		t.Fatal(err)
	}
	pay, err := decoded.SinglePayment()
	if err != nil {
		t.Fatal(err)
	}
	if decoded.Nonce != nonce || decoded.NonceKey != key || decoded.ChainID != chainID {
		t.Fatalf("decoded nonce (%x, %d) chain %d", decoded.NonceKey, decoded.Nonce, decoded.ChainID)
	}
	o := tx.Overlay.GetPayment()
	if !bytes.Equal(o.GetSender().GetData(), decoded.Sender[:]) || !bytes.Equal(o.GetRecipient().GetData(), recipient[:]) ||
		o.GetAmount() != amount || !bytes.Equal(o.GetAsset().GetData(), token[:]) || pay.Recipient != recipient || pay.Amount.Uint64() != amount {
		t.Fatalf("overlay %v, transaction pays %s %s", o, pay.Recipient, pay.Amount)
	}
	txHash, effects, err := client.Expected(req)
	if err != nil {
		t.Fatal(err)
	}
	in, _ := tx.TxHashInput()
	if txHash != qc.TxHash(in) || effects.Sender != qc.Address(decoded.Sender) || effects.Amount != amount || effects.NonceSeq != nonce {
		t.Fatalf("Expected: %s %+v", txHash, effects)
	}
	if tx.ClientRequestId == "" {
		t.Fatal("no client_request_id")
	}
	return decoded
}

func TestNewEVMPayment(t *testing.T) {
	bob := nodetest.Address(bobKey)
	before := time.Now()
	req, err := client.NewEVMPayment(aliceKey, chainID, 3, token, bob, 7*dollar)
	if err != nil {
		t.Fatal(err)
	}
	decoded := checkConsistent(t, req, fastpayv1.TempoTxFormat_EVM_OPAQUE_BYTES_V1, qc.NonceKey{}, 3, bob, 7*dollar)
	if decoded.Sender != nodetest.Address(aliceKey) || decoded.GasLimit != client.DefaultGasLimit || decoded.Type != 2 {
		t.Fatalf("decoded %+v", decoded)
	}
	// Default expiry: unix millis now + 5 minutes.
	exp := req.Tx.Expiry.GetUnixMillis()
	if lo, hi := before.Add(client.DefaultExpiry).UnixMilli(), time.Now().Add(client.DefaultExpiry).UnixMilli(); exp < uint64(lo) || exp > uint64(hi) {
		t.Fatalf("expiry %d not in [%d, %d]", exp, lo, hi)
	}
	if len(req.Tx.ClientRequestId) != 32 {
		t.Fatalf("client_request_id %q", req.Tx.ClientRequestId)
	}
	if len(req.ParentQcs) != 0 || len(req.Tx.ParentQcHash) != 0 {
		t.Fatal("parent set without WithParent")
	}
	// Two builds get different request ids.
	again, _ := client.NewEVMPayment(aliceKey, chainID, 3, token, bob, 7*dollar)
	if again.Tx.ClientRequestId == req.Tx.ClientRequestId {
		t.Fatal("client_request_id repeats")
	}

	// Options.
	parent := &qc.QC{TxHash: qc.Hash{1}, EffectsHash: qc.Hash{2}, Threshold: 3, Hash: qc.Hash{3}}
	memo := [32]byte{'i', 'n', 'v', '-', '4', '2'}
	req, err = client.NewEVMPayment(aliceKey, chainID, 4, token, bob, dollar,
		client.WithParent(parent), client.WithMaxBlockHeight(900), client.WithClientRequestID("order-17"),
		client.WithGasLimit(300_000), client.WithFees(big.NewInt(5e9), big.NewInt(2e9)), client.WithMemo(memo))
	if err != nil {
		t.Fatal(err)
	}
	decoded = checkConsistent(t, req, fastpayv1.TempoTxFormat_EVM_OPAQUE_BYTES_V1, qc.NonceKey{}, 4, bob, dollar)
	pay, _ := decoded.SinglePayment()
	if pay.Method != tempo.MethodTransferWithMemo || *pay.Memo != memo || decoded.GasLimit != 300_000 {
		t.Fatalf("memo payment %+v gas %d", pay, decoded.GasLimit)
	}
	if !bytes.Equal(req.Tx.ParentQcHash, parent.Hash[:]) || len(req.ParentQcs) != 1 || !bytes.Equal(req.ParentQcs[0].QcHash, parent.Hash[:]) {
		t.Fatal("parent QC not carried")
	}
	if req.Tx.Expiry.GetMaxBlockHeight() != 900 || req.Tx.ClientRequestId != "order-17" {
		t.Fatalf("expiry %v id %q", req.Tx.Expiry, req.Tx.ClientRequestId)
	}
	at := time.UnixMilli(1_900_000_000_000)
	req, _ = client.NewEVMPayment(aliceKey, chainID, 4, token, bob, dollar, client.WithExpiryAt(at))
	if req.Tx.Expiry.GetUnixMillis() != 1_900_000_000_000 {
		t.Fatalf("expiry %v", req.Tx.Expiry)
	}
}

func TestNewTempoPayment(t *testing.T) {
	carol := nodetest.Address(carolKey)
	key := qc.NonceKey{30: 1, 31: 2}
	vb := time.Unix(2_000_000_000, 0)
	feeToken := common.HexToAddress("0x20c0000000000000000000000000000000000002")
	req, err := client.NewTempoPayment(bobKey, chainID, key, 9, token, carol, 3*dollar, client.WithValidBefore(vb), client.WithFeeToken(feeToken))
	if err != nil {
		t.Fatal(err)
	}
	decoded := checkConsistent(t, req, fastpayv1.TempoTxFormat_TEMPO_NATIVE_V1, key, 9, carol, 3*dollar)
	if decoded.Type != tempo.TempoTxType || decoded.Sender != nodetest.Address(bobKey) || *decoded.ValidBefore != 2_000_000_000 || *decoded.FeeToken != feeToken {
		t.Fatalf("decoded %+v", decoded)
	}
	// The canonical v = 27/28 validators insist on.
	if raw := req.Tx.TempoTx.Data; raw[len(raw)-1] < 27 {
		t.Fatal("non-canonical v")
	}
}

func TestChainTxHash(t *testing.T) {
	bob := nodetest.Address(bobKey)
	evm, err := client.NewEVMPayment(aliceKey, chainID, 3, token, bob, dollar)
	if err != nil {
		t.Fatal(err)
	}
	native, err := client.NewTempoPayment(aliceKey, chainID, qc.NonceKey{31: 1}, 0, token, bob, dollar)
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []*fastpayv1.SubmitFastPayRequest{evm, native} {
		got, err := client.ChainTxHash(req)
		if err != nil {
			t.Fatal(err)
		}
		// The chain hashes the signed envelope: keccak256 of the raw bytes.
		if want := crypto.Keccak256Hash(req.Tx.TempoTx.Data); got != want {
			t.Fatalf("%s: chain hash %s, want %s", req.Tx.TempoTxFormat, got, want)
		}
		if fp, _, _ := client.Expected(req); common.Hash(fp) == got {
			t.Fatalf("%s: the chain hash equals the FastPay tx_hash", req.Tx.TempoTxFormat)
		}
	}
	garbled := proto.Clone(evm).(*fastpayv1.SubmitFastPayRequest)
	garbled.Tx.TempoTx.Data = []byte{0x02, 0x01}
	if _, err := client.ChainTxHash(garbled); !errors.Is(err, client.ErrInvalidRequest) {
		t.Fatalf("garbled transaction: %v, want ErrInvalidRequest", err)
	}
}

func TestPaymentErrors(t *testing.T) {
	bob := nodetest.Address(bobKey)
	for name, build := range map[string]func() (*fastpayv1.SubmitFastPayRequest, error){
		"no key": func() (*fastpayv1.SubmitFastPayRequest, error) {
			return client.NewEVMPayment(nil, chainID, 0, token, bob, 1)
		},
		"not TIP-20": func() (*fastpayv1.SubmitFastPayRequest, error) {
			return client.NewEVMPayment(aliceKey, chainID, 0, common.Address{1}, bob, 1)
		},
		"height zero": func() (*fastpayv1.SubmitFastPayRequest, error) {
			return client.NewEVMPayment(aliceKey, chainID, 0, token, bob, 1, client.WithMaxBlockHeight(0))
		},
		"tip above cap": func() (*fastpayv1.SubmitFastPayRequest, error) {
			return client.NewEVMPayment(aliceKey, chainID, 0, token, bob, 1, client.WithFees(big.NewInt(1), big.NewInt(2)))
		},
		"long request id": func() (*fastpayv1.SubmitFastPayRequest, error) {
			return client.NewEVMPayment(aliceKey, chainID, 0, token, bob, 1, client.WithClientRequestID(string(make([]byte, 129))))
		},
		"EVM fee token": func() (*fastpayv1.SubmitFastPayRequest, error) {
			return client.NewEVMPayment(aliceKey, chainID, 0, token, bob, 1, client.WithFeeToken(token))
		},
		"expiring nonce": func() (*fastpayv1.SubmitFastPayRequest, error) {
			return client.NewTempoPayment(aliceKey, chainID, qc.NonceKey(tempo.ExpiringNonceKey), 0, token, bob, 1)
		},
	} {
		if _, err := build(); !errors.Is(err, client.ErrInvalidRequest) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Expected refuses a request whose FastPay nonce disagrees with the
	// transaction.
	req, _ := client.NewEVMPayment(aliceKey, chainID, 0, token, bob, 1)
	req.Tx.Nonce.NonceSeq = 1
	if _, _, err := client.Expected(req); !errors.Is(err, client.ErrInvalidRequest) {
		t.Fatalf("mismatched nonce: %v", err)
	}
}
