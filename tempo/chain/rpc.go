package chain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"

	"github.com/allegro-mesh/allegro/tempo"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/rpc"
)

var (
	// ErrChainIDMismatch is returned by Start when the node serves another
	// chain than Config.ExpectedChainID. It does not wrap
	// tempo.ErrChainUnavailable: retrying cannot fix it.
	ErrChainIDMismatch = errors.New("chain id mismatch")
	// ErrGenesisMismatch is returned by Start when the node's block 0 is
	// not Config.ExpectedGenesis. Like ErrChainIDMismatch it does not wrap
	// tempo.ErrChainUnavailable.
	ErrGenesisMismatch = errors.New("genesis mismatch")
	// ErrCallReverted is returned (wrapped) when an eth_call reverted: the
	// node answered, the contract refused (e.g. the token does not exist).
	ErrCallReverted = errors.New("call reverted")
	// ErrTxRejected is returned (wrapped) by SendRawTransaction when the node
	// answered with a JSON-RPC error (nonce too low, underpriced, invalid...).
	ErrTxRejected = errors.New("transaction rejected by the node")
	// ErrNotStarted is returned by calls on a Client that is not running.
	ErrNotStarted = errors.New("chain client not running")
)

// rpcFailure classifies a failed request. kind is a metrics outcome.
type rpcFailure struct {
	method string
	kind   string
	err    error
}

func (f *rpcFailure) Error() string {
	switch f.kind {
	case outcomeReverted:
		return fmt.Sprintf("%s: %v: %v", f.method, ErrCallReverted, f.err)
	case outcomeRPCError:
		return fmt.Sprintf("%v: %s: node answered with an error: %v", tempo.ErrChainUnavailable, f.method, f.err)
	case outcomeMalformed:
		return fmt.Sprintf("%v: %s: malformed answer: %v", tempo.ErrChainUnavailable, f.method, f.err)
	case outcomeTimeout:
		return fmt.Sprintf("%v: %s: no answer in time: %v", tempo.ErrChainUnavailable, f.method, f.err)
	default:
		return fmt.Sprintf("%v: %s: node unreachable: %v", tempo.ErrChainUnavailable, f.method, f.err)
	}
}

func (f *rpcFailure) Unwrap() []error {
	switch f.kind {
	case outcomeReverted:
		return []error{ErrCallReverted, f.err}
	case outcomeRPCError:
		// A JSON-RPC error from a node serving reads (unknown block, internal
		// error, overload) is transient for our purposes.
		return []error{tempo.ErrChainUnavailable, f.err}
	default:
		return []error{tempo.ErrChainUnavailable, f.err}
	}
}

// rpcErrorOf returns the JSON-RPC error object in err, if the node sent one.
func rpcErrorOf(err error) (rpc.Error, bool) {
	var re rpc.Error
	if errors.As(err, &re) {
		return re, true
	}
	return nil, false
}

func classify(method string, err error) *rpcFailure {
	f := &rpcFailure{method: method, err: err}
	var httpErr rpc.HTTPError
	var netErr net.Error
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		f.kind = outcomeTimeout
	case errors.As(err, &netErr) && netErr.Timeout():
		f.kind = outcomeTimeout
	case errors.As(err, &httpErr):
		f.kind = outcomeUnreachable
	case errors.Is(err, rpc.ErrNoResult), errors.As(err, &syntaxErr), errors.As(err, &typeErr),
		errors.Is(err, errMalformed):
		f.kind = outcomeMalformed
	default:
		if re, ok := rpcErrorOf(err); ok {
			if re.ErrorCode() == 3 || strings.Contains(strings.ToLower(re.Error()), "execution reverted") {
				f.kind = outcomeReverted
			} else {
				f.kind = outcomeRPCError
			}
		} else {
			f.kind = outcomeUnreachable
		}
	}
	return f
}

var (
	errMalformed    = errors.New("malformed")
	errNotConnected = errors.New("not connected (stopped, or reconnecting)")
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errMalformed, fmt.Sprintf(format, args...))
}

// call performs one JSON-RPC request bounded by RequestTimeout and decodes
// the result into out with decode (raw JSON → out). Every outcome is counted.
func (c *Client) call(ctx context.Context, method string, decode func(json.RawMessage) error, args ...any) error {
	return c.callWith(ctx, c.rpcClient(), method, decode, args...)
}

