package tempo

import (
	"bytes"
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
)

// MaxTxSize is the largest transaction the decoders accept, in bytes
// (SPEC §3: 128 KiB). Larger inputs are refused before any parsing.
var MaxTxSize = 128 << 10

// ExpiringNonceKey is the nonce key 2^256-1 of Tempo's expiring nonces. Such
// transactions decode, but validators refuse them (SPEC §3).
var ExpiringNonceKey = [32]byte{
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
}

// DecodedTx is a decoded, signature-verified transaction of either accepted
// format: a Tempo 0x76 transaction or an EVM envelope.
type DecodedTx struct {
	Type        byte // 0x76 for Tempo; 0x00 legacy, 0x01, 0x02 for EVM envelopes
	ChainID     uint64
	Sender      common.Address // the verified signer
	NonceKey    [32]byte       // big-endian U256; zero for EVM envelopes
	Nonce       uint64
	Calls       []Call
	SigningHash common.Hash // what the sender signed
	TxHash      common.Hash // the chain's transaction hash
	SigType     SignatureType
	ValidBefore *uint64 // unix seconds; nil when unset (always nil for EVM envelopes)
	ValidAfter  *uint64
	FeeToken    *common.Address
	FeePayer    *common.Address // recovered fee payer when sponsored
	GasLimit    uint64
	// MaxFeePerGas is the most the transaction pays per unit of gas (the
	// fee cap; a legacy or EIP-2930 envelope's gas price), in the chain's
	// fee units: attodollars on Tempo, wei on a chain with native gas.
	MaxFeePerGas *big.Int
	Raw          []byte // the exact input (a private copy)
}

// IsExpiringNonce reports whether the transaction uses the expiring-nonce key
// 2^256-1, which validators do not support.
func (tx *DecodedTx) IsExpiringNonce() bool { return tx.NonceKey == ExpiringNonceKey }

// DecodeTempoTx strictly decodes a signed Tempo 0x76 transaction and verifies
// its sender (and fee payer) signature. Anything not canonically encoded, out
// of range, or not correctly signed is refused with an error wrapping
// ErrMalformed; well-formed features this package does not support
// (keychain signatures, authorization lists, key authorizations) with
// ErrUnsupported.
func DecodeTempoTx(raw []byte) (*DecodedTx, error) {
	if len(raw) > MaxTxSize {
		return nil, malformedf("input is %d bytes, exceeds the maximum of %d", len(raw), MaxTxSize)
	}
	// Parse a private copy: the result aliases it, never the caller's buffer.
	raw = bytes.Clone(raw)
	tx, sig, err := parseTempoTx(raw)
	if err != nil {
		return nil, err
	}
	signingHash := tx.SigningHash()
	sender, err := sig.verify(signingHash)
	if err != nil {
		return nil, err
	}
	var feePayer *common.Address
	if fp := tx.FeePayerSignature; fp != nil {
		addr, err := recoverSecp256k1("fee_payer_signature", tx.FeePayerSigningHash(sender), fp.R[:], fp.S[:], fp.YParity)
		if err != nil {
			return nil, err
		}
		feePayer = &addr
	}

	// Backstop: every field was checked for canonical form, so the canonical
	// re-encoding must reproduce the input (up to v = 0/1 -> 27/28, the last
	// byte). If it does not, a check above is missing; refuse rather than
	// certify bytes whose hash differs from the one the chain computes.
	canonical := tx.encode(encSigned, common.Address{})
	if !bytes.Equal(canonical, raw) && !onlyVNormalised(canonical, raw, sig) {
		return nil, malformedf("non-canonical encoding: the canonical re-encoding differs from the input")
	}
	return &DecodedTx{
		Type:         TempoTxType,
		ChainID:      tx.ChainID,
		Sender:       sender,
		NonceKey:     tx.NonceKey,
		Nonce:        tx.Nonce,
		Calls:        tx.Calls,
		SigningHash:  signingHash,
		TxHash:       crypto.Keccak256Hash(canonical),
		SigType:      sig.typ,
		ValidBefore:  tx.ValidBefore,
		ValidAfter:   tx.ValidAfter,
		FeeToken:     tx.FeeToken,
		FeePayer:     feePayer,
		GasLimit:     tx.GasLimit,
		MaxFeePerGas: new(big.Int).Set(bigOrZero(tx.MaxFeePerGas)),
		Raw:          raw,
	}, nil
}

// onlyVNormalised reports whether canonical is raw with a secp256k1 v of 0/1
// (the input's last byte) replaced by 27/28.
func onlyVNormalised(canonical, raw []byte, sig senderSig) bool {
	n := len(raw)
	return sig.typ == SigSecp256k1 && len(canonical) == n && raw[n-1] <= 1 &&
		canonical[n-1] == raw[n-1]+27 && bytes.Equal(canonical[:n-1], raw[:n-1])
}
