package client

import (
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
)

// Defaults of the payment builders.
const (
	// DefaultGasLimit is the gas limit of a payment transaction. A TIP-20
	// transfer to a new holder costs about 146k gas on the development chain;
	// 250k leaves room.
	DefaultGasLimit = 250_000
	// DefaultExpiry is how long a payment stays valid when no expiry option
	// is given: the expiry is unix millis now + DefaultExpiry.
	DefaultExpiry = 5 * time.Minute
)

// Default fee caps in wei: generous for development chains (tip 1 gwei, cap
// 100 gwei). Set real values with WithFees.
var (
	DefaultMaxFeePerGas         = big.NewInt(100_000_000_000)
	DefaultMaxPriorityFeePerGas = big.NewInt(1_000_000_000)
)

// ABI selectors of the TIP-20 payment methods.
var (
	selectorTransfer         = [4]byte{0xa9, 0x05, 0x9c, 0xbb} // transfer(address,uint256)
	selectorTransferWithMemo = [4]byte{0x95, 0x77, 0x7d, 0x59} // transferWithMemo(address,uint256,bytes32)
)

// ErrInvalidRequest is wrapped by every error about a request the client
// cannot build, decode or check locally (before anything is sent).
var ErrInvalidRequest = errors.New("invalid payment request")

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, args...))
}

// PaymentOption customises NewEVMPayment and NewTempoPayment.
type PaymentOption func(*paymentOptions)

type paymentOptions struct {
	expiry      *qc.Expiry
	parent      *qc.QC
	requestID   *string
	gasLimit    uint64
	maxFee      *big.Int
	maxTip      *big.Int
	memo        *[32]byte
	feeToken    *common.Address
	validBefore *uint64
}

// WithParent makes the payment a child of the payment certified by q: it sets
// parent_qc_hash to q's hash and carries q in the request's parent_qcs, so a
// validator that has not seen q yet can verify it and credit the sender with
// what q pays it. Use it to spend funds received in a payment that has a QC
// but is not on chain yet.
func WithParent(q *qc.QC) PaymentOption { return func(o *paymentOptions) { o.parent = q } }

// WithExpiry sets the FastPay expiry (a block height or unix millis).
func WithExpiry(e qc.Expiry) PaymentOption { return func(o *paymentOptions) { o.expiry = &e } }

// WithExpiryAt sets the expiry to the unix-millis time t.
func WithExpiryAt(t time.Time) PaymentOption {
	return WithExpiry(qc.Expiry{Kind: qc.ExpiryUnixMillis, Value: uint64(t.UnixMilli())})
}

// WithMaxBlockHeight makes the payment expire once the chain head reaches
// height.
func WithMaxBlockHeight(height uint64) PaymentOption {
	return WithExpiry(qc.Expiry{Kind: qc.ExpiryMaxBlockHeight, Value: height})
}

// WithClientRequestID sets client_request_id (at most 128 bytes; default: 16
// random bytes in hex). Sidecars scope it to the sender: resubmitting the
// same request with the same id is idempotent.
func WithClientRequestID(id string) PaymentOption {
	return func(o *paymentOptions) { o.requestID = &id }
}

// WithGasLimit sets the transaction's gas limit (default DefaultGasLimit).
func WithGasLimit(gas uint64) PaymentOption { return func(o *paymentOptions) { o.gasLimit = gas } }

// WithFees sets the EIP-1559 fee caps in wei; nil keeps the default.
func WithFees(maxFeePerGas, maxPriorityFeePerGas *big.Int) PaymentOption {
	return func(o *paymentOptions) { o.maxFee, o.maxTip = maxFeePerGas, maxPriorityFeePerGas }
}

// WithMemo pays with transferWithMemo(recipient, amount, memo) instead of
// transfer(recipient, amount).
func WithMemo(memo [32]byte) PaymentOption { return func(o *paymentOptions) { o.memo = &memo } }

