package apiserver

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
)

// The body of POST /api/v1/submit-raw-tx. Field names follow the protobuf
// FastPayTx (and the reference backend's signed_tx), bytes are hex with or
// without 0x, u64 values are decimal strings or JSON integers:
//
//	{
//	  "tempo_tx": "0x02f8…",              // required (alias: "signed_tx")
//	  "tempo_tx_format": "EVM_OPAQUE_BYTES_V1", // or "TEMPO_NATIVE_V1"; default: from the first byte (0x76 → native)
//	  "chain_id": "1337",                 // default: this node's chain
//	  "nonce_key": "0x0",                 // U256 hex, left-padded to 32 bytes; default 0
//	  "nonce_seq": "7",                   // required
//	  "expiry": {"unix_millis": "1739200000000"}, // or {"max_block_height": "120"}; required
//	  "expiry_unix_millis": "…", "expiry_max_block_height": "…", // flat alternatives to "expiry"
//	  "parent_qc_hash": "0x…",            // 32 bytes, optional
//	  "client_request_id": "…",           // optional
//	  "intent": {"sender": "0x…", "recipient": "0x…", "amount": "5", "asset": "0x20c0…"}, // optional
//	  "parent_qcs": ["0x<protobuf QuorumCertificate>", {<JSON QC as served by /api/v1/tx/{hash}/qc>}]
//	}
var submitFields = []string{
	"tempo_tx", "signed_tx", "tempo_tx_format", "chain_id", "nonce_key", "nonce_seq", "expiry",
	"expiry_unix_millis", "expiry_max_block_height", "parent_qc_hash", "client_request_id",
	"intent", "parent_qcs",
}

// FieldError is a malformed request field.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// maxJSONParentQCs bounds parent_qcs before any decoding work.
const maxJSONParentQCs = 64

// jsonObject is a decoded JSON object whose fields are parsed one by one, so
// every error names its field.
type jsonObject struct {
	prefix string
	fields map[string]json.RawMessage
}

