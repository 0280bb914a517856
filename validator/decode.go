package validator

import (
	"errors"
	"math/big"

	"github.com/ethereum/go-ethereum/common"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
)

const (
	codeInvalidFormat = fastpayv1.RejectCode_INVALID_FORMAT
	codeNotPayment    = fastpayv1.RejectCode_NOT_PAYMENT_TX
	codeWrongChain    = fastpayv1.RejectCode_WRONG_CHAIN
)

// MaxClientRequestIDLen bounds client_request_id.
const MaxClientRequestIDLen = 128

// Payment is a submitted transaction after stage 1 (decode, structural and
// chain checks): everything later stages need, computed once.
type Payment struct {
	TxHash          qc.Hash
	Effects         qc.Effects
	Expiry          qc.Expiry
	ParentQCHash    *qc.Hash
	ClientRequestID string
	Tx              *tempo.DecodedTx
	Request         *fastpayv1.SubmitFastPayRequest
	// VerifiedParents are the request's parent QCs that gossip validation
	// verified and that were not known then, to be learned when the
	// transaction is delivered (VerifyParentQCs).
	VerifiedParents []*qc.QC
}

// Decode runs stage 1 of SPEC §4 on req: structure, transaction decoding and
// signer recovery, payment extraction, nonce binding, metadata consistency
// and chain id. It uses no state, so gossip validators call it before any
// stateful check. Errors are *Reject.
func Decode(req *fastpayv1.SubmitFastPayRequest, domain qc.Domain, maxParentQCs int) (*Payment, error) {
	tx := req.GetTx()
	if tx == nil {
		return nil, reject(codeInvalidFormat, nil, "request has no tx")
	}
	raw := tx.GetTempoTx().GetData()
	if len(raw) == 0 {
		return nil, reject(codeInvalidFormat, nil, "tempo_tx is empty")
	}
	if len(raw) > tempo.MaxTxSize {
		return nil, reject(codeInvalidFormat, nil, "tempo_tx is %d bytes, at most %d allowed", len(raw), tempo.MaxTxSize)
	}
	if len(req.GetParentQcs()) > maxParentQCs {
		return nil, reject(codeInvalidFormat, nil, "request carries %d parent QCs, at most %d allowed", len(req.GetParentQcs()), maxParentQCs)
	}
	if len(tx.ClientRequestId) > MaxClientRequestIDLen {
		return nil, reject(codeInvalidFormat, nil, "client_request_id is %d bytes, at most %d allowed", len(tx.ClientRequestId), MaxClientRequestIDLen)
	}
	hashInput, err := tx.TxHashInput()
	if err != nil {
		return nil, reject(codeInvalidFormat, err, "fastpay tx")
	}
	if hashInput.Expiry.Kind == qc.ExpiryMaxBlockHeight && hashInput.Expiry.Value == 0 {
		return nil, reject(codeInvalidFormat, nil, "expiry: max_block_height must be positive")
	}

	var decoded *tempo.DecodedTx
	switch tx.TempoTxFormat {
	case fastpayv1.TempoTxFormat_EVM_OPAQUE_BYTES_V1:
		decoded, err = tempo.DecodeEVMTx(raw)
	case fastpayv1.TempoTxFormat_TEMPO_NATIVE_V1:
		decoded, err = tempo.DecodeTempoTx(raw)
	default:
		return nil, reject(codeInvalidFormat, nil, "tempo_tx_format must be EVM_OPAQUE_BYTES_V1 or TEMPO_NATIVE_V1, got %s", tx.TempoTxFormat)
	}
	if err != nil {
		return nil, reject(codeInvalidFormat, err, "tempo_tx")
	}
	// tx_hash covers the raw bytes, so the two accepted spellings of a
	// secp256k1 v (0/1 and 27/28) would split validators' votes between two
	// hashes for one transaction. Only the canonical one is certified.
	if decoded.Type == tempo.TempoTxType && decoded.SigType == tempo.SigSecp256k1 && raw[len(raw)-1] < 27 {
		return nil, reject(codeInvalidFormat, nil, "tempo_tx: secp256k1 signature v must be 27 or 28 (canonical encoding), got %d", raw[len(raw)-1])
	}

	pay, err := decoded.SinglePayment()
	switch {
	case errors.Is(err, tempo.ErrAmountTooLarge):
		return nil, reject(codeInvalidFormat, err, "payment")
	case err != nil:
		return nil, reject(codeNotPayment, err, "tempo_tx")
	}

	// The FastPay nonce must be the transaction's own nonce: EVM envelopes use
	// the protocol nonce (key 0), so a claimed other key would let two
	// transactions with one EVM nonce get different contention keys.
	if decoded.IsExpiringNonce() {
		return nil, reject(codeInvalidFormat, nil, "expiring nonces (nonce_key = 2^256-1) are not supported; use a regular nonce key")
	}
	if qc.NonceKey(decoded.NonceKey) != hashInput.NonceKey {
		if tx.TempoTxFormat == fastpayv1.TempoTxFormat_EVM_OPAQUE_BYTES_V1 {
			return nil, reject(codeInvalidFormat, nil, "nonce.nonce_key_be must be zero for EVM transactions (they use the protocol nonce)")
		}
		return nil, reject(codeInvalidFormat, nil, "nonce.nonce_key_be %x differs from the transaction's nonce_key %x", hashInput.NonceKey[:], decoded.NonceKey[:])
	}
	if decoded.Nonce != hashInput.NonceSeq {
		return nil, reject(codeInvalidFormat, nil, "nonce.nonce_seq %d differs from the transaction's nonce %d", hashInput.NonceSeq, decoded.Nonce)
	}

	effects := qc.Effects{
		Sender:    qc.Address(decoded.Sender),
		Recipient: qc.Address(pay.Recipient),
		Amount:    pay.Amount.Uint64(),
		Asset:     qc.Address(pay.Token),
		NonceKey:  hashInput.NonceKey,
		NonceSeq:  hashInput.NonceSeq,
	}
	if err := checkIntent("intent", tx.Intent, effects); err != nil {
		return nil, err
	}
	if tx.Overlay != nil {
		if err := checkIntent("overlay.payment", tx.Overlay.Payment, effects); err != nil {
			return nil, err
		}
	}

	if hashInput.ChainID != domain.ChainID {
		return nil, reject(codeWrongChain, nil, "chain_id is %d, this validator serves chain %d", hashInput.ChainID, domain.ChainID)
	}
	if decoded.ChainID != domain.ChainID {
		return nil, reject(codeWrongChain, nil, "the transaction is signed for chain %d, this validator serves chain %d", decoded.ChainID, domain.ChainID)
	}

	return &Payment{
		TxHash:          qc.TxHash(hashInput),
		Effects:         effects,
		Expiry:          hashInput.Expiry,
		ParentQCHash:    hashInput.ParentQCHash,
		ClientRequestID: tx.ClientRequestId,
		Tx:              decoded,
		Request:         req,
	}, nil
}