// WithFeeToken sets a Tempo transaction's fee token (NewTempoPayment only).
func WithFeeToken(token common.Address) PaymentOption {
	return func(o *paymentOptions) { o.feeToken = &token }
}

// WithValidBefore sets a Tempo transaction's valid_before (unix seconds of
// t; NewTempoPayment only). Validators refuse the transaction from then on.
func WithValidBefore(t time.Time) PaymentOption {
	return func(o *paymentOptions) { s := uint64(t.Unix()); o.validBefore = &s }
}

func buildOptions(opts []PaymentOption) (*paymentOptions, error) {
	o := &paymentOptions{gasLimit: DefaultGasLimit}
	for _, opt := range opts {
		opt(o)
	}
	if o.gasLimit == 0 {
		return nil, invalidf("gas limit must be positive")
	}
	if o.maxFee == nil {
		o.maxFee = DefaultMaxFeePerGas
	}
	if o.maxTip == nil {
		o.maxTip = DefaultMaxPriorityFeePerGas
	}
	if o.maxFee.Sign() < 0 || o.maxTip.Sign() < 0 || o.maxTip.Cmp(o.maxFee) > 0 {
		return nil, invalidf("fees: want 0 <= max priority fee (%s) <= max fee (%s)", o.maxTip, o.maxFee)
	}
	if o.expiry == nil {
		o.expiry = &qc.Expiry{Kind: qc.ExpiryUnixMillis, Value: uint64(time.Now().Add(DefaultExpiry).UnixMilli())}
	}
	if o.expiry.Kind == qc.ExpiryMaxBlockHeight && o.expiry.Value == 0 {
		return nil, invalidf("expiry: max block height must be positive")
	}
	if o.requestID == nil {
		id, err := NewClientRequestID()
		if err != nil {
			return nil, err
		}
		o.requestID = &id
	}
	if len(*o.requestID) > 128 {
		return nil, invalidf("client_request_id is %d bytes, at most 128 allowed", len(*o.requestID))
	}
	if o.parent != nil && o.parent.Hash.IsZero() {
		return nil, invalidf("parent QC has no hash")
	}
	return o, nil
}

// NewClientRequestID returns a fresh random client_request_id (16 random
// bytes, hex).
func NewClientRequestID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("client request id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// paymentCalldata encodes transfer(recipient, amount) or, with a memo,
// transferWithMemo(recipient, amount, memo).
func paymentCalldata(recipient common.Address, amount uint64, memo *[32]byte) []byte {
	n := 4 + 64
	sel := selectorTransfer
	if memo != nil {
		n, sel = 4+96, selectorTransferWithMemo
	}
	data := make([]byte, n)
	copy(data, sel[:])
	copy(data[4+12:4+32], recipient[:])
	new(big.Int).SetUint64(amount).FillBytes(data[4+32 : 4+64])
	if memo != nil {
		copy(data[4+64:], memo[:])
	}
	return data
}

func checkPaymentArgs(key *ecdsa.PrivateKey, token common.Address) error {
	if key == nil {
		return invalidf("no signing key")
	}
	if !tempo.IsTIP20Address(token) {
		return invalidf("token %s is not a TIP-20 address (prefix 0x20c000000000000000000000)", token.Hex())
	}
	return nil
}

// NewEVMPayment signs an EIP-1559 transaction calling token.transfer(recipient,
// amount) (or transferWithMemo with WithMemo) from key's account, with EVM
// nonce nonce, and wraps it as an EVM_OPAQUE_BYTES_V1 FastPay request: nonce
// key zero and nonce_seq = nonce (EVM transactions use the protocol nonce),
// overlay.payment describing the transfer, a fresh client_request_id, and an
// expiry of now + DefaultExpiry unless an expiry option says otherwise.
//
// amount is in token units (TIP-20 tokens have 6 decimals: 1 dollar =
// 1,000,000 units). The request's Tx is the FastPayTx; ParentQcs carries the
// parent QC given WithParent.
func NewEVMPayment(key *ecdsa.PrivateKey, chainID, nonce uint64, token, recipient common.Address, amount uint64, opts ...PaymentOption) (*fastpayv1.SubmitFastPayRequest, error) {
	if err := checkPaymentArgs(key, token); err != nil {
		return nil, err
	}
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	if o.feeToken != nil || o.validBefore != nil {
		return nil, invalidf("fee token and valid_before apply to Tempo transactions only")
	}
	cid := new(big.Int).SetUint64(chainID)
	tx, err := types.SignTx(types.NewTx(&types.DynamicFeeTx{
		ChainID:   cid,
		Nonce:     nonce,
		GasTipCap: new(big.Int).Set(o.maxTip),
		GasFeeCap: new(big.Int).Set(o.maxFee),
		Gas:       o.gasLimit,
		To:        &token,
		Value:     new(big.Int),
		Data:      paymentCalldata(recipient, amount, o.memo),
	}), types.LatestSignerForChainID(cid), key)
	if err != nil {
		return nil, fmt.Errorf("sign EVM payment: %w", err)
	}
	raw, err := tx.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encode EVM payment: %w", err)
	}
	return wrap(raw, fastpayv1.TempoTxFormat_EVM_OPAQUE_BYTES_V1, chainID, qc.NonceKey{}, nonce,
		crypto.PubkeyToAddress(key.PublicKey), token, recipient, amount, o), nil
}

