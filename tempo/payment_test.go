package tempo

import (
	"bytes"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
)

var (
	pathUSD   = common.HexToAddress("0x20c0000000000000000000000000000000000000")
	alphaUSD  = common.HexToAddress("0x20c0000000000000000000000000000000000001")
	recipient = common.HexToAddress("0x1d96f2f6bef1202e4ce1ff6dad0c2cb002861d3e")
)

// word returns x as a 32-byte ABI word.
func word(x *big.Int) []byte { return common.LeftPadBytes(x.Bytes(), 32) }

// transferData builds transfer(to, amount) calldata.
func transferData(to common.Address, amount *big.Int) []byte {
	return append(append(bytes.Clone(selectorTransfer[:]), common.LeftPadBytes(to[:], 32)...), word(amount)...)
}

// transferWithMemoData builds transferWithMemo(to, amount, memo) calldata.
func transferWithMemoData(to common.Address, amount *big.Int, memo [32]byte) []byte {
	d := append(bytes.Clone(selectorTransferWithMemo[:]), common.LeftPadBytes(to[:], 32)...)
	return append(append(d, word(amount)...), memo[:]...)
}

func addrPtr(a common.Address) *common.Address { return &a }

func TestParseTIP20Call(t *testing.T) {
	amt := big.NewInt(1_000_000)
	memo := [32]byte{'I', 'N', 'V'}
	good := transferData(recipient, amt)
	badPad := bytes.Clone(good)
	badPad[4] = 0x01 // a nonzero byte in the address word's high 12 bytes
	two64 := new(big.Int).Lsh(big.NewInt(1), 64)
	max256 := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))

	tests := []struct {
		name    string
		call    Call
		wantErr string // substring; empty means success
		method  string
		amount  *big.Int
		memo    *[32]byte
	}{
		{name: "transfer", call: Call{To: &pathUSD, Input: good}, method: MethodTransfer, amount: amt},
		{name: "transfer value nil", call: Call{To: &pathUSD, Value: nil, Input: good}, method: MethodTransfer, amount: amt},
		{name: "transferWithMemo", call: Call{To: &alphaUSD, Value: new(big.Int), Input: transferWithMemoData(recipient, amt, memo)}, method: MethodTransferWithMemo, amount: amt, memo: &memo},
		{name: "amount zero", call: Call{To: &pathUSD, Input: transferData(recipient, new(big.Int))}, method: MethodTransfer, amount: new(big.Int)},
		{name: "amount 2^64 parses (range is SinglePayment's job)", call: Call{To: &pathUSD, Input: transferData(recipient, two64)}, method: MethodTransfer, amount: two64},
		{name: "amount 2^256-1", call: Call{To: &pathUSD, Input: transferWithMemoData(recipient, max256, memo)}, method: MethodTransferWithMemo, amount: max256, memo: &memo},
		{name: "wrong selector (approve)", call: Call{To: &pathUSD, Input: append(hexutil.MustDecode("0x095ea7b3"), good[4:]...)}, wantErr: "selector 0x095ea7b3 is neither"},
		{name: "transfer short calldata", call: Call{To: &pathUSD, Input: good[:67]}, wantErr: "transfer calldata must be exactly 68 bytes, got 67"},
		{name: "transfer long calldata", call: Call{To: &pathUSD, Input: append(bytes.Clone(good), 0)}, wantErr: "transfer calldata must be exactly 68 bytes, got 69"},
		{name: "transfer with memo-length calldata", call: Call{To: &pathUSD, Input: append(bytes.Clone(good), memo[:]...)}, wantErr: "exactly 68 bytes, got 100"},
		{name: "transferWithMemo short", call: Call{To: &pathUSD, Input: transferWithMemoData(recipient, amt, memo)[:99]}, wantErr: "transferWithMemo calldata must be exactly 100 bytes, got 99"},
		{name: "selector only", call: Call{To: &pathUSD, Input: selectorTransfer[:]}, wantErr: "exactly 68 bytes, got 4"},
		{name: "calldata shorter than selector", call: Call{To: &pathUSD, Input: []byte{0xa9, 0x05}}, wantErr: "too short for a 4-byte selector"},
		{name: "empty calldata", call: Call{To: &pathUSD}, wantErr: "calldata is 0 bytes"},
		{name: "non-canonical address padding", call: Call{To: &pathUSD, Input: badPad}, wantErr: "non-canonical ABI address"},
		{name: "non-TIP-20 address", call: Call{To: addrPtr(common.HexToAddress("0x21c0000000000000000000000000000000000000")), Input: good}, wantErr: "is not a TIP-20 token"},
		{name: "TIP-20 prefix one byte short", call: Call{To: addrPtr(common.HexToAddress("0x20c0000000000000000000010000000000000000")), Input: good}, wantErr: "is not a TIP-20 token"},
		{name: "value nonzero", call: Call{To: &pathUSD, Value: big.NewInt(1), Input: good}, wantErr: "call value must be 0, got 1"},
		{name: "contract creation", call: Call{To: nil, Input: good}, wantErr: "creates a contract"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseTIP20Call(tc.call)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrNotPayment) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want ErrNotPayment containing %q", err, tc.wantErr)
				}
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Method != tc.method || p.Amount.Cmp(tc.amount) != 0 || p.Recipient != recipient || p.Token != *tc.call.To {
				t.Fatalf("got %+v", p)
			}
			if (p.Memo == nil) != (tc.memo == nil) || (p.Memo != nil && *p.Memo != *tc.memo) {
				t.Fatalf("memo: got %v, want %v", p.Memo, tc.memo)
			}
		})
	}
}

func TestSinglePayment(t *testing.T) {
	pay := Call{To: &pathUSD, Input: transferData(recipient, big.NewInt(5))}
	maxU64 := new(big.Int).SetUint64(^uint64(0))
	two64 := new(big.Int).Add(maxU64, big.NewInt(1))
	tests := []struct {
		name    string
		calls   []Call
		wantErr error
		msg     string
	}{
		{name: "one payment", calls: []Call{pay}},
		{name: "amount 2^64-1", calls: []Call{{To: &pathUSD, Input: transferData(recipient, maxU64)}}},
		{name: "amount 2^64", calls: []Call{{To: &pathUSD, Input: transferData(recipient, two64)}}, wantErr: ErrAmountTooLarge, msg: "amount does not fit u64: transfer amount 18446744073709551616 exceeds 2^64-1"},
		{name: "two calls", calls: []Call{pay, pay}, wantErr: ErrNotPayment, msg: "the transaction has 2 calls; a payment is exactly one call"},
		{name: "no calls", calls: nil, wantErr: ErrNotPayment, msg: "has 0 calls"},
		{name: "not a payment", calls: []Call{{To: &pathUSD, Value: big.NewInt(1), Input: pay.Input}}, wantErr: ErrNotPayment, msg: "call value must be 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := &DecodedTx{Calls: tc.calls}
			p, err := d.SinglePayment()
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if p.Amount.Cmp(new(big.Int).SetBytes(tc.calls[0].Input[36:])) != 0 {
					t.Fatalf("amount %s", p.Amount)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %v containing %q", err, tc.wantErr, tc.msg)
			}
			if errors.Is(err, ErrMalformed) {
				t.Fatalf("%v must not wrap ErrMalformed", err)
			}
			if p.Amount != nil {
				t.Fatalf("payment not zero on error: %+v", p)
			}
		})
	}
}