func decodeObject(prefix string, raw []byte, allowed []string) (*jsonObject, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	var m map[string]json.RawMessage
	if err := dec.Decode(&m); err != nil {
		name := prefix
		if name == "" {
			name = "body"
		}
		return nil, fieldErr(name, "not a JSON object: %v", jsonErrText(err))
	}
	if m == nil {
		name := prefix
		if name == "" {
			name = "body"
		}
		return nil, fieldErr(name, "must be a JSON object, got null")
	}
	if prefix == "" {
		if _, err := dec.Token(); err != io.EOF {
			return nil, fieldErr("body", "unexpected data after the JSON object")
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(allowed, k) {
			return nil, fieldErr(join(prefix, k), "unknown field (known: %s)", strings.Join(allowed, ", "))
		}
	}
	return &jsonObject{prefix: prefix, fields: m}, nil
}

func jsonErrText(err error) string {
	if errors.Is(err, io.EOF) {
		return "empty body"
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "truncated JSON"
	}
	return err.Error()
}

func join(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

// raw returns a field's JSON, nil when absent or null.
func (o *jsonObject) raw(k string) json.RawMessage {
	r, ok := o.fields[k]
	if !ok || string(bytes.TrimSpace(r)) == "null" {
		return nil
	}
	return r
}

func (o *jsonObject) has(k string) bool { return o.raw(k) != nil }

func (o *jsonObject) str(k string) (string, bool, error) {
	r := o.raw(k)
	if r == nil {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(r, &s); err != nil {
		return "", false, fieldErr(join(o.prefix, k), "must be a string")
	}
	return s, true, nil
}

func (o *jsonObject) hexBytes(k string) ([]byte, bool, error) {
	s, ok, err := o.str(k)
	if err != nil || !ok {
		return nil, ok, err
	}
	b, err := ParseHex(s)
	if err != nil {
		return nil, false, fieldErr(join(o.prefix, k), "%v", err)
	}
	return b, true, nil
}

func (o *jsonObject) u64(k string) (uint64, bool, error) {
	r := o.raw(k)
	if r == nil {
		return 0, false, nil
	}
	v, err := parseU64JSON(r)
	if err != nil {
		return 0, false, fieldErr(join(o.prefix, k), "%v", err)
	}
	return v, true, nil
}

func (o *jsonObject) address(k string) (*fastpayv1.Address, error) {
	b, ok, err := o.hexBytes(k)
	if err != nil || !ok {
		return nil, err
	}
	if len(b) != 20 {
		return nil, fieldErr(join(o.prefix, k), "must be 20 bytes, got %d", len(b))
	}
	return &fastpayv1.Address{Data: b}, nil
}

// decodeSubmitRawTx turns a submit-raw-tx body into a SubmitFastPayRequest.
// defaultChainID fills an absent chain_id. Errors are *FieldError.
func decodeSubmitRawTx(body []byte, defaultChainID uint64) (*fastpayv1.SubmitFastPayRequest, error) {
	o, err := decodeObject("", body, submitFields)
	if err != nil {
		return nil, err
	}
	tx := &fastpayv1.FastPayTx{}

	// tempo_tx (or the reference's signed_tx).
	raw, haveTx, err := o.hexBytes("tempo_tx")
	if err != nil {
		return nil, err
	}
	if o.has("signed_tx") {
		if haveTx {
			return nil, fieldErr("signed_tx", "give tempo_tx or signed_tx, not both")
		}
		if raw, haveTx, err = o.hexBytes("signed_tx"); err != nil {
			return nil, err
		}
	}
	if !haveTx {
		return nil, fieldErr("tempo_tx", "required: the signed transaction bytes in hex")
	}
	if len(raw) == 0 {
		return nil, fieldErr("tempo_tx", "is empty")
	}
	tx.TempoTx = &fastpayv1.TempoTxBytes{Data: raw}

	// tempo_tx_format: enum name or number; default from the type byte.
	switch r := o.raw("tempo_tx_format"); {
	case r == nil:
		if raw[0] == 0x76 {
			tx.TempoTxFormat = fastpayv1.TempoTxFormat_TEMPO_NATIVE_V1
		} else {
			tx.TempoTxFormat = fastpayv1.TempoTxFormat_EVM_OPAQUE_BYTES_V1
		}
	default:
		f, err := parseTxFormat(r)
		if err != nil {
			return nil, err
		}
		tx.TempoTxFormat = f
	}

	chainID, ok, err := o.u64("chain_id")
	if err != nil {
		return nil, err
	}
	if !ok {
		chainID = defaultChainID
	}
	tx.ChainId = &fastpayv1.ChainId{Value: chainID}

	// nonce_key is a U256: hex of at most 32 bytes, left-padded.
	key := make([]byte, 32)
	if s, ok, err := o.str("nonce_key"); err != nil {
		return nil, err
	} else if ok {
		digits := strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
		if len(digits)%2 == 1 {
			digits = "0" + digits
		}
		b, err := hex.DecodeString(digits)
		if err != nil {
			return nil, fieldErr("nonce_key", "not hex: %q", truncate(s, 80))
		}
		if len(b) > 32 {
			return nil, fieldErr("nonce_key", "must be at most 32 bytes, got %d", len(b))
		}
		copy(key[32-len(b):], b)
	}
	seq, ok, err := o.u64("nonce_seq")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fieldErr("nonce_seq", "required: the transaction's nonce")
	}
	tx.Nonce = &fastpayv1.Nonce2D{NonceKeyBe: key, NonceSeq: seq}

	if tx.Expiry, err = decodeExpiry(o); err != nil {
		return nil, err
	}

	if b, ok, err := o.hexBytes("parent_qc_hash"); err != nil {
		return nil, err
	} else if ok && len(b) != 0 {
		if len(b) != 32 {
			return nil, fieldErr("parent_qc_hash", "must be 32 bytes, got %d", len(b))
		}
		tx.ParentQcHash = b
	}
	if tx.ClientRequestId, _, err = o.str("client_request_id"); err != nil {
		return nil, err
	}

	if r := o.raw("intent"); r != nil {
		in, err := decodeIntent(r)
		if err != nil {
			return nil, err
		}
		tx.Intent = in
		tx.Overlay = &fastpayv1.OverlayMetadata{Payment: in}
	}

	req := &fastpayv1.SubmitFastPayRequest{Tx: tx}
	if r := o.raw("parent_qcs"); r != nil {
		if req.ParentQcs, err = decodeParentQCs(r); err != nil {
			return nil, err
		}
	}
	return req, nil
}

func parseTxFormat(r json.RawMessage) (fastpayv1.TempoTxFormat, error) {
	var s string
	if err := json.Unmarshal(r, &s); err != nil {
		v, err := parseU64JSON(r)
		if err != nil || v > 2 {
			return 0, fieldErr("tempo_tx_format", "must be \"EVM_OPAQUE_BYTES_V1\" or \"TEMPO_NATIVE_V1\"")
		}
		s = fastpayv1.TempoTxFormat(v).String()
	}
	switch strings.ToUpper(strings.TrimPrefix(strings.TrimPrefix(s, "TEMPO_TX_FORMAT_"), "tempo_tx_format_")) {
	case "EVM_OPAQUE_BYTES_V1":
		return fastpayv1.TempoTxFormat_EVM_OPAQUE_BYTES_V1, nil
	case "TEMPO_NATIVE_V1":
		return fastpayv1.TempoTxFormat_TEMPO_NATIVE_V1, nil
	}
	return 0, fieldErr("tempo_tx_format", "must be \"EVM_OPAQUE_BYTES_V1\" or \"TEMPO_NATIVE_V1\", got %q", truncate(s, 40))
}

func decodeExpiry(o *jsonObject) (*fastpayv1.Expiry, error) {
	var out []*fastpayv1.Expiry
	add := func(obj *jsonObject, k string, mk func(uint64) *fastpayv1.Expiry) error {
		v, ok, err := obj.u64(k)
		if ok {
			out = append(out, mk(v))
		}
		return err
	}
	height := func(v uint64) *fastpayv1.Expiry {
		return &fastpayv1.Expiry{Kind: &fastpayv1.Expiry_MaxBlockHeight{MaxBlockHeight: v}}
	}
	millis := func(v uint64) *fastpayv1.Expiry {
		return &fastpayv1.Expiry{Kind: &fastpayv1.Expiry_UnixMillis{UnixMillis: v}}
	}
	if r := o.raw("expiry"); r != nil {
		e, err := decodeObject("expiry", r, []string{"max_block_height", "unix_millis"})
		if err != nil {
			return nil, err
		}
		if err := add(e, "max_block_height", height); err != nil {
			return nil, err
		}
		if err := add(e, "unix_millis", millis); err != nil {
			return nil, err
		}
	}
	if err := add(o, "expiry_max_block_height", height); err != nil {
		return nil, err
	}
	if err := add(o, "expiry_unix_millis", millis); err != nil {
		return nil, err
	}
	switch len(out) {
	case 0:
		return nil, fieldErr("expiry", `required: {"unix_millis": "…"} or {"max_block_height": "…"}`)
	case 1:
		return out[0], nil
	}
	return nil, fieldErr("expiry", "give exactly one of max_block_height and unix_millis")
}

func decodeIntent(r json.RawMessage) (*fastpayv1.PaymentIntent, error) {
	o, err := decodeObject("intent", r, []string{"sender", "recipient", "amount", "asset"})
	if err != nil {
		return nil, err
	}
	in := &fastpayv1.PaymentIntent{}
	if in.Sender, err = o.address("sender"); err != nil {
		return nil, err
	}
	if in.Recipient, err = o.address("recipient"); err != nil {
		return nil, err
	}
	b, ok, err := o.hexBytes("asset")
	if err != nil {
		return nil, err
	}
	if ok {
		if len(b) != 20 {
			return nil, fieldErr("intent.asset", "must be 20 bytes, got %d", len(b))
		}
		in.Asset = &fastpayv1.AssetId{Data: b}
	}
	amount, ok, err := o.u64("amount")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fieldErr("intent.amount", "required when intent is given")
	}
	in.Amount = amount
	return in, nil
}

// decodeParentQCs accepts an array whose items are hex protobuf
// QuorumCertificate bytes or JSON QCs (JSONQC).
func decodeParentQCs(r json.RawMessage) ([]*fastpayv1.QuorumCertificate, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(r, &items); err != nil {
		return nil, fieldErr("parent_qcs", "must be an array of hex protobuf QCs or JSON QCs")
	}
	if len(items) > maxJSONParentQCs {
		return nil, fieldErr("parent_qcs", "%d QCs, at most %d allowed", len(items), maxJSONParentQCs)
	}
	out := make([]*fastpayv1.QuorumCertificate, 0, len(items))
	for i, it := range items {
		field := fmt.Sprintf("parent_qcs[%d]", i)
		it = bytes.TrimSpace(it)
		switch {
		case len(it) > 0 && it[0] == '"':
			var s string
			if err := json.Unmarshal(it, &s); err != nil {
				return nil, fieldErr(field, "must be a string")
			}
			b, err := ParseHex(s)
			if err != nil {
				return nil, fieldErr(field, "%v", err)
			}
			pq, err := ParseQCProto(b)
			if err != nil {
				return nil, fieldErr(field, "%v", err)
			}
			out = append(out, pq)
		case len(it) > 0 && it[0] == '{':
			var j JSONQC
			dec := json.NewDecoder(bytes.NewReader(it))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&j); err != nil {
				return nil, fieldErr(field, "not a JSON QC: %v", err)
			}
			pq, err := j.ToProto(field)
			if err != nil {
				return nil, &FieldError{Reason: err.Error()}
			}
			out = append(out, pq)
		default:
			return nil, fieldErr(field, "must be a hex protobuf QC string or a JSON QC object")
		}
	}
	return out, nil
}
