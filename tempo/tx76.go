package tempo

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/rlp"
)

// TempoTxType is the EIP-2718 type byte of Tempo transactions.
const TempoTxType byte = 0x76

// feePayerMagic prefixes the payload a fee payer signs, keeping its signature
// from ever being valid as a sender signature (or the other way round).
const feePayerMagic byte = 0x78

// Field names of the 0x76 list, used in error messages.
var tempoFieldNames = [...]string{
	"chain_id", "max_priority_fee_per_gas", "max_fee_per_gas", "gas_limit", "calls", "access_list",
	"nonce_key", "nonce", "valid_before", "valid_after", "fee_token", "fee_payer_signature",
	"aa_authorization_list",
}

const (
	numUnsignedFields = len(tempoFieldNames) // 13
	fieldFeeToken     = 10
	fieldFeePayerSig  = 11
	fieldAAAuthList   = 12
)

// Call is one call of a transaction. For EVM envelopes it is the transaction's
// single call.
type Call struct {
	To    *common.Address // nil: contract creation
	Value *big.Int        // nil means zero
	Input []byte
}

// FeePayerSignature is the secp256k1 signature of the account that pays the
// fees of a sponsored transaction.
type FeePayerSignature struct {
	YParity byte     // 0 or 1
	R, S    [32]byte // big-endian; S must be in the lower half of the order
}

// TempoTx is a Tempo type-0x76 transaction:
//
//	0x76 ‖ rlp([chain_id, max_priority_fee_per_gas, max_fee_per_gas, gas_limit, calls, access_list,
//	            nonce_key, nonce, valid_before, valid_after, fee_token, fee_payer_signature,
//	            aa_authorization_list, sender_signature])
//
// Build one, call SignSecp256k1 or SignP256 (and, when sponsored, have the fee
// payer call SignFeePayer), then MarshalBinary. Authorization lists and key
// authorizations are not modelled: this package refuses transactions that
// carry them.
type TempoTx struct {
	ChainID              uint64
	MaxPriorityFeePerGas *big.Int // u128; nil means zero
	MaxFeePerGas         *big.Int // u128; nil means zero
	GasLimit             uint64
	Calls                []Call
	AccessList           types.AccessList
	NonceKey             [32]byte // big-endian U256; all ones is the expiring-nonce key
	Nonce                uint64
	// ValidBefore and ValidAfter are unix seconds; nil means unset. RLP encodes
	// zero and unset identically, so a pointer to zero cannot be encoded.
	ValidBefore *uint64
	ValidAfter  *uint64
	FeeToken    *common.Address // nil: no fee-token preference
	// Sponsored says a fee payer pays the fees. The sender then signs a payload
	// with the placeholder 0x00 in place of the fee payer signature and without
	// the fee token, which the fee payer chooses and commits to. Set it before
	// the sender signs; decoding sets it when a fee payer signature is present.
	Sponsored         bool
	FeePayerSignature *FeePayerSignature
	// Signature is the encoded sender signature: 65 bytes r ‖ s ‖ v for
	// secp256k1, or a type byte followed by the P256 or WebAuthn layout.
	Signature []byte
}

// encMode selects which of the three encodings of a 0x76 transaction is built.
type encMode int

const (
	encSigned   encMode = iota // the transaction as submitted
	encSender                  // the payload the sender signs
	encFeePayer                // the payload the fee payer signs
)

func (tx *TempoTx) sponsored() bool { return tx.Sponsored || tx.FeePayerSignature != nil }

func bigOrZero(x *big.Int) *big.Int {
	if x == nil {
		return new(big.Int)
	}
	return x
}

// writeOptUint writes an optional u64 timestamp; unset is the empty string.
func writeOptUint(w rlp.EncoderBuffer, v *uint64) {
	if v == nil {
		w.WriteBytes(nil)
		return
	}
	w.WriteUint64(*v)
}

