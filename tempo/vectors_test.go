package tempo

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
)

// txVector is one entry of testdata/tempo_tx_vectors.json. Numbers are read as
// json.Number so that u64 nonces near 2^64 survive exactly.
type txVector struct {
	Name           string      `json:"name"`
	Raw            string      `json:"raw"`
	ChainID        json.Number `json:"chain_id"`
	NonceKey       string      `json:"nonce_key"`
	NonceKeyKind   string      `json:"nonce_key_kind"`
	Nonce          json.Number `json:"nonce"`
	ValidBefore    json.Number `json:"valid_before"` // "" when null
	ValidAfter     json.Number `json:"valid_after"`
	FeeToken       *string     `json:"fee_token"`
	MaxPriorityFee string      `json:"max_priority_fee_per_gas"`
	MaxFee         string      `json:"max_fee_per_gas"`
	GasLimit       string      `json:"gas_limit"`
	Calls          []struct {
		To    *string `json:"to"`
		Value string  `json:"value"`
		Input string  `json:"input"`
	} `json:"calls"`
	AccessList []struct {
		Address     string   `json:"address"`
		StorageKeys []string `json:"storage_keys"`
	} `json:"access_list"`
	Sender          string `json:"sender"`
	SignatureType   string `json:"signature_type"`
	Signature       string `json:"signature"`
	PrivateKey      string `json:"private_key"`
	Prehash         *bool  `json:"prehash"`
	SigningHash     string `json:"signing_hash"`
	SigningPreimage string `json:"signing_preimage"`
	TxHash          string `json:"tx_hash"`
	Sponsored       bool   `json:"sponsored"`
	FeePayer        *struct {
		Address         string `json:"address"`
		SigningHash     string `json:"signing_hash"`
		SigningPreimage string `json:"signing_preimage"`
	} `json:"fee_payer"`
	Payments []*vectorPayment `json:"payments"`
}

type vectorPayment struct {
	Token     string  `json:"token"`
	Recipient string  `json:"recipient"`
	Amount    string  `json:"amount"`
	Memo      *string `json:"memo"`
	FitsU64   bool    `json:"fits_u64"`
	Method    string  `json:"method"`
}

type malformedVector struct {
	Name     string `json:"name"`
	Category string `json:"category"`
	Reason   string `json:"reason"`
	Raw      string `json:"raw"`
	Resigned bool   `json:"resigned"`
}

func loadJSON(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func loadVectors(t testing.TB) []txVector {
	var vs []txVector
	loadJSON(t, "tempo_tx_vectors.json", &vs)
	if len(vs) != 29 {
		t.Fatalf("expected 29 valid vectors, got %d", len(vs))
	}
	return vs
}

func loadMalformed(t testing.TB) []malformedVector {
	var vs []malformedVector
	loadJSON(t, "tempo_tx_malformed.json", &vs)
	if len(vs) != 35 {
		t.Fatalf("expected 35 malformed vectors, got %d", len(vs))
	}
	return vs
}

func mustU64(t testing.TB, n json.Number) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(n.String(), 10, 64)
	if err != nil {
		t.Fatalf("not a u64: %q: %v", n, err)
	}
	return v
}

func mustBig(t testing.TB, s string) *big.Int {
	t.Helper()
	v, ok := new(big.Int).SetString(s, 10)
	if !ok {
		t.Fatalf("not a decimal integer: %q", s)
	}
	return v
}

func optU64(t testing.TB, n json.Number) *uint64 {
	if n == "" {
		return nil
	}
	v := mustU64(t, n)
	return &v
}

func eqOptU64(a, b *uint64) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}

func eqOptAddr(a *common.Address, b *string) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == common.HexToAddress(*b)
}

func TestValidVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			raw := hexutil.MustDecode(v.Raw)
			d, err := DecodeTempoTx(raw)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			check := func(what string, got, want any) {
				t.Helper()
				if got != want {
					t.Errorf("%s: got %v, want %v", what, got, want)
				}
			}
			check("type", d.Type, TempoTxType)
			check("sender", d.Sender, common.HexToAddress(v.Sender))
			check("signing_hash", d.SigningHash, common.HexToHash(v.SigningHash))
			check("tx_hash", d.TxHash, common.HexToHash(v.TxHash))
			check("tx_hash = keccak(raw)", d.TxHash, crypto.Keccak256Hash(raw))
			check("nonce_key", common.Hash(d.NonceKey), common.HexToHash(v.NonceKey))
			check("nonce", d.Nonce, mustU64(t, v.Nonce))
			check("chain_id", d.ChainID, mustU64(t, v.ChainID))
			check("gas_limit", d.GasLimit, mustU64(t, json.Number(v.GasLimit)))
			check("signature_type", d.SigType.String(), v.SignatureType)
			check("expiring", d.IsExpiringNonce(), v.NonceKeyKind == "expiring")
			check("raw", bytes.Equal(d.Raw, raw), true)
			if !eqOptU64(d.ValidBefore, optU64(t, v.ValidBefore)) || !eqOptU64(d.ValidAfter, optU64(t, v.ValidAfter)) {
				t.Errorf("validity window: got %v/%v, want %q/%q", d.ValidBefore, d.ValidAfter, v.ValidBefore, v.ValidAfter)
			}
			if !eqOptAddr(d.FeeToken, v.FeeToken) {
				t.Errorf("fee_token: got %v, want %v", d.FeeToken, v.FeeToken)
			}

			// Structural model: preimages, fees, calls, access list, round trip.
			tx := new(TempoTx)
			if err := tx.UnmarshalBinary(raw); err != nil {
				t.Fatalf("UnmarshalBinary: %v", err)
			}
			check("signing_preimage", hexutil.Encode(tx.signingPreimage()), v.SigningPreimage)
			check("max_priority_fee_per_gas", tx.MaxPriorityFeePerGas.String(), v.MaxPriorityFee)
			check("max_fee_per_gas", tx.MaxFeePerGas.String(), v.MaxFee)
			check("sponsored", tx.Sponsored, v.Sponsored)
			check("signature", hexutil.Encode(tx.Signature), v.Signature)
			enc, err := tx.MarshalBinary()
			if err != nil {
				t.Fatalf("MarshalBinary: %v", err)
			}
			check("re-encoding equals input", bytes.Equal(enc, raw), true)
			if len(tx.AccessList) != len(v.AccessList) {
				t.Fatalf("access list: got %d tuples, want %d", len(tx.AccessList), len(v.AccessList))
			}
			for i, at := range v.AccessList {
				check("access_list address", tx.AccessList[i].Address, common.HexToAddress(at.Address))
				check("access_list keys", len(tx.AccessList[i].StorageKeys), len(at.StorageKeys))
				for j, k := range at.StorageKeys {
					check("access_list key", tx.AccessList[i].StorageKeys[j], common.HexToHash(k))
				}
			}

			if v.FeePayer == nil {
				check("fee payer", d.FeePayer == nil, true)
			} else {
				if d.FeePayer == nil {
					t.Fatal("fee payer not recovered")
				}
				check("fee_payer.address", *d.FeePayer, common.HexToAddress(v.FeePayer.Address))
				check("fee_payer.signing_preimage", hexutil.Encode(tx.encode(encFeePayer, d.Sender)), strings.ToLower(v.FeePayer.SigningPreimage))
				check("fee_payer.signing_hash", tx.FeePayerSigningHash(d.Sender), common.HexToHash(v.FeePayer.SigningHash))
			}

			if len(d.Calls) != len(v.Calls) || len(v.Payments) != len(v.Calls) {
				t.Fatalf("calls: got %d, want %d (payments %d)", len(d.Calls), len(v.Calls), len(v.Payments))
			}
			for i, vc := range v.Calls {
				c := d.Calls[i]
				if !eqOptAddr(c.To, vc.To) {
					t.Errorf("calls[%d].to: got %v, want %v", i, c.To, vc.To)
				}
				check("call value", c.Value.String(), vc.Value)
				check("call input", hexutil.Encode(c.Input), vc.Input)
				checkPayment(t, i, c, v.Payments[i])
			}

			// SinglePayment: exactly one call, a payment, amount within u64.
			p, err := d.SinglePayment()
			single := len(v.Calls) == 1 && v.Payments[0] != nil
			switch {
			case single && v.Payments[0].FitsU64:
				if err != nil {
					t.Fatalf("SinglePayment: %v", err)
				}
				check("single payment amount", p.Amount.String(), v.Payments[0].Amount)
			case single:
				if !errors.Is(err, ErrAmountTooLarge) {
					t.Fatalf("SinglePayment: got %v, want ErrAmountTooLarge", err)
				}
				t.Logf("SinglePayment: %v", err)
			default:
				if !errors.Is(err, ErrNotPayment) {
					t.Fatalf("SinglePayment: got %v, want ErrNotPayment", err)
				}
				t.Logf("SinglePayment: %v", err)
			}
		})
	}
}