// NewTempoPayment signs a Tempo type-0x76 transaction with the single call
// token.transfer(recipient, amount) (or transferWithMemo with WithMemo) from
// key's account (secp256k1), using the 2D nonce (nonceKey, nonce), and wraps
// it as a TEMPO_NATIVE_V1 FastPay request whose nonce equals the
// transaction's. Nonce key zero is the account's protocol nonce; other keys
// are independent nonce sequences (parallel payment lanes). The expiring-nonce
// key 2^256-1 is refused: validators do not support it.
func NewTempoPayment(key *ecdsa.PrivateKey, chainID uint64, nonceKey qc.NonceKey, nonce uint64, token, recipient common.Address, amount uint64, opts ...PaymentOption) (*fastpayv1.SubmitFastPayRequest, error) {
	if err := checkPaymentArgs(key, token); err != nil {
		return nil, err
	}
	if nonceKey == qc.NonceKey(tempo.ExpiringNonceKey) {
		return nil, invalidf("the expiring-nonce key 2^256-1 is not supported by the validators")
	}
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	tx := &tempo.TempoTx{
		ChainID:              chainID,
		MaxPriorityFeePerGas: new(big.Int).Set(o.maxTip),
		MaxFeePerGas:         new(big.Int).Set(o.maxFee),
		GasLimit:             o.gasLimit,
		Calls:                []tempo.Call{{To: &token, Input: paymentCalldata(recipient, amount, o.memo)}},
		NonceKey:             nonceKey,
		Nonce:                nonce,
		ValidBefore:          o.validBefore,
		FeeToken:             o.feeToken,
	}
	if err := tx.SignSecp256k1(key); err != nil {
		return nil, fmt.Errorf("sign Tempo payment: %w", err)
	}
	raw, err := tx.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encode Tempo payment: %w", err)
	}
	return wrap(raw, fastpayv1.TempoTxFormat_TEMPO_NATIVE_V1, chainID, nonceKey, nonce,
		crypto.PubkeyToAddress(key.PublicKey), token, recipient, amount, o), nil
}

