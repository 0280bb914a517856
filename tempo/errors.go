package tempo

import (
	"errors"
	"fmt"
)

// Sentinel errors of the transaction decoders. Every error returned by
// DecodeTempoTx, DecodeEVMTx, ParseTIP20Call and SinglePayment wraps exactly
// one of them, so callers map failures to reject codes with errors.Is and pass
// the full message on to the wallet that sent the transaction.
var (
	// ErrMalformed: the bytes are not a valid, canonically encoded, correctly
	// signed transaction (INVALID_FORMAT).
	ErrMalformed = errors.New("malformed transaction")
	// ErrNotPayment: the transaction is well formed but is not exactly one
	// TIP-20 transfer (NOT_PAYMENT_TX).
	ErrNotPayment = errors.New("not a TIP-20 payment")
	// ErrAmountTooLarge: a TIP-20 payment whose amount exceeds 2^64-1 units
	// (INVALID_FORMAT with the message "amount does not fit u64").
	ErrAmountTooLarge = errors.New("amount does not fit u64")
	// ErrUnsupported: a well-formed transaction using a feature this decoder
	// deliberately does not accept (keychain signatures, authorization lists,
	// blob transactions, ...).
	ErrUnsupported = errors.New("unsupported transaction feature")
)

// malformedf returns an error wrapping ErrMalformed with a precise message.
func malformedf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// unsupportedf returns an error wrapping ErrUnsupported.
func unsupportedf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(format, args...))
}

// notPaymentf returns an error wrapping ErrNotPayment.
func notPaymentf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotPayment, fmt.Sprintf(format, args...))
}
