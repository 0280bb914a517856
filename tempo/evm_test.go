package tempo

import (
	"bytes"
	"crypto/ecdsa"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
)

// evmTxs returns signed legacy (EIP-155), EIP-2930 and EIP-1559 payments.
func evmTxs(t testing.TB, key *ecdsa.PrivateKey) map[string]*types.Transaction {
	t.Helper()
	chainID := big.NewInt(1337)
	data := transferData(recipient, big.NewInt(250))
	sign := func(inner types.TxData, signer types.Signer) *types.Transaction {
		tx, err := types.SignNewTx(key, signer, inner)
		if err != nil {
			t.Fatal(err)
		}
		return tx
	}
	return map[string]*types.Transaction{
		"legacy": sign(&types.LegacyTx{Nonce: 7, GasPrice: big.NewInt(2e9), Gas: 90_000, To: &pathUSD, Data: data}, types.NewEIP155Signer(chainID)),
		"2930": sign(&types.AccessListTx{ChainID: chainID, Nonce: 8, GasPrice: big.NewInt(2e9), Gas: 90_000, To: &pathUSD, Data: data,
			AccessList: types.AccessList{{Address: pathUSD, StorageKeys: []common.Hash{{1}}}}}, types.LatestSignerForChainID(chainID)),
		"1559": sign(&types.DynamicFeeTx{ChainID: chainID, Nonce: 9, GasTipCap: big.NewInt(1e9), GasFeeCap: big.NewInt(3e9), Gas: 90_000, To: &pathUSD, Data: data},
			types.LatestSignerForChainID(chainID)),
	}
}

func TestDecodeEVMTx(t *testing.T) {
	key := fixedKey(t, "evm")
	sender := crypto.PubkeyToAddress(key.PublicKey)
	for name, tx := range evmTxs(t, key) {
		t.Run(name, func(t *testing.T) {
			raw, err := tx.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			d, err := DecodeEVMTx(raw)
			if err != nil {
				t.Fatal(err)
			}
			signer := types.LatestSignerForChainID(big.NewInt(1337))
			if d.Type != tx.Type() || d.ChainID != 1337 || d.Sender != sender || d.Nonce != tx.Nonce() ||
				d.TxHash != tx.Hash() || d.SigningHash != signer.Hash(tx) || d.GasLimit != 90_000 ||
				d.NonceKey != ([32]byte{}) || d.SigType != SigSecp256k1 || !bytes.Equal(d.Raw, raw) {
				t.Fatalf("decoded %+v", d)
			}
			p, err := d.SinglePayment()
			if err != nil || p.Token != pathUSD || p.Recipient != recipient || p.Amount.Int64() != 250 {
				t.Fatalf("payment %+v, %v", p, err)
			}
		})
	}
}