// encode builds one of the three encodings. sender is used by encFeePayer only.
func (tx *TempoTx) encode(mode encMode, sender common.Address) []byte {
	var prefix byte = TempoTxType
	if mode == encFeePayer {
		prefix = feePayerMagic
	}
	w := rlp.NewEncoderBuffer(nil)
	outer := w.List()
	w.WriteUint64(tx.ChainID)
	w.WriteBigInt(bigOrZero(tx.MaxPriorityFeePerGas))
	w.WriteBigInt(bigOrZero(tx.MaxFeePerGas))
	w.WriteUint64(tx.GasLimit)

	calls := w.List()
	for _, c := range tx.Calls {
		l := w.List()
		if c.To == nil {
			w.WriteBytes(nil)
		} else {
			w.WriteBytes(c.To[:])
		}
		w.WriteBigInt(bigOrZero(c.Value))
		w.WriteBytes(c.Input)
		w.ListEnd(l)
	}
	w.ListEnd(calls)

	al := w.List()
	for _, t := range tx.AccessList {
		l := w.List()
		w.WriteBytes(t.Address[:])
		keys := w.List()
		for _, k := range t.StorageKeys {
			w.WriteBytes(k[:])
		}
		w.ListEnd(keys)
		w.ListEnd(l)
	}
	w.ListEnd(al)

	w.WriteBytes(bytes.TrimLeft(tx.NonceKey[:], "\x00")) // canonical U256
	w.WriteUint64(tx.Nonce)
	writeOptUint(w, tx.ValidBefore)
	writeOptUint(w, tx.ValidAfter)

	// The sponsored sender does not commit to the fee token: the fee payer
	// picks it, and its own payload (encFeePayer) includes it.
	if tx.FeeToken == nil || (mode == encSender && tx.sponsored()) {
		w.WriteBytes(nil)
	} else {
		w.WriteBytes(tx.FeeToken[:])
	}

	switch {
	case mode == encFeePayer:
		w.WriteBytes(sender[:])
	case mode == encSender && tx.sponsored():
		w.WriteBytes([]byte{0x00}) // placeholder: "a fee payer will sign"
	case mode == encSigned && tx.FeePayerSignature != nil:
		fp := tx.FeePayerSignature
		l := w.List()
		w.WriteUint64(uint64(fp.YParity))
		w.WriteBytes(bytes.TrimLeft(fp.R[:], "\x00"))
		w.WriteBytes(bytes.TrimLeft(fp.S[:], "\x00"))
		w.ListEnd(l)
	default:
		w.WriteBytes(nil)
	}

	w.ListEnd(w.List()) // aa_authorization_list: always empty here
	if mode == encSigned {
		w.WriteBytes(tx.Signature)
	}
	w.ListEnd(outer)
	out := w.AppendToBytes([]byte{prefix})
	_ = w.Flush() // returns the buffer to go-ethereum's pool; no writer, so no error
	return out
}

// signingPreimage is 0x76 ‖ rlp(fields without the sender signature), the
// payload whose keccak256 the sender signs.
func (tx *TempoTx) signingPreimage() []byte { return tx.encode(encSender, common.Address{}) }

// SigningHash returns the hash the sender signs: keccak256(0x76 ‖ rlp(fields
// without the signature)), with fee_token emptied and the fee payer field set
// to the placeholder 0x00 when the transaction is sponsored.
func (tx *TempoTx) SigningHash() common.Hash {
	return crypto.Keccak256Hash(tx.signingPreimage())
}

// FeePayerSigningHash returns the hash the fee payer signs: keccak256(0x78 ‖
// rlp(fields with fee_token, and the sender's address in place of the fee
// payer signature)).
func (tx *TempoTx) FeePayerSigningHash(sender common.Address) common.Hash {
	return crypto.Keccak256Hash(tx.encode(encFeePayer, sender))
}

// Hash returns the transaction hash, keccak256 of the canonical encoding. It
// fails when the transaction cannot be encoded (see MarshalBinary).
func (tx *TempoTx) Hash() (common.Hash, error) {
	b, err := tx.MarshalBinary()
	if err != nil {
		return common.Hash{}, err
	}
	return crypto.Keccak256Hash(b), nil
}