func wrap(raw []byte, format fastpayv1.TempoTxFormat, chainID uint64, nonceKey qc.NonceKey, nonce uint64,
	sender, token, recipient common.Address, amount uint64, o *paymentOptions) *fastpayv1.SubmitFastPayRequest {
	tx := &fastpayv1.FastPayTx{
		ChainId:         &fastpayv1.ChainId{Value: chainID},
		TempoTx:         &fastpayv1.TempoTxBytes{Data: raw},
		Nonce:           &fastpayv1.Nonce2D{NonceKeyBe: append([]byte(nil), nonceKey[:]...), NonceSeq: nonce},
		Expiry:          fastpayv1.NewExpiry(*o.expiry),
		ClientRequestId: *o.requestID,
		TempoTxFormat:   format,
		Overlay: &fastpayv1.OverlayMetadata{Payment: &fastpayv1.PaymentIntent{
			Sender:    fastpayv1.NewAddress(qc.Address(sender)),
			Recipient: fastpayv1.NewAddress(qc.Address(recipient)),
			Amount:    amount,
			Asset:     fastpayv1.NewAssetId(qc.Address(token)),
		}},
	}
	req := &fastpayv1.SubmitFastPayRequest{Tx: tx}
	if o.parent != nil {
		tx.ParentQcHash = append([]byte(nil), o.parent.Hash[:]...)
		req.ParentQcs = []*fastpayv1.QuorumCertificate{fastpayv1.NewQuorumCertificate(o.parent)}
	}
	return req
}

// Expected decodes req's transaction the way validators do and returns the
// tx_hash its certificates must carry and the effects they must attest. The
// client checks every certificate and QC it receives against them. Errors
// wrap ErrInvalidRequest.
func Expected(req *fastpayv1.SubmitFastPayRequest) (qc.Hash, qc.Effects, error) {
	tx := req.GetTx()
	in, err := tx.TxHashInput()
	if err != nil {
		return qc.Hash{}, qc.Effects{}, invalidf("%v", err)
	}
	decoded, err := decodeTx(tx)
	if err != nil {
		return qc.Hash{}, qc.Effects{}, err
	}
	pay, err := decoded.SinglePayment()
	if err != nil {
		return qc.Hash{}, qc.Effects{}, invalidf("tempo_tx: %v", err)
	}
	if qc.NonceKey(decoded.NonceKey) != in.NonceKey || decoded.Nonce != in.NonceSeq {
		return qc.Hash{}, qc.Effects{}, invalidf("the FastPay nonce (%x, %d) differs from the transaction's (%x, %d)",
			in.NonceKey[:], in.NonceSeq, decoded.NonceKey[:], decoded.Nonce)
	}
	return qc.TxHash(in), qc.Effects{
		Sender:    qc.Address(decoded.Sender),
		Recipient: qc.Address(pay.Recipient),
		Amount:    pay.Amount.Uint64(),
		Asset:     qc.Address(pay.Token),
		NonceKey:  in.NonceKey,
		NonceSeq:  in.NonceSeq,
	}, nil
}

// ChainTxHash returns the hash the chain knows req's transaction by (what
// eth_getTransactionReceipt takes), which differs from its FastPay tx_hash.
// A wallet whose payment got no QC looks it up there: any holder of the raw
// transaction may land it on chain directly. Errors wrap ErrInvalidRequest.
func ChainTxHash(req *fastpayv1.SubmitFastPayRequest) (common.Hash, error) {
	decoded, err := decodeTx(req.GetTx())
	if err != nil {
		return common.Hash{}, err
	}
	return decoded.TxHash, nil
}

// decodeTx decodes tx's raw transaction in its declared format.
func decodeTx(tx *fastpayv1.FastPayTx) (*tempo.DecodedTx, error) {
	raw := tx.GetTempoTx().GetData()
	var (
		decoded *tempo.DecodedTx
		err     error
	)
	switch tx.GetTempoTxFormat() {
	case fastpayv1.TempoTxFormat_EVM_OPAQUE_BYTES_V1:
		decoded, err = tempo.DecodeEVMTx(raw)
	case fastpayv1.TempoTxFormat_TEMPO_NATIVE_V1:
		decoded, err = tempo.DecodeTempoTx(raw)
	default:
		return nil, invalidf("tempo_tx_format must be EVM_OPAQUE_BYTES_V1 or TEMPO_NATIVE_V1, got %s", tx.GetTempoTxFormat())
	}
	if err != nil {
		return nil, invalidf("tempo_tx: %v", err)
	}
	return decoded, nil
}