func TestDecodeEVMTxRefuses(t *testing.T) {
	key := fixedKey(t, "evm")
	txs := evmTxs(t, key)
	enc := func(tx *types.Transaction) []byte {
		b, err := tx.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// highS re-signs tx with (r, n-s) and the flipped recovery id: the same
	// signer, but a malleated signature.
	highS := func(tx *types.Transaction, signer types.Signer) []byte {
		h := signer.Hash(tx)
		sig, err := crypto.Sign(h[:], key)
		if err != nil {
			t.Fatal(err)
		}
		s := new(big.Int).SetBytes(sig[32:64])
		new(big.Int).Sub(secp256k1N, s).FillBytes(sig[32:64])
		sig[64] ^= 1
		mal, err := tx.WithSignature(signer, sig)
		if err != nil {
			t.Fatal(err)
		}
		return enc(mal)
	}
	pre155, err := types.SignNewTx(key, types.HomesteadSigner{}, &types.LegacyTx{Nonce: 1, GasPrice: big.NewInt(1), Gas: 21000, To: &pathUSD})
	if err != nil {
		t.Fatal(err)
	}
	blob := enc(txs["1559"])
	blob[0] = types.BlobTxType
	setCode := enc(txs["1559"])
	setCode[0] = types.SetCodeTxType
	oversized := append([]byte{types.DynamicFeeTxType}, make([]byte, MaxTxSize)...)
	legacy := enc(txs["legacy"])
	one := big.NewInt(1)
	parity2 := enc(types.NewTx(&types.DynamicFeeTx{ChainID: big.NewInt(1337), Gas: 21000, GasFeeCap: one, To: &pathUSD, V: big.NewInt(2), R: one, S: one}))
	chainZero := enc(types.NewTx(&types.LegacyTx{Gas: 21000, GasPrice: one, To: &pathUSD, V: big.NewInt(35), R: one, S: one}))
	typedChainZero := enc(types.NewTx(&types.DynamicFeeTx{ChainID: new(big.Int), Gas: 21000, GasFeeCap: one, To: &pathUSD, V: new(big.Int), R: one, S: one}))

	tests := []struct {
		name     string
		raw      []byte
		sentinel error
		want     string
	}{
		{"pre-EIP-155 legacy", enc(pre155), ErrMalformed, "without an EIP-155 chain id"},
		{"blob", blob, ErrUnsupported, "type 0x03 (EIP-4844 blob transaction) is not supported"},
		{"set code", setCode, ErrUnsupported, "type 0x04 (EIP-7702 set-code transaction) is not supported"},
		{"tempo", []byte{0x76, 0xc0}, ErrMalformed, "submit it as TEMPO_NATIVE_V1"},
		{"unknown type", []byte{0x05, 0xc0}, ErrMalformed, "unknown transaction type 0x05"},
		{"rlp string", []byte{0x83, 1, 2, 3}, ErrMalformed, "RLP string header"},
		{"empty", nil, ErrMalformed, "empty input"},
		{"trailing bytes 1559", append(enc(txs["1559"]), 0x00), ErrMalformed, "EVM envelope"},
		{"trailing bytes legacy", append(bytes.Clone(legacy), 0x80), ErrMalformed, "EVM envelope"},
		{"truncated", enc(txs["2930"])[:40], ErrMalformed, "EVM envelope"},
		{"high s legacy", highS(txs["legacy"], types.NewEIP155Signer(big.NewInt(1337))), ErrMalformed, "s is in the upper half"},
		{"high s 1559", highS(txs["1559"], types.LatestSignerForChainID(big.NewInt(1337))), ErrMalformed, "s is in the upper half"},
		{"oversized", oversized, ErrMalformed, "exceeds the maximum of 131072"},
		{"typed y_parity 2", parity2, ErrMalformed, "y_parity must be 0 or 1, got 2"},
		{"legacy chain id 0", chainZero, ErrMalformed, "chain_id: 0 is not a usable chain id"},
		{"1559 chain id 0", typedChainZero, ErrMalformed, "chain_id: 0 is not a usable chain id"},
	}
	// A legacy list with a non-canonical long-form header: go-ethereum may or
	// may not catch it; the re-encoding comparison must.
	if legacy[0] >= 0xf8 && legacy[0] < 0xff {
		nonCanon := append([]byte{legacy[0] + 1, 0}, legacy[1:]...)
		tests = append(tests, struct {
			name     string
			raw      []byte
			sentinel error
			want     string
		}{"legacy length with leading zero", nonCanon, ErrMalformed, "EVM envelope"})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeEVMTx(tc.raw)
			if !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %v containing %q", err, tc.sentinel, tc.want)
			}
			t.Log(err)
		})
	}
}

func TestDecodeEVMTxCreate(t *testing.T) {
	key := fixedKey(t, "evm")
	tx, err := types.SignNewTx(key, types.LatestSignerForChainID(big.NewInt(1)),
		&types.DynamicFeeTx{ChainID: big.NewInt(1), Gas: 100_000, GasFeeCap: big.NewInt(1), Data: []byte{0x60, 0x00}})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := tx.MarshalBinary()
	d, err := DecodeEVMTx(raw)
	if err != nil {
		t.Fatal(err)
	}
	if d.Calls[0].To != nil {
		t.Fatal("creation has a target")
	}
	if _, err := d.SinglePayment(); !errors.Is(err, ErrNotPayment) {
		t.Fatalf("creation: %v", err)
	}
}