// SignSecp256k1 signs the transaction as its sender with a secp256k1 key
// (go-ethereum crypto) and stores the 65-byte signature with v = 27/28.
func (tx *TempoTx) SignSecp256k1(key *ecdsa.PrivateKey) error {
	if err := tx.validate(false); err != nil {
		return err
	}
	h := tx.SigningHash()
	sig, err := crypto.Sign(h[:], key)
	if err != nil {
		return fmt.Errorf("tempo: secp256k1 sign: %w", err)
	}
	sig[64] += 27
	tx.Signature = sig
	return nil
}

// SignP256 signs the transaction as its sender with a P-256 key (crypto/ecdsa,
// elliptic.P256) and stores a P256 signature carrying the public key. With
// preHash the signed digest is sha256(signing hash), as WebCrypto produces.
// The sender address is P256Address(&key.PublicKey).
func (tx *TempoTx) SignP256(key *ecdsa.PrivateKey, preHash bool) error {
	if err := tx.validate(false); err != nil {
		return err
	}
	h := tx.SigningHash()
	digest := h[:]
	if preHash {
		d := sha256.Sum256(h[:])
		digest = d[:]
	}
	r, s, err := signP256Digest(key, digest)
	if err != nil {
		return err
	}
	x, y, err := p256PublicXY(&key.PublicKey)
	if err != nil {
		return err
	}
	sig := make([]byte, 0, p256SigLen)
	sig = append(sig, sigTypeP256)
	sig = append(append(append(append(sig, r[:]...), s[:]...), x...), y...)
	if preHash {
		sig = append(sig, 1)
	} else {
		sig = append(sig, 0)
	}
	tx.Signature = sig
	return nil
}

// SignFeePayer signs the transaction as its fee payer with a secp256k1 key,
// committing to sender and the fee token, and marks it sponsored. The sender
// may sign before (with Sponsored already set) or after, since its payload
// does not include this signature.
func (tx *TempoTx) SignFeePayer(key *ecdsa.PrivateKey, sender common.Address) error {
	if len(tx.Signature) > 0 && !tx.sponsored() {
		// The existing sender signature covers the non-sponsored payload and
		// would no longer verify.
		return malformedf("sender_signature: the sender signed a non-sponsored payload; set Sponsored and have the sender sign again")
	}
	tx.Sponsored = true
	if err := tx.validate(false); err != nil {
		return err
	}
	h := tx.FeePayerSigningHash(sender)
	sig, err := crypto.Sign(h[:], key)
	if err != nil {
		return fmt.Errorf("tempo: fee payer sign: %w", err)
	}
	fp := &FeePayerSignature{YParity: sig[64]}
	copy(fp.R[:], sig[:32])
	copy(fp.S[:], sig[32:64])
	tx.FeePayerSignature = fp
	return nil
}

