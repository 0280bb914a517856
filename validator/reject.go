package validator

import (
	"errors"
	"fmt"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
)

// Reject is a validation failure with the wire reject code of SPEC §4.
type Reject struct {
	Code    fastpayv1.RejectCode
	Message string
	// Cause is the underlying error, when there is one.
	Cause error
}

func (r *Reject) Error() string { return r.Code.String() + ": " + r.Message }

// Unwrap returns the cause.
func (r *Reject) Unwrap() error { return r.Cause }

// Proto returns the wire form.
func (r *Reject) Proto() *fastpayv1.RejectReason {
	return &fastpayv1.RejectReason{Code: r.Code, Message: r.Message}
}

// Provable reports whether the rejection follows from the message alone, so
// a gossip peer relaying it misbehaved (Reject), as opposed to depending on
// this validator's state or timing (Ignore).
func (r *Reject) Provable() bool {
	switch r.Code {
	case fastpayv1.RejectCode_INVALID_FORMAT, fastpayv1.RejectCode_NOT_PAYMENT_TX,
		fastpayv1.RejectCode_WRONG_CHAIN, fastpayv1.RejectCode_INVALID_PARENT_QC:
		return true
	}
	return false
}

func reject(code fastpayv1.RejectCode, cause error, format string, args ...any) *Reject {
	msg := fmt.Sprintf(format, args...)
	if cause != nil {
		msg += ": " + cause.Error()
	}
	return &Reject{Code: code, Message: msg, Cause: cause}
}

// RejectCodeOf returns the reject code carried by err, TEMPORARY_UNAVAILABLE
// for other non-nil errors, and UNSPECIFIED for nil.
func RejectCodeOf(err error) fastpayv1.RejectCode {
	if err == nil {
		return fastpayv1.RejectCode_REJECT_CODE_UNSPECIFIED
	}
	var r *Reject
	if errors.As(err, &r) {
		return r.Code
	}
	return fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE
}
