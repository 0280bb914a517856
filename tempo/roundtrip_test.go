package tempo

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/rlp"
)

func u64p(v uint64) *uint64 { return &v }

// fixedKey returns a deterministic secp256k1 key for tests.
func fixedKey(t testing.TB, seed string) *ecdsa.PrivateKey {
	t.Helper()
	k, err := crypto.ToECDSA(crypto.Keccak256([]byte(seed)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func p256Key(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sampleTx is a payment with every optional field set.
func sampleTx() *TempoTx {
	nk := [32]byte{31: 7}
	return &TempoTx{
		ChainID:              42431,
		MaxPriorityFeePerGas: big.NewInt(1_000_000_000),
		MaxFeePerGas:         new(big.Int).Lsh(big.NewInt(1), 127),
		GasLimit:             100_000,
		Calls:                []Call{{To: &pathUSD, Value: new(big.Int), Input: transferData(recipient, big.NewInt(1234))}},
		AccessList:           types.AccessList{{Address: pathUSD, StorageKeys: []common.Hash{{31: 1}, {0: 0xff}}}},
		NonceKey:             nk,
		Nonce:                3,
		ValidBefore:          u64p(1767225600),
		ValidAfter:           u64p(1735689600),
		FeeToken:             &alphaUSD,
	}
}

// roundTrip encodes tx, decodes it and checks the decoded view against tx.
func roundTrip(t *testing.T, tx *TempoTx, wantSender common.Address, wantType SignatureType) *DecodedTx {
	t.Helper()
	raw, err := tx.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	d, err := DecodeTempoTx(raw)
	if err != nil {
		t.Fatalf("DecodeTempoTx: %v", err)
	}
	if d.Sender != wantSender || d.SigType != wantType {
		t.Fatalf("sender %s (%s), want %s (%s)", d.Sender, d.SigType, wantSender, wantType)
	}
	if h, _ := tx.Hash(); d.TxHash != h || d.TxHash != crypto.Keccak256Hash(raw) {
		t.Fatalf("tx hash %s, want %s", d.TxHash, h)
	}
	if d.SigningHash != tx.SigningHash() || d.ChainID != tx.ChainID || d.Nonce != tx.Nonce || d.NonceKey != tx.NonceKey || d.GasLimit != tx.GasLimit {
		t.Fatalf("decoded %+v", d)
	}
	var back TempoTx
	if err := back.UnmarshalBinary(raw); err != nil {
		t.Fatal(err)
	}
	again, err := back.MarshalBinary()
	if err != nil || !bytes.Equal(again, raw) {
		t.Fatalf("re-encoding differs from input (%v)", err)
	}
	return d
}

func TestRoundTripSecp256k1(t *testing.T) {
	key := fixedKey(t, "alice")
	sender := crypto.PubkeyToAddress(key.PublicKey)

	tx := sampleTx()
	if err := tx.SignSecp256k1(key); err != nil {
		t.Fatal(err)
	}
	d := roundTrip(t, tx, sender, SigSecp256k1)
	if *d.ValidBefore != 1767225600 || *d.ValidAfter != 1735689600 || *d.FeeToken != alphaUSD || d.FeePayer != nil {
		t.Fatalf("optional fields: %+v", d)
	}
	if p, err := d.SinglePayment(); err != nil || p.Amount.Int64() != 1234 {
		t.Fatalf("payment %+v %v", p, err)
	}

	// Minimal transaction: no optional fields, a contract creation.
	min := &TempoTx{ChainID: 1337, Calls: []Call{{Input: []byte{0x60, 0x00}}}}
	if err := min.SignSecp256k1(key); err != nil {
		t.Fatal(err)
	}
	d = roundTrip(t, min, sender, SigSecp256k1)
	if d.Calls[0].To != nil || d.ValidBefore != nil || d.FeeToken != nil {
		t.Fatalf("minimal: %+v", d)
	}
	if _, err := d.SinglePayment(); !errors.Is(err, ErrNotPayment) {
		t.Fatalf("creation is not a payment: %v", err)
	}

	// Expiring nonce key: decodes, flagged.
	exp := sampleTx()
	exp.NonceKey = ExpiringNonceKey
	exp.ValidAfter = nil
	if err := exp.SignSecp256k1(key); err != nil {
		t.Fatal(err)
	}
	if d := roundTrip(t, exp, sender, SigSecp256k1); !d.IsExpiringNonce() {
		t.Fatal("expiring nonce not flagged")
	}
}

func TestRoundTripP256(t *testing.T) {
	key := p256Key(t)
	sender, err := P256Address(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, preHash := range []bool{false, true} {
		tx := sampleTx()
		if err := tx.SignP256(key, preHash); err != nil {
			t.Fatal(err)
		}
		roundTrip(t, tx, sender, SigP256)
	}
	if _, err := P256Address(&fixedKey(t, "x").PublicKey); err == nil {
		t.Fatal("P256Address accepted a secp256k1 key")
	}
	if err := sampleTx().SignP256(fixedKey(t, "x"), false); err == nil {
		t.Fatal("SignP256 accepted a secp256k1 key")
	}
}

func TestRoundTripSponsored(t *testing.T) {
	payer := fixedKey(t, "payer")
	payerAddr := crypto.PubkeyToAddress(payer.PublicKey)

	// secp256k1 sender; the fee payer signs after the sender, and the
	// sender's signature stays valid because it excludes fee_token.
	key := fixedKey(t, "carol")
	sender := crypto.PubkeyToAddress(key.PublicKey)
	tx := sampleTx()
	tx.FeeToken = nil
	tx.Sponsored = true
	if err := tx.SignSecp256k1(key); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.MarshalBinary(); err == nil || !strings.Contains(err.Error(), "fee payer has not signed") {
		t.Fatalf("sponsored tx without fee payer encoded: %v", err)
	}
	tx.FeeToken = &alphaUSD // chosen by the fee payer
	if err := tx.SignFeePayer(payer, sender); err != nil {
		t.Fatal(err)
	}
	d := roundTrip(t, tx, sender, SigSecp256k1)
	if d.FeePayer == nil || *d.FeePayer != payerAddr || *d.FeeToken != alphaUSD {
		t.Fatalf("fee payer %v fee token %v", d.FeePayer, d.FeeToken)
	}

	// P256 sender, fee payer signing first.
	pk := p256Key(t)
	psender, _ := P256Address(&pk.PublicKey)
	tx = sampleTx()
	if err := tx.SignFeePayer(payer, psender); err != nil {
		t.Fatal(err)
	}
	if err := tx.SignP256(pk, false); err != nil {
		t.Fatal(err)
	}
	d = roundTrip(t, tx, psender, SigP256)
	if d.FeePayer == nil || *d.FeePayer != payerAddr {
		t.Fatalf("fee payer %v", d.FeePayer)
	}

	// Sponsoring a transaction the sender signed unsponsored is refused.
	tx = sampleTx()
	if err := tx.SignSecp256k1(key); err != nil {
		t.Fatal(err)
	}
	if err := tx.SignFeePayer(payer, sender); err == nil || !strings.Contains(err.Error(), "non-sponsored payload") {
		t.Fatalf("SignFeePayer after an unsponsored sender signature: %v", err)
	}

	// A fee payer signature for another sender recovers another fee payer:
	// the fee payer commits to the sender.
	tx = sampleTx()
	if err := tx.SignFeePayer(payer, common.Address{1}); err != nil {
		t.Fatal(err)
	}
	if err := tx.SignSecp256k1(key); err != nil {
		t.Fatal(err)
	}
	raw, _ := tx.MarshalBinary()
	if d, err := DecodeTempoTx(raw); err == nil && d.FeePayer != nil && *d.FeePayer == payerAddr {
		t.Fatal("fee payer signature over another sender recovered the fee payer")
	}
}

func TestMarshalRefuses(t *testing.T) {
	key := fixedKey(t, "alice")
	tests := []struct {
		name   string
		mutate func(*TempoTx)
		want   string
	}{
		{"unsigned", func(tx *TempoTx) { tx.Signature = nil }, "not signed"},
		{"no calls", func(tx *TempoTx) { tx.Calls = nil }, "at least one call"},
		{"fee above u128", func(tx *TempoTx) { tx.MaxFeePerGas = new(big.Int).Lsh(big.NewInt(1), 128) }, "outside the u128 range"},
		{"negative value", func(tx *TempoTx) { tx.Calls[0].Value = big.NewInt(-1) }, "outside the U256 range"},
		{"valid_before zero", func(tx *TempoTx) { tx.ValidBefore = u64p(0) }, "valid_before: 0 encodes like unset"},
		{"window inverted", func(tx *TempoTx) { tx.ValidBefore, tx.ValidAfter = u64p(5), u64p(6) }, "must be greater than valid_after"},
		{"bad signature bytes", func(tx *TempoTx) { tx.Signature = []byte{9, 9} }, "unknown signature type 0x09"},
		{"fee payer parity", func(tx *TempoTx) {
			tx.FeePayerSignature = &FeePayerSignature{YParity: 2, R: [32]byte{1}, S: [32]byte{1}}
		}, "y_parity"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tx := sampleTx()
			if err := tx.SignSecp256k1(key); err != nil {
				t.Fatal(err)
			}
			tc.mutate(tx)
			_, err := tx.MarshalBinary()
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// rebuild re-assembles a 0x76 transaction after edit changed its list items.
func rebuild(t testing.TB, raw []byte, edit func([][]byte) [][]byte) []byte {
	t.Helper()
	items, err := rlp.SplitListValues(raw[1:])
	if err != nil {
		t.Fatal(err)
	}
	list, err := rlp.MergeListValues(edit(items))
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{TempoTxType}, list...)
}

// resign replaces the signature (last item) with a fresh one over the edited
// payload, so that the edit is the only defect.
func resign(t testing.TB, raw []byte, key *ecdsa.PrivateKey, edit func([][]byte) [][]byte) []byte {
	t.Helper()
	unsigned := rebuild(t, raw, func(items [][]byte) [][]byte { return edit(items)[:len(items)-1] })
	// The signing payload of a non-sponsored transaction is exactly the
	// unsigned list.
	sig, err := crypto.Sign(crypto.Keccak256(unsigned), key)
	if err != nil {
		t.Fatal(err)
	}
	sig[64] += 27
	enc, _ := rlp.EncodeToBytes(sig)
	return rebuild(t, raw, func(items [][]byte) [][]byte {
		items = edit(items)
		items[len(items)-1] = enc
		return items
	})
}

func TestDecodeRefusesFeatures(t *testing.T) {
	key := fixedKey(t, "alice")
	tx := &TempoTx{ChainID: 4217, Calls: []Call{{To: &pathUSD, Input: transferData(recipient, big.NewInt(1))}}}
	if err := tx.SignSecp256k1(key); err != nil {
		t.Fatal(err)
	}
	good, _ := tx.MarshalBinary()
	sigItem := func(items [][]byte) []byte { return items[len(items)-1] }
	encBytes := func(b []byte) []byte { e, _ := rlp.EncodeToBytes(b); return e }

	// Malleate the sender signature to (r, n-s, v^1): same signer, high s.
	var content []byte
	items, _ := rlp.SplitListValues(good[1:])
	content, _, _ = rlp.SplitString(sigItem(items))
	hs := bytes.Clone(content)
	s := new(big.Int).SetBytes(hs[32:64])
	new(big.Int).Sub(secp256k1N, s).FillBytes(hs[32:64])
	hs[64] = 27 + 28 - hs[64] // flip the recovery id

	keychain := append([]byte{sigTypeKeychain}, make([]byte, 20)...)
	keychain = append(keychain, content...)

	tests := []struct {
		name     string
		raw      []byte
		sentinel error
		want     string
	}{
		{"secp256k1 high s", rebuild(t, good, func(it [][]byte) [][]byte { it[13] = encBytes(hs); return it }), ErrMalformed, "sender_signature: s is in the upper half"},
		{"keychain 0x03", rebuild(t, good, func(it [][]byte) [][]byte { it[13] = encBytes(keychain); return it }), ErrUnsupported, "keychain signatures are not supported"},
		{"keychain 0x04", rebuild(t, good, func(it [][]byte) [][]byte { k := bytes.Clone(keychain); k[0] = 4; it[13] = encBytes(k); return it }), ErrUnsupported, "keychain signatures are not supported"},
		{"aa_authorization_list", resign(t, good, key, func(it [][]byte) [][]byte { it[12] = []byte{0xc2, 0xc1, 0x80}; return it }), ErrUnsupported, "aa_authorization_list: 1 authorization(s)"},
		{"key_authorization", rebuild(t, good, func(it [][]byte) [][]byte {
			return append(it[:13:13], []byte{0xc1, 0x80}, it[13])
		}), ErrUnsupported, "key_authorization: provisioning an access key"},
		{"byte string before signature", rebuild(t, good, func(it [][]byte) [][]byte {
			return append(it[:13:13], []byte{0x80}, it[13])
		}), ErrMalformed, "key_authorization: expected an RLP list"},
		{"16 items", rebuild(t, good, func(it [][]byte) [][]byte {
			return append(it[:13:13], []byte{0xc0}, []byte{0xc0}, it[13])
		}), ErrMalformed, "has 16 items"},
		{"fee payer field holds an address", resign(t, good, key, func(it [][]byte) [][]byte { it[11] = encBytes(pathUSD[:]); return it }), ErrMalformed, "fee_payer_signature: expected 0x80 or a list [y_parity, r, s], got a 20-byte string"},
		{"fee payer y_parity 2", resign(t, good, key, func(it [][]byte) [][]byte {
			l, _ := rlp.EncodeToBytes([]any{uint64(2), big.NewInt(1), big.NewInt(1)})
			it[11] = l
			return it
		}), ErrMalformed, "fee_payer_signature.y_parity: must be 0 or 1, got 2"},
		{"fee payer r zero", resign(t, good, key, func(it [][]byte) [][]byte {
			l, _ := rlp.EncodeToBytes([]any{uint64(1), big.NewInt(0), big.NewInt(1)})
			it[11] = l
			return it
		}), ErrMalformed, "fee_payer_signature: r is zero"},
		{"call with 2 fields", resign(t, good, key, func(it [][]byte) [][]byte {
			l, _ := rlp.EncodeToBytes([]any{[]any{pathUSD, uint64(0)}})
			it[4] = l
			return it
		}), ErrMalformed, "calls[0]: expected a list of 3 items [to, value, input], got 2 items"},
		{"call value as list", resign(t, good, key, func(it [][]byte) [][]byte {
			l, _ := rlp.EncodeToBytes([]any{[]any{pathUSD, []any{}, []byte{}}})
			it[4] = l
			return it
		}), ErrMalformed, "calls[0].value: expected an integer (byte string), got an RLP list"},
		{"access list key 31 bytes", resign(t, good, key, func(it [][]byte) [][]byte {
			l, _ := rlp.EncodeToBytes([]any{[]any{pathUSD, []any{make([]byte, 31)}}})
			it[5] = l
			return it
		}), ErrMalformed, "access_list[0].storage_keys[0]: expected exactly 32 bytes, got 31"},
		{"chain id as list", resign(t, good, key, func(it [][]byte) [][]byte { it[0] = []byte{0xc0}; return it }), ErrMalformed, "chain_id: expected an integer (byte string), got an RLP list"},
		{"gas_limit 9 bytes", resign(t, good, key, func(it [][]byte) [][]byte { it[3] = encBytes([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0}); return it }), ErrMalformed, "gas_limit: integer is 9 bytes"},
		{"payload is a string", append([]byte{0x76}, encBytes([]byte("hello"))...), ErrMalformed, "expected an RLP list after the type byte"},
		{"oversized", append([]byte{0x76}, make([]byte, MaxTxSize)...), ErrMalformed, "exceeds the maximum of 131072"},
		{"empty signature", rebuild(t, good, func(it [][]byte) [][]byte { it[13] = []byte{0x80}; return it }), ErrMalformed, "sender_signature: empty signature"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeTempoTx(tc.raw)
			if !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %v containing %q", err, tc.sentinel, tc.want)
			}
			t.Log(err)
		})
	}
}

// TestDecodeDoesNotAliasInput: the decoded transaction owns its bytes.
func TestDecodeDoesNotAliasInput(t *testing.T) {
	key := fixedKey(t, "alice")
	tx := sampleTx()
	if err := tx.SignSecp256k1(key); err != nil {
		t.Fatal(err)
	}
	raw, _ := tx.MarshalBinary()
	d, err := DecodeTempoTx(raw)
	if err != nil {
		t.Fatal(err)
	}
	before := bytes.Clone(d.Calls[0].Input)
	for i := range raw {
		raw[i] = 0
	}
	if !bytes.Equal(d.Calls[0].Input, before) || d.Raw[0] != TempoTxType {
		t.Fatal("decoded transaction aliases the caller's buffer")
	}
}