// validate refuses what the decoder would refuse, so that everything this
// package encodes decodes again. signed also requires the signatures.
func (tx *TempoTx) validate(signed bool) error {
	if len(tx.Calls) == 0 {
		return malformedf("calls: at least one call is required, got an empty list")
	}
	fees := []struct {
		name string
		v    *big.Int
	}{{"max_priority_fee_per_gas", tx.MaxPriorityFeePerGas}, {"max_fee_per_gas", tx.MaxFeePerGas}}
	for _, fee := range fees {
		if fee.v != nil && (fee.v.Sign() < 0 || fee.v.BitLen() > 128) {
			return malformedf("%s: %s is outside the u128 range", fee.name, fee.v)
		}
	}
	for i, c := range tx.Calls {
		if c.Value != nil && (c.Value.Sign() < 0 || c.Value.BitLen() > 256) {
			return malformedf("calls[%d].value: %s is outside the U256 range", i, c.Value)
		}
	}
	if tx.ValidBefore != nil && *tx.ValidBefore == 0 {
		return malformedf("valid_before: 0 encodes like unset; use nil")
	}
	if tx.ValidAfter != nil && *tx.ValidAfter == 0 {
		return malformedf("valid_after: 0 encodes like unset; use nil")
	}
	if tx.ValidBefore != nil && tx.ValidAfter != nil && *tx.ValidBefore <= *tx.ValidAfter {
		return malformedf("valid_before (%d) must be greater than valid_after (%d)", *tx.ValidBefore, *tx.ValidAfter)
	}
	if fp := tx.FeePayerSignature; fp != nil {
		if fp.YParity > 1 {
			return malformedf("fee_payer_signature.y_parity: must be 0 or 1, got %d", fp.YParity)
		}
		if err := checkScalars("fee_payer_signature", fp.R[:], fp.S[:], secp256k1N, secp256k1HalfN); err != nil {
			return err
		}
	}
	if !signed {
		return nil
	}
	if tx.Sponsored && tx.FeePayerSignature == nil {
		return malformedf("fee_payer_signature: the transaction is sponsored but the fee payer has not signed")
	}
	if len(tx.Signature) == 0 {
		return malformedf("sender_signature: the transaction is not signed")
	}
	_, err := parseSenderSignature(tx.Signature)
	return err
}

// MarshalBinary returns the canonical encoding 0x76 ‖ rlp([...]) of a signed
// transaction. It fails if the transaction is unsigned, sponsored without a
// fee payer signature, or holds values the decoder would refuse.
func (tx *TempoTx) MarshalBinary() ([]byte, error) {
	if err := tx.validate(true); err != nil {
		return nil, err
	}
	return tx.encode(encSigned, common.Address{}), nil
}

// UnmarshalBinary strictly decodes a signed 0x76 transaction: canonical RLP,
// exact field shapes and ranges, a well-formed sender signature (v normalised
// to 27/28). It does not verify signatures; DecodeTempoTx does.
func (tx *TempoTx) UnmarshalBinary(b []byte) error {
	t, _, err := parseTempoTx(b)
	if err != nil {
		return err
	}
	*tx = *t
	return nil
}

