package tempo

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum/common"
)

// tip20Prefix is the 12-byte prefix every TIP-20 token address starts with.
var tip20Prefix = [12]byte{0x20, 0xc0}

// ABI selectors of the two TIP-20 payment methods.
var (
	selectorTransfer         = [4]byte{0xa9, 0x05, 0x9c, 0xbb} // transfer(address,uint256)
	selectorTransferWithMemo = [4]byte{0x95, 0x77, 0x7d, 0x59} // transferWithMemo(address,uint256,bytes32)
)

// Payment methods, the values of Payment.Method.
const (
	MethodTransfer         = "transfer"
	MethodTransferWithMemo = "transferWithMemo"
)

// Payment is a TIP-20 transfer extracted from a call.
type Payment struct {
	Token     common.Address // the TIP-20 token (the call's target)
	Recipient common.Address
	Amount    *big.Int  // token units; may exceed u64 from ParseTIP20Call, never from SinglePayment
	Memo      *[32]byte // transferWithMemo only
	Method    string    // MethodTransfer or MethodTransferWithMemo
}

// IsTIP20Address reports whether addr has the TIP-20 token prefix.
func IsTIP20Address(addr common.Address) bool {
	return bytes.HasPrefix(addr[:], tip20Prefix[:])
}

// ParseTIP20Call interprets one call as a TIP-20 payment: value 0, a target
// with the TIP-20 prefix, and calldata that is exactly transfer(address,
// uint256) or transferWithMemo(address,uint256,bytes32) with canonical ABI
// padding. The amount is not range-checked here. Errors wrap ErrNotPayment.
func ParseTIP20Call(c Call) (Payment, error) {
	if c.To == nil {
		return Payment{}, notPaymentf("the call creates a contract (empty to)")
	}
	if !IsTIP20Address(*c.To) {
		return Payment{}, notPaymentf("call target %s is not a TIP-20 token (address must start with 0x%s)", c.To, hex.EncodeToString(tip20Prefix[:]))
	}
	if c.Value != nil && c.Value.Sign() != 0 {
		return Payment{}, notPaymentf("call value must be 0, got %s", c.Value)
	}
	in := c.Input
	if len(in) < 4 {
		return Payment{}, notPaymentf("calldata is %d bytes, too short for a 4-byte selector", len(in))
	}
	var p Payment
	var want int
	switch sel := [4]byte(in[:4]); sel {
	case selectorTransfer:
		p.Method, want = MethodTransfer, 4+2*32
	case selectorTransferWithMemo:
		p.Method, want = MethodTransferWithMemo, 4+3*32
	default:
		return Payment{}, notPaymentf("selector 0x%s is neither transfer(address,uint256) 0xa9059cbb nor transferWithMemo(address,uint256,bytes32) 0x95777d59", hex.EncodeToString(sel[:]))
	}
	if len(in) != want {
		return Payment{}, notPaymentf("%s calldata must be exactly %d bytes, got %d", p.Method, want, len(in))
	}
	// An address word with nonzero high bytes is not canonical ABI; Solidity
	// would revert on it, and accepting it would let two byte strings mean the
	// same payment.
	addrWord := in[4:36]
	if !allZero(addrWord[:12]) {
		return Payment{}, notPaymentf("%s recipient: non-canonical ABI address (high 12 bytes of the word must be zero, got 0x%s)", p.Method, hex.EncodeToString(addrWord[:12]))
	}
	p.Token = *c.To
	p.Recipient = common.BytesToAddress(addrWord[12:])
	p.Amount = new(big.Int).SetBytes(in[36:68])
	if p.Method == MethodTransferWithMemo {
		var m [32]byte
		copy(m[:], in[68:100])
		p.Memo = &m
	}
	return p, nil
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// SinglePayment returns the transaction's payment as SPEC §3 defines it:
// exactly one call, which ParseTIP20Call accepts, with an amount that fits in
// u64. Errors wrap ErrNotPayment, or ErrAmountTooLarge for an amount above
// 2^64-1. On error the Payment is the zero value.
func (tx *DecodedTx) SinglePayment() (Payment, error) {
	if n := len(tx.Calls); n != 1 {
		return Payment{}, notPaymentf("the transaction has %d calls; a payment is exactly one call", n)
	}
	p, err := ParseTIP20Call(tx.Calls[0])
	if err != nil {
		return Payment{}, err
	}
	if !p.Amount.IsUint64() {
		return Payment{}, fmt.Errorf("%w: transfer amount %s exceeds 2^64-1", ErrAmountTooLarge, p.Amount)
	}
	return p, nil
}