// checkIntent verifies optional payment metadata against the decoded
// transaction. Absent metadata is fine: effects come from the transaction.
func checkIntent(field string, intent *fastpayv1.PaymentIntent, want qc.Effects) error {
	if intent == nil {
		return nil
	}
	mismatch := func(what string, got, expected any) error {
		return reject(codeInvalidFormat, nil, "%s.%s is %v but the transaction says %v", field, what, got, expected)
	}
	if intent.Sender != nil {
		got, err := intent.Sender.ToAddress(field + ".sender")
		if err != nil {
			return reject(codeInvalidFormat, err, "%s", field)
		}
		if got != want.Sender {
			return mismatch("sender", common.Address(got), common.Address(want.Sender).Hex()+" (the recovered signer)")
		}
	}
	if intent.Recipient != nil {
		got, err := intent.Recipient.ToAddress(field + ".recipient")
		if err != nil {
			return reject(codeInvalidFormat, err, "%s", field)
		}
		if got != want.Recipient {
			return mismatch("recipient", common.Address(got), common.Address(want.Recipient))
		}
	}
	if intent.Asset != nil {
		got, err := intent.Asset.ToAddress(field + ".asset")
		if err != nil {
			return reject(codeInvalidFormat, err, "%s", field)
		}
		if got != want.Asset {
			return mismatch("asset", common.Address(got), common.Address(want.Asset))
		}
	}
	if intent.Amount != want.Amount {
		return mismatch("amount", intent.Amount, want.Amount)
	}
	return nil
}

// amountBig converts a u64 amount for balance arithmetic.
func amountBig(v uint64) *big.Int { return new(big.Int).SetUint64(v) }