// parseTempoTx is the strict structural decoder behind UnmarshalBinary and
// DecodeTempoTx. The returned transaction aliases raw.
func parseTempoTx(raw []byte) (*TempoTx, senderSig, error) {
	var none senderSig
	switch {
	case len(raw) == 0:
		return nil, none, malformedf("empty input")
	case len(raw) > MaxTxSize:
		return nil, none, malformedf("input is %d bytes, exceeds the maximum of %d", len(raw), MaxTxSize)
	case raw[0] >= 0xc0:
		return nil, none, malformedf("type byte missing: input starts with an RLP list header (0x%02x); a Tempo transaction is 0x76 ‖ rlp([...])", raw[0])
	case raw[0] >= 0x01 && raw[0] <= 0x04:
		return nil, none, malformedf("type byte: expected 0x76, got 0x%02x (an EVM transaction type; submit it as EVM_OPAQUE_BYTES_V1)", raw[0])
	case raw[0] != TempoTxType:
		return nil, none, malformedf("type byte: expected 0x76, got 0x%02x", raw[0])
	case len(raw) == 1:
		return nil, none, malformedf("type byte 0x76 is not followed by an RLP payload")
	}
	outer, rest, err := splitItem("transaction", raw[1:])
	if err != nil {
		return nil, none, err
	}
	if !outer.isList() {
		return nil, none, malformedf("transaction: expected an RLP list after the type byte, got a byte string")
	}
	if len(rest) != 0 {
		return nil, none, malformedf("%d trailing bytes after the transaction's RLP list", len(rest))
	}
	items, err := namedListItems("transaction", outer, func(i int) string {
		switch {
		case i < numUnsignedFields:
			return tempoFieldNames[i]
		case i == numUnsignedFields:
			return "sender_signature (item 13; key_authorization if 15 items)"
		case i == numUnsignedFields+1:
			return "sender_signature (item 14)"
		}
		return fmt.Sprintf("transaction item %d", i)
	})
	if err != nil {
		return nil, none, err
	}
	switch n := len(items); {
	case n == numUnsignedFields:
		return nil, none, malformedf("sender_signature missing: the transaction list has %d items, expected %d (%d with key_authorization)", n, numUnsignedFields+1, numUnsignedFields+2)
	case n < numUnsignedFields || n > numUnsignedFields+2:
		return nil, none, malformedf("the transaction list has %d items, expected %d (%d with key_authorization)", n, numUnsignedFields+1, numUnsignedFields+2)
	}
	sigItem := items[len(items)-1]
	if sigItem.isList() {
		return nil, none, malformedf("sender_signature: the last list item must be the signature as a byte string, got an RLP list")
	}

	tx := new(TempoTx)
	name := func(i int) string { return tempoFieldNames[i] }

	if tx.ChainID, err = readUint64(name(0), items[0]); err != nil {
		return nil, none, err
	}
	if tx.MaxPriorityFeePerGas, err = readBig(name(1), items[1], 16, "u128"); err != nil {
		return nil, none, err
	}
	if tx.MaxFeePerGas, err = readBig(name(2), items[2], 16, "u128"); err != nil {
		return nil, none, err
	}
	if tx.GasLimit, err = readUint64(name(3), items[3]); err != nil {
		return nil, none, err
	}
	if tx.Calls, err = parseCalls(items[4]); err != nil {
		return nil, none, err
	}
	if tx.AccessList, err = parseAccessList(items[5]); err != nil {
		return nil, none, err
	}
	if tx.NonceKey, err = readWord(name(6), items[6]); err != nil {
		return nil, none, err
	}
	if tx.Nonce, err = readUint64(name(7), items[7]); err != nil {
		return nil, none, err
	}
	for i, dst := range []**uint64{&tx.ValidBefore, &tx.ValidAfter} {
		it := items[8+i]
		if it.isEmptyString() {
			continue // unset
		}
		v, err := readUint64(name(8+i), it)
		if err != nil {
			return nil, none, err
		}
		*dst = &v
	}
	if tx.FeeToken, err = readOptAddress(name(fieldFeeToken), items[fieldFeeToken], "no fee token"); err != nil {
		return nil, none, err
	}
	if tx.FeePayerSignature, err = parseFeePayerSig(items[fieldFeePayerSig]); err != nil {
		return nil, none, err
	}
	tx.Sponsored = tx.FeePayerSignature != nil
	auths, err := listItems(name(fieldAAAuthList), items[fieldAAAuthList])
	if err != nil {
		return nil, none, err
	}
	if len(tx.Calls) == 0 {
		return nil, none, malformedf("calls: at least one call is required, got an empty list")
	}
	if tx.ValidBefore != nil && tx.ValidAfter != nil && *tx.ValidBefore <= *tx.ValidAfter {
		return nil, none, malformedf("valid_before (%d) must be greater than valid_after (%d)", *tx.ValidBefore, *tx.ValidAfter)
	}

	// Features that are well formed but refused: they change account state
	// (code delegation, access keys) in ways a payment validator cannot check
	// without chain state, and none of them is needed to pay.
	if len(auths) > 0 {
		return nil, none, unsupportedf("aa_authorization_list: %d authorization(s) present; authorization lists are not supported in payments", len(auths))
	}
	if len(items) == numUnsignedFields+2 {
		if !items[numUnsignedFields].isList() {
			return nil, none, malformedf("key_authorization: expected an RLP list before the sender signature, got a byte string")
		}
		return nil, none, unsupportedf("key_authorization: provisioning an access key is not supported in payments")
	}

	tx.Signature = sigItem.content
	sig, err := parseSenderSignature(tx.Signature)
	if err != nil {
		return nil, none, err
	}
	if sig.typ == SigSecp256k1 && tx.Signature[64] < 27 {
		// v = 0/1 is accepted but the canonical form, which the tx hash
		// covers, has 27/28.
		norm := bytes.Clone(tx.Signature)
		norm[64] += 27
		tx.Signature = norm
	}
	return tx, sig, nil
}