// callWith is call over a given connection.
func (c *Client) callWith(ctx context.Context, rc *rpc.Client, method string, decode func(json.RawMessage) error, args ...any) error {
	if rc == nil {
		return &rpcFailure{method: method, kind: outcomeUnreachable, err: errNotConnected}
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	start := time.Now()
	var raw json.RawMessage
	err := rc.CallContext(ctx, &raw, method, args...)
	c.metrics.duration.WithLabelValues(method).Observe(time.Since(start).Seconds())
	if err == nil && decode != nil {
		if derr := decode(raw); derr != nil {
			err = malformed("%v (answer %.120q)", derr, string(raw))
		}
	}
	if err != nil {
		f := classify(method, err)
		c.metrics.requests.WithLabelValues(method, f.kind).Inc()
		return f
	}
	c.metrics.requests.WithLabelValues(method, outcomeOK).Inc()
	return nil
}

// Decoders. Each insists on the exact JSON type: null or a number where a
// hex string belongs is malformed.

func decodeQuantity(dst *uint64) func(json.RawMessage) error {
	return func(raw json.RawMessage) error {
		var s *string
		if err := json.Unmarshal(raw, &s); err != nil || s == nil {
			return errors.New("want a hex quantity string")
		}
		v, err := hexutil.DecodeUint64(*s)
		if err != nil {
			return err
		}
		*dst = v
		return nil
	}
}

func decodeBigQuantity(dst **big.Int) func(json.RawMessage) error {
	return func(raw json.RawMessage) error {
		var s *string
		if err := json.Unmarshal(raw, &s); err != nil || s == nil {
			return errors.New("want a hex quantity string")
		}
		v, err := hexutil.DecodeBig(*s)
		if err != nil {
			return err
		}
		*dst = v
		return nil
	}
}

// decodeOptionalWord accepts one 32-byte ABI word, or no data at all (a
// call to an address without code), which leaves dst zero.
func decodeOptionalWord(dst *[32]byte) func(json.RawMessage) error {
	word := decodeWord(dst)
	return func(raw json.RawMessage) error {
		var s *string
		if err := json.Unmarshal(raw, &s); err == nil && s != nil && (*s == "0x" || *s == "") {
			*dst = [32]byte{}
			return nil
		}
		return word(raw)
	}
}

// decodeData accepts a hex data string of any length.
func decodeData(dst *[]byte) func(json.RawMessage) error {
	return func(raw json.RawMessage) error {
		var s *string
		if err := json.Unmarshal(raw, &s); err != nil || s == nil {
			return errors.New("want a hex data string")
		}
		b, err := hexutil.Decode(*s)
		if err != nil {
			return err
		}
		*dst = b
		return nil
	}
}

// decodeWord accepts exactly one 32-byte ABI word.
func decodeWord(dst *[32]byte) func(json.RawMessage) error {
	return func(raw json.RawMessage) error {
		var b []byte
		if err := decodeData(&b)(raw); err != nil {
			return err
		}
		if len(b) != 32 {
			return fmt.Errorf("want 32 bytes, got %d", len(b))
		}
		copy(dst[:], b)
		return nil
	}
}

func decodeHash(dst *common.Hash) func(json.RawMessage) error {
	return func(raw json.RawMessage) error {
		var w [32]byte
		if err := decodeWord(&w)(raw); err != nil {
			return err
		}
		*dst = w
		return nil
	}
}

// rpcHeader is the part of a block or newHeads header the client needs.
// Extra fields (Tempo's mainBlockGeneralGasLimit, sharedGasLimit, ...) are
// ignored.
type rpcHeader struct {
	Number              *hexutil.Uint64 `json:"number"`
	Hash                *common.Hash    `json:"hash"`
	Timestamp           *hexutil.Uint64 `json:"timestamp"`
	TimestampMillis     *hexutil.Uint64 `json:"timestampMillis"`
	TimestampMillisPart *hexutil.Uint64 `json:"timestampMillisPart"`
}

// parseHeader decodes a header and checks its required fields.
func parseHeader(raw json.RawMessage) (tempo.Head, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return tempo.Head{}, errors.New("no header (null)")
	}
	var h rpcHeader
	if err := json.Unmarshal(raw, &h); err != nil {
		return tempo.Head{}, err
	}
	if h.Number == nil || h.Hash == nil || h.Timestamp == nil {
		return tempo.Head{}, errors.New("header lacks number, hash or timestamp")
	}
	secs := uint64(*h.Timestamp)
	if secs > 1<<40 {
		return tempo.Head{}, fmt.Errorf("implausible timestamp %d", secs)
	}
	millis := secs * 1000
	// Tempo headers carry sub-second precision; use it when it agrees with
	// the seconds timestamp.
	switch {
	case h.TimestampMillis != nil && uint64(*h.TimestampMillis)/1000 == secs:
		millis = uint64(*h.TimestampMillis)
	case h.TimestampMillisPart != nil && uint64(*h.TimestampMillisPart) < 1000:
		millis += uint64(*h.TimestampMillisPart)
	}
	return tempo.Head{Number: uint64(*h.Number), Hash: *h.Hash, UnixMillis: millis}, nil
}

