package tempo

import (
	"bytes"
	"errors"
	"math/big"

	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/rlp"
)

// DecodeEVMTx decodes an EIP-2718 envelope (legacy with EIP-155 replay
// protection, EIP-2930 or EIP-1559) with go-ethereum and recovers its sender.
// It refuses other types (blob, set-code, Tempo 0x76, unknown), pre-EIP-155
// legacy transactions, non-canonical encodings and trailing bytes (the input
// must equal go-ethereum's re-encoding), and high-s signatures. A contract
// creation (To == nil) decodes, but it is not a payment.
func DecodeEVMTx(raw []byte) (*DecodedTx, error) {
	switch {
	case len(raw) == 0:
		return nil, malformedf("empty input")
	case len(raw) > MaxTxSize:
		return nil, malformedf("input is %d bytes, exceeds the maximum of %d", len(raw), MaxTxSize)
	}
	switch t := raw[0]; {
	case t >= 0xc0, t == types.AccessListTxType, t == types.DynamicFeeTxType:
	case t == types.BlobTxType:
		return nil, unsupportedf("type 0x03 (EIP-4844 blob transaction) is not supported; use a legacy, 0x01 or 0x02 transaction")
	case t == types.SetCodeTxType:
		return nil, unsupportedf("type 0x04 (EIP-7702 set-code transaction) is not supported; use a legacy, 0x01 or 0x02 transaction")
	case t == TempoTxType:
		return nil, malformedf("type 0x76 is a Tempo transaction, not an EVM envelope; submit it as TEMPO_NATIVE_V1")
	case t >= 0x80:
		return nil, malformedf("not a transaction: input starts with an RLP string header (0x%02x); expected a type byte 0x01/0x02 or a legacy RLP list", t)
	default:
		return nil, malformedf("unknown transaction type 0x%02x; supported: legacy, 0x01 (EIP-2930), 0x02 (EIP-1559)", t)
	}

	raw = bytes.Clone(raw)
	tx := new(types.Transaction)
	if err := tx.UnmarshalBinary(raw); err != nil {
		if errors.Is(err, rlp.ErrMoreThanOneValue) {
			return nil, malformedf("EVM envelope: trailing bytes after the transaction")
		}
		return nil, malformedf("EVM envelope: %v", err)
	}
	// go-ethereum's decoder rejects most non-canonical input itself; comparing
	// with the canonical re-encoding catches the rest, so the hash validators
	// agree on is the chain's.
	if canonical, err := tx.MarshalBinary(); err != nil || !bytes.Equal(canonical, raw) {
		return nil, malformedf("EVM envelope: non-canonical encoding or trailing bytes (the input differs from its canonical re-encoding)")
	}
	if !tx.Protected() {
		return nil, malformedf("legacy transaction without an EIP-155 chain id (v = 27/28): pre-EIP-155 signatures are replayable on every chain")
	}
	chainID := tx.ChainId()
	if chainID.Sign() <= 0 || !chainID.IsUint64() {
		return nil, malformedf("chain_id: %s is not a usable chain id (must be 1 to 2^64-1)", chainID)
	}
	v, r, s := tx.RawSignatureValues()
	if tx.Type() != types.LegacyTxType && v.Cmp(big.NewInt(1)) > 0 {
		return nil, malformedf("signature: y_parity must be 0 or 1, got %s", v)
	}
	var rb, sb [32]byte
	if r.BitLen() > 256 || s.BitLen() > 256 {
		return nil, malformedf("signature: r or s exceeds 256 bits")
	}
	r.FillBytes(rb[:])
	s.FillBytes(sb[:])
	if err := checkScalars("signature", rb[:], sb[:], secp256k1N, secp256k1HalfN); err != nil {
		return nil, err
	}
	signer := types.LatestSignerForChainID(chainID)
	sender, err := types.Sender(signer, tx)
	if err != nil {
		return nil, malformedf("signature: sender recovery failed: %v", err)
	}
	return &DecodedTx{
		Type:         tx.Type(),
		ChainID:      chainID.Uint64(),
		Sender:       sender,
		Nonce:        tx.Nonce(),
		Calls:        []Call{{To: tx.To(), Value: tx.Value(), Input: tx.Data()}},
		SigningHash:  signer.Hash(tx),
		TxHash:       tx.Hash(),
		SigType:      SigSecp256k1,
		GasLimit:     tx.Gas(),
		MaxFeePerGas: new(big.Int).Set(tx.GasFeeCap()),
		Raw:          raw,
	}, nil
}