func checkPayment(t *testing.T, i int, c Call, want *vectorPayment) {
	t.Helper()
	p, err := ParseTIP20Call(c)
	if want == nil {
		if !errors.Is(err, ErrNotPayment) {
			t.Errorf("calls[%d]: ParseTIP20Call = %+v, %v; want ErrNotPayment", i, p, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("calls[%d]: ParseTIP20Call: %v", i, err)
	}
	if p.Token != common.HexToAddress(want.Token) || p.Recipient != common.HexToAddress(want.Recipient) ||
		p.Amount.Cmp(mustBig(t, want.Amount)) != 0 || p.Method != want.Method || p.Amount.IsUint64() != want.FitsU64 {
		t.Errorf("calls[%d]: payment %+v, want %+v", i, p, want)
	}
	switch {
	case want.Memo == nil && p.Memo != nil, want.Memo != nil && p.Memo == nil:
		t.Errorf("calls[%d]: memo presence: got %v, want %v", i, p.Memo, want.Memo)
	case want.Memo != nil && common.Hash(*p.Memo) != common.HexToHash(*want.Memo):
		t.Errorf("calls[%d]: memo: got %x, want %s", i, *p.Memo, *want.Memo)
	}
}

// TestVectorsResign re-signs the secp256k1 vectors with their recorded keys:
// go-ethereum's RFC 6979 signatures must reproduce the recorded bytes, which
// shows that the signing payload is built exactly as the reference builds it.
func TestVectorsResign(t *testing.T) {
	for _, v := range loadVectors(t) {
		if v.SignatureType != "secp256k1" {
			continue
		}
		tx := new(TempoTx)
		if err := tx.UnmarshalBinary(hexutil.MustDecode(v.Raw)); err != nil {
			t.Fatal(err)
		}
		key, err := crypto.HexToECDSA(strings.TrimPrefix(v.PrivateKey, "0x"))
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.SignSecp256k1(key); err != nil {
			t.Fatal(err)
		}
		if got := hexutil.Encode(tx.Signature); got != v.Signature {
			t.Errorf("%s: re-signed signature %s, want %s", v.Name, got, v.Signature)
		}
	}
}

// TestVectorsVZeroOne: v = 0/1 is accepted on decode and normalised; the tx
// hash is that of the canonical (27/28) encoding.
func TestVectorsVZeroOne(t *testing.T) {
	for _, v := range loadVectors(t) {
		if v.SignatureType != "secp256k1" {
			continue
		}
		raw := hexutil.MustDecode(v.Raw)
		alt := bytes.Clone(raw)
		alt[len(alt)-1] -= 27
		d, err := DecodeTempoTx(alt)
		if err != nil {
			t.Fatalf("%s with v-27: %v", v.Name, err)
		}
		if d.Sender != common.HexToAddress(v.Sender) || d.TxHash != common.HexToHash(v.TxHash) || !bytes.Equal(d.Raw, alt) {
			t.Errorf("%s with v-27: sender %s tx hash %s", v.Name, d.Sender, d.TxHash)
		}
		var tx TempoTx
		if err := tx.UnmarshalBinary(alt); err != nil {
			t.Fatal(err)
		}
		if enc, _ := tx.MarshalBinary(); !bytes.Equal(enc, raw) {
			t.Errorf("%s: re-encoding of the v-27 form is not the canonical form", v.Name)
		}
	}
}

// expectedMalformed pins the message of representative vectors, one or more
// per category, so that wallet-facing wording does not silently degrade.
var expectedMalformed = map[string]string{
	"empty_input":                             "malformed transaction: empty input",
	"type_byte_only":                          "not followed by an RLP payload",
	"truncated_last_byte":                     "declares more bytes than remain",
	"wrong_type_byte_0x02":                    "type byte: expected 0x76, got 0x02",
	"missing_type_byte":                       "type byte missing",
	"trailing_bytes_after_list":               "1 trailing bytes after the transaction's RLP list",
	"signature_length_overruns_list":          "sender_signature",
	"non_canonical_outer_length_leading_zero": "leading zero byte",
	"non_canonical_long_form_short_string":    "chain_id: non-canonical RLP: long-form length prefix",
	"non_canonical_chain_id_leading_zero":     "chain_id: non-canonical integer (leading zero byte)",
	"non_canonical_nonce_zero_as_0x00":        "nonce: non-canonical integer: zero must be encoded as the empty string 0x80",
	"non_canonical_single_byte_string":        "single byte 0x05 below 0x80 must be encoded as itself",
	"non_canonical_nonce_key_leading_zero":    "nonce_key: non-canonical integer (leading zero byte)",
	"signature_not_last":                      "sender_signature: the last list item must be the signature",
	"signature_missing":                       "sender_signature missing",
	"signature_encoded_as_list":               "sender_signature: the last list item must be the signature",
	"secp256k1_v_2":                           "v byte must be 27 or 28",
	"secp256k1_r_zero":                        "sender_signature: r is zero",
	"secp256k1_signature_64_bytes":            "unknown signature type 0x36",
	"p256_high_s":                             "high-s",
	"p256_wrong_length":                       "P256 signature must be 130 bytes",
	"signature_unknown_type_0x07":             "unknown signature type 0x07",
	"webauthn_type_create":                    "webauthn.get",
	"webauthn_no_up_uv_flags":                 "user presence (UP) flag not set",
	"fee_payer_marker_0x00_in_submitted_tx":   "fee_payer_signature: the single byte 0x00 is the sender-side placeholder",
	"fee_payer_signature_high_s":              "fee_payer_signature: s is in the upper half",
	"fee_payer_signature_two_items":           "fee_payer_signature: expected a list of 3 items [y_parity, r, s], got 2 items",
	"empty_calls_list":                        "calls: at least one call is required",
	"valid_before_equals_valid_after":         "valid_before (1735689600) must be greater than valid_after (1735689600)",
	"nonce_key_33_bytes":                      "nonce_key: integer is 33 bytes, exceeds the 32-byte maximum of a U256",
	"valid_before_exceeds_u64":                "valid_before: integer is 9 bytes, exceeds the 8-byte maximum of a u64",
	"max_fee_per_gas_exceeds_u128":            "max_fee_per_gas: integer is 17 bytes, exceeds the 16-byte maximum of a u128",
	"fee_token_19_bytes":                      "fee_token: expected no fee token (0x80) or a 20-byte address, got 19 bytes",
	"call_to_21_bytes":                        "calls[0].to: expected empty for contract creation (0x80) or a 20-byte address, got 21 bytes",
}

func TestMalformedVectors(t *testing.T) {
	for _, v := range loadMalformed(t) {
		t.Run(v.Name, func(t *testing.T) {
			raw := hexutil.MustDecode(v.Raw)
			d, err := DecodeTempoTx(raw)
			if err == nil {
				t.Fatalf("accepted (%s): sender %s", v.Reason, d.Sender)
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %q wraps neither ErrMalformed nor ErrUnsupported", err)
			}
			msg := err.Error()
			if strings.TrimPrefix(strings.TrimPrefix(msg, ErrMalformed.Error()+": "), ErrUnsupported.Error()+": ") == "" {
				t.Fatal("empty error detail")
			}
			t.Logf("[%s] %s", v.Category, msg)
			if want, ok := expectedMalformed[v.Name]; ok && !strings.Contains(msg, want) {
				t.Errorf("message %q does not contain %q", msg, want)
			}
			// The structural decoder alone must refuse everything except the
			// inputs whose only defect is cryptographic.
			if err := new(TempoTx).UnmarshalBinary(raw); err == nil && v.Category != "signature" {
				t.Errorf("UnmarshalBinary accepted a %s defect", v.Category)
			}
		})
	}
}