// parseCalls reads calls = [[to, value, input], ...].
func parseCalls(it rlpItem) ([]Call, error) {
	items, err := listItems("calls", it)
	if err != nil {
		return nil, err
	}
	calls := make([]Call, 0, len(items))
	for i, ci := range items {
		name := fmt.Sprintf("calls[%d]", i)
		fields, err := listOfN(name, ci, 3, "[to, value, input]", "to", "value", "input")
		if err != nil {
			return nil, err
		}
		var c Call
		if c.To, err = readOptAddress(name+".to", fields[0], "empty for contract creation"); err != nil {
			return nil, err
		}
		if c.Value, err = readBig(name+".value", fields[1], 32, "U256"); err != nil {
			return nil, err
		}
		if c.Input, err = byteString(name+".input", fields[2]); err != nil {
			return nil, err
		}
		calls = append(calls, c)
	}
	return calls, nil
}

// parseAccessList reads access_list = [[address, [storage_key, ...]], ...].
func parseAccessList(it rlpItem) (types.AccessList, error) {
	items, err := listItems("access_list", it)
	if err != nil {
		return nil, err
	}
	al := make(types.AccessList, 0, len(items))
	for i, ti := range items {
		name := fmt.Sprintf("access_list[%d]", i)
		fields, err := listOfN(name, ti, 2, "[address, storage_keys]", "address", "storage_keys")
		if err != nil {
			return nil, err
		}
		addr, err := readFixed(name+".address", fields[0], common.AddressLength)
		if err != nil {
			return nil, err
		}
		keyItems, err := listItems(name+".storage_keys", fields[1])
		if err != nil {
			return nil, err
		}
		tuple := types.AccessTuple{Address: common.BytesToAddress(addr), StorageKeys: make([]common.Hash, 0, len(keyItems))}
		for j, ki := range keyItems {
			k, err := readFixed(fmt.Sprintf("%s.storage_keys[%d]", name, j), ki, common.HashLength)
			if err != nil {
				return nil, err
			}
			tuple.StorageKeys = append(tuple.StorageKeys, common.BytesToHash(k))
		}
		al = append(al, tuple)
	}
	return al, nil
}

// parseFeePayerSig reads field 11: 0x80 (not sponsored) or [y_parity, r, s].
func parseFeePayerSig(it rlpItem) (*FeePayerSignature, error) {
	const name = "fee_payer_signature"
	if !it.isList() {
		switch {
		case len(it.content) == 0:
			return nil, nil
		case len(it.content) == 1 && it.content[0] == 0x00:
			return nil, malformedf("%s: the single byte 0x00 is the sender-side placeholder of the signing payload; a submitted transaction must carry 0x80 (no fee payer) or the list [y_parity, r, s]", name)
		}
		return nil, malformedf("%s: expected 0x80 or a list [y_parity, r, s], got a %d-byte string", name, len(it.content))
	}
	fields, err := listOfN(name, it, 3, "[y_parity, r, s]", "y_parity", "r", "s")
	if err != nil {
		return nil, err
	}
	y, err := readUint64(name+".y_parity", fields[0])
	if err != nil {
		return nil, err
	}
	if y > 1 {
		return nil, malformedf("%s.y_parity: must be 0 or 1, got %d", name, y)
	}
	fp := &FeePayerSignature{YParity: byte(y)}
	if fp.R, err = readWord(name+".r", fields[1]); err != nil {
		return nil, err
	}
	if fp.S, err = readWord(name+".s", fields[2]); err != nil {
		return nil, err
	}
	if err := checkScalars(name, fp.R[:], fp.S[:], secp256k1N, secp256k1HalfN); err != nil {
		return nil, err
	}
	return fp, nil
}