func decodeHeader(dst *tempo.Head) func(json.RawMessage) error {
	return func(raw json.RawMessage) error {
		h, err := parseHeader(raw)
		if err != nil {
			return err
		}
		*dst = h
		return nil
	}
}

// Receipt is a transaction receipt reduced to what settlement needs. It
// decodes Ethereum and Tempo receipts alike.
type Receipt struct {
	TxHash      common.Hash
	Status      uint64 // 1 success, 0 reverted
	BlockNumber uint64
	BlockHash   common.Hash
	GasUsed     uint64
	Logs        []Log
	// FeeToken and FeePayer are Tempo extensions; nil when absent.
	FeeToken *common.Address
	FeePayer *common.Address
}

// Succeeded reports whether the transaction executed successfully.
func (r *Receipt) Succeeded() bool { return r.Status == 1 }

// Log is an event log of a receipt.
type Log struct {
	Address common.Address
	Topics  []common.Hash
	Data    []byte
	Index   uint64
}

type rpcReceipt struct {
	TransactionHash *common.Hash    `json:"transactionHash"`
	Status          *hexutil.Uint64 `json:"status"`
	BlockNumber     *hexutil.Uint64 `json:"blockNumber"`
	BlockHash       *common.Hash    `json:"blockHash"`
	GasUsed         *hexutil.Uint64 `json:"gasUsed"`
	Logs            []struct {
		Address  *common.Address `json:"address"`
		Topics   []common.Hash   `json:"topics"`
		Data     *hexutil.Bytes  `json:"data"`
		LogIndex *hexutil.Uint64 `json:"logIndex"`
	} `json:"logs"`
	FeeToken *common.Address `json:"feeToken"`
	FeePayer *common.Address `json:"feePayer"`
}

// parseReceipt decodes a receipt; a JSON null means "not known yet".
func parseReceipt(raw json.RawMessage) (*Receipt, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var r rpcReceipt
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, err
	}
	if r.TransactionHash == nil || r.Status == nil || r.BlockNumber == nil || r.GasUsed == nil || r.BlockHash == nil {
		return nil, errors.New("receipt lacks transactionHash, status, blockNumber, blockHash or gasUsed")
	}
	if *r.Status > 1 {
		return nil, fmt.Errorf("receipt status %d is neither 0 nor 1", *r.Status)
	}
	out := &Receipt{
		TxHash:      *r.TransactionHash,
		Status:      uint64(*r.Status),
		BlockNumber: uint64(*r.BlockNumber),
		BlockHash:   *r.BlockHash,
		GasUsed:     uint64(*r.GasUsed),
		FeeToken:    r.FeeToken,
		FeePayer:    r.FeePayer,
		Logs:        make([]Log, 0, len(r.Logs)),
	}
	for i, l := range r.Logs {
		if l.Address == nil || l.Data == nil {
			return nil, fmt.Errorf("log %d lacks address or data", i)
		}
		lg := Log{Address: *l.Address, Topics: l.Topics, Data: *l.Data}
		if l.LogIndex != nil {
			lg.Index = uint64(*l.LogIndex)
		}
		out.Logs = append(out.Logs, lg)
	}
	return out, nil
}
