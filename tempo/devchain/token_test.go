package devchain

import (
	"bytes"
	"errors"
	"math/big"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/state"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/core/vm"
	"github.com/ethereum/go-ethereum/core/vm/runtime"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/params"
	"github.com/holiman/uint256"

	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// evm runs the token in go-ethereum's EVM on a scratch state.
type evm struct {
	t     *testing.T
	state *state.StateDB
	calls int
}

func newEVM(t *testing.T, balances map[common.Address]uint64) *evm {
	t.Helper()
	sdb, err := state.New(types.EmptyRootHash, state.NewDatabaseForTesting())
	if err != nil {
		t.Fatal(err)
	}
	sdb.SetCode(devkit.TokenAddress, TokenRuntimeCode(), 0)
	for holder, bal := range balances {
		sdb.SetState(devkit.TokenAddress, BalanceSlot(holder), common.BigToHash(new(big.Int).SetUint64(bal)))
	}
	return &evm{t: t, state: sdb}
}

// call runs input from caller and returns the output, the error and the logs
// the call emitted.
func (e *evm) call(caller common.Address, input []byte, value *big.Int) ([]byte, error, []*types.Log) {
	e.calls++
	txHash := common.BigToHash(big.NewInt(int64(e.calls)))
	e.state.SetTxContext(txHash, e.calls, 0)
	out, _, err := runtime.Call(devkit.TokenAddress, input, &runtime.Config{
		ChainConfig: params.AllDevChainProtocolChanges,
		Origin:      caller,
		GasLimit:    1_000_000,
		Value:       value,
		State:       e.state,
		BlockNumber: big.NewInt(1),
		Time:        1,
	})
	return out, err, e.state.GetLogs(txHash, 1, common.Hash{}, 1)
}

func (e *evm) balance(holder common.Address) *big.Int {
	e.t.Helper()
	out, err, _ := e.call(common.Address{0xee}, devkit.BalanceOfCalldata(holder), nil)
	if err != nil {
		e.t.Fatalf("balanceOf(%s): %v", holder, err)
	}
	if len(out) != 32 {
		e.t.Fatalf("balanceOf returned %d bytes", len(out))
	}
	// The storage word must agree with the documented layout.
	slot := e.state.GetState(devkit.TokenAddress, BalanceSlot(holder))
	if !bytes.Equal(slot[:], out) {
		e.t.Fatalf("balanceOf %x differs from storage slot %x", out, slot)
	}
	return new(big.Int).SetBytes(out)
}

func word(v uint64) []byte { return common.BigToHash(new(big.Int).SetUint64(v)).Bytes() }

var (
	alice = common.HexToAddress("0xa11ce00000000000000000000000000000000001")
	bob   = common.HexToAddress("0xb0b0000000000000000000000000000000000002")
	carol = common.HexToAddress("0xca401000000000000000000000000000000000003")
)

func TestTokenBalanceOfAndDecimals(t *testing.T) {
	e := newEVM(t, map[common.Address]uint64{alice: 15 * devkit.Dollar, bob: 5 * devkit.Dollar})
	if got := e.balance(alice); got.Uint64() != 15*devkit.Dollar {
		t.Fatalf("alice = %v", got)
	}
	if got := e.balance(bob); got.Uint64() != 5*devkit.Dollar {
		t.Fatalf("bob = %v", got)
	}
	if got := e.balance(carol); got.Sign() != 0 {
		t.Fatalf("carol = %v", got)
	}
	out, err, _ := e.call(alice, devkit.SelectorDecimals[:], nil)
	if err != nil || !bytes.Equal(out, word(6)) {
		t.Fatalf("decimals() = %x, %v", out, err)
	}
	e.state.SetState(devkit.TokenAddress, TotalSupplySlot(), common.BigToHash(big.NewInt(20*devkit.Dollar)))
	out, err, _ = e.call(alice, devkit.SelectorTotalSupply[:], nil)
	if err != nil || !bytes.Equal(out, word(20*devkit.Dollar)) {
		t.Fatalf("totalSupply() = %x, %v", out, err)
	}
}

func checkTransferLog(t *testing.T, l *types.Log, from, to common.Address, amount uint64) {
	t.Helper()
	if l.Address != devkit.TokenAddress || len(l.Topics) != 3 || l.Topics[0] != devkit.TransferEventTopic ||
		l.Topics[1] != common.BytesToHash(from.Bytes()) || l.Topics[2] != common.BytesToHash(to.Bytes()) ||
		!bytes.Equal(l.Data, word(amount)) {
		t.Fatalf("bad Transfer log: %+v", l)
	}
}

func TestTokenTransfer(t *testing.T) {
	e := newEVM(t, map[common.Address]uint64{alice: 15 * devkit.Dollar, bob: 5 * devkit.Dollar})
	out, err, logs := e.call(alice, devkit.TransferCalldata(carol, big.NewInt(2*devkit.Dollar)), nil)
	if err != nil {
		t.Fatalf("transfer: %v", err)
	}
	if !bytes.Equal(out, word(1)) {
		t.Fatalf("transfer returned %x, want true", out)
	}
	if len(logs) != 1 {
		t.Fatalf("got %d logs, want 1", len(logs))
	}
	checkTransferLog(t, logs[0], alice, carol, 2*devkit.Dollar)
	if a, c := e.balance(alice).Uint64(), e.balance(carol).Uint64(); a != 13*devkit.Dollar || c != 2*devkit.Dollar {
		t.Fatalf("after transfer alice=%d carol=%d", a, c)
	}
	// Whole balance, then a zero transfer, then a self-transfer.
	if _, err, _ := e.call(bob, devkit.TransferCalldata(alice, big.NewInt(5*devkit.Dollar)), nil); err != nil {
		t.Fatalf("transfer all: %v", err)
	}
	if _, err, logs := e.call(bob, devkit.TransferCalldata(alice, big.NewInt(0)), nil); err != nil || len(logs) != 1 {
		t.Fatalf("zero transfer: %v, %d logs", err, len(logs))
	}
	if _, err, _ := e.call(alice, devkit.TransferCalldata(alice, big.NewInt(7*devkit.Dollar)), nil); err != nil {
		t.Fatalf("self transfer: %v", err)
	}
	if a, b := e.balance(alice).Uint64(), e.balance(bob).Uint64(); a != 18*devkit.Dollar || b != 0 {
		t.Fatalf("alice=%d bob=%d, want 18e6 and 0", a, b)
	}
}

func TestTokenInsufficientBalanceReverts(t *testing.T) {
	e := newEVM(t, map[common.Address]uint64{alice: 15 * devkit.Dollar})
	out, err, logs := e.call(alice, devkit.TransferCalldata(bob, big.NewInt(15*devkit.Dollar+1)), nil)
	if !errors.Is(err, vm.ErrExecutionReverted) {
		t.Fatalf("err = %v, want revert", err)
	}
	if len(logs) != 0 {
		t.Fatalf("reverted call left %d logs", len(logs))
	}
	want := append(append(append(append([]byte{}, devkit.InsufficientBalanceSelector[:]...), word(15*devkit.Dollar)...), word(15*devkit.Dollar+1)...), common.BytesToHash(devkit.TokenAddress.Bytes()).Bytes()...)
	if !bytes.Equal(out, want) {
		t.Fatalf("revert data %x, want %x", out, want)
	}
	// Nobody's balance moved; a holder with nothing cannot send 1 unit.
	if _, err, _ := e.call(carol, devkit.TransferCalldata(bob, big.NewInt(1)), nil); !errors.Is(err, vm.ErrExecutionReverted) {
		t.Fatalf("empty holder: err = %v", err)
	}
	if a, b := e.balance(alice).Uint64(), e.balance(bob).Uint64(); a != 15*devkit.Dollar || b != 0 {
		t.Fatalf("alice=%d bob=%d after reverts", a, b)
	}
	// An amount near 2^256 cannot underflow into a huge credit.
	huge := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))
	if _, err, _ := e.call(alice, devkit.TransferCalldata(bob, huge), nil); !errors.Is(err, vm.ErrExecutionReverted) {
		t.Fatalf("huge amount: err = %v", err)
	}
}

func TestTokenBadCalldataReverts(t *testing.T) {
	e := newEVM(t, map[common.Address]uint64{alice: 15 * devkit.Dollar})
	good := devkit.TransferCalldata(bob, big.NewInt(1))
	dirtyAddr := append([]byte(nil), good...)
	dirtyAddr[4] = 1 // non-zero upper byte of the address word
	cases := map[string][]byte{
		"empty":                 nil,
		"short selector":        good[:3],
		"unknown selector":      append([]byte{0xde, 0xad, 0xbe, 0xef}, good[4:]...),
		"transfer short":        good[:67],
		"transfer long":         append(append([]byte(nil), good...), 0),
		"transfer dirty addr":   dirtyAddr,
		"memo short":            devkit.TransferWithMemoCalldata(bob, big.NewInt(1), [32]byte{1})[:99],
		"memo long":             append(devkit.TransferWithMemoCalldata(bob, big.NewInt(1), [32]byte{1}), 0),
		"balanceOf short":       devkit.BalanceOfCalldata(bob)[:35],
		"balanceOf long":        append(devkit.BalanceOfCalldata(bob), 0),
		"decimals with payload": append(devkit.SelectorDecimals[:], 0),
	}
	for name, input := range cases {
		out, err, logs := e.call(alice, input, nil)
		if !errors.Is(err, vm.ErrExecutionReverted) {
			t.Errorf("%s: err = %v, want revert", name, err)
		}
		if len(out) != 0 || len(logs) != 0 {
			t.Errorf("%s: out %x, %d logs", name, out, len(logs))
		}
	}
	// Sending ETH to the token reverts.
	e.state.AddBalance(alice, uint256FromUint64(1e18), 0)
	if _, err, _ := e.call(alice, good, big.NewInt(1)); !errors.Is(err, vm.ErrExecutionReverted) {
		t.Errorf("call with value: err = %v, want revert", err)
	}
	if got := e.balance(alice).Uint64(); got != 15*devkit.Dollar {
		t.Fatalf("alice = %d after bad calls", got)
	}
}

func TestTokenTransferWithMemo(t *testing.T) {
	e := newEVM(t, map[common.Address]uint64{alice: 15 * devkit.Dollar})
	memo := [32]byte{0xfe, 1, 2, 3}
	memo[31] = 0x42
	out, err, logs := e.call(alice, devkit.TransferWithMemoCalldata(bob, big.NewInt(3*devkit.Dollar), memo), nil)
	if err != nil || !bytes.Equal(out, word(1)) {
		t.Fatalf("transferWithMemo = %x, %v", out, err)
	}
	if len(logs) != 2 {
		t.Fatalf("got %d logs, want Transfer and TransferWithMemo", len(logs))
	}
	checkTransferLog(t, logs[0], alice, bob, 3*devkit.Dollar)
	l := logs[1]
	if len(l.Topics) != 4 || l.Topics[0] != devkit.TransferWithMemoEventTopic ||
		l.Topics[1] != common.BytesToHash(alice.Bytes()) || l.Topics[2] != common.BytesToHash(bob.Bytes()) ||
		l.Topics[3] != common.Hash(memo) || !bytes.Equal(l.Data, word(3*devkit.Dollar)) {
		t.Fatalf("bad TransferWithMemo log: %+v", l)
	}
	if a, b := e.balance(alice).Uint64(), e.balance(bob).Uint64(); a != 12*devkit.Dollar || b != 3*devkit.Dollar {
		t.Fatalf("alice=%d bob=%d", a, b)
	}
	if _, err, logs := e.call(bob, devkit.TransferWithMemoCalldata(alice, big.NewInt(3*devkit.Dollar+1), memo), nil); !errors.Is(err, vm.ErrExecutionReverted) || len(logs) != 0 {
		t.Fatalf("memo overdraft: err = %v, %d logs", err, len(logs))
	}
}

func TestBalanceSlotLayout(t *testing.T) {
	// keccak256(leftpad32(holder) ‖ uint256(0)), Solidity mapping at slot 0.
	var buf [64]byte
	copy(buf[12:], alice.Bytes())
	want := common.BytesToHash(keccak(buf[:]))
	if BalanceSlot(alice) != want {
		t.Fatalf("slot %s, want %s", BalanceSlot(alice), want)
	}
	if TotalSupplySlot() != common.BigToHash(big.NewInt(1)) {
		t.Fatal("total supply slot")
	}
}

func TestDemoAccountsDeterministic(t *testing.T) {
	d := devkit.DemoAccounts()
	if len(d) != 3 || d[0].Name != "alice" || d[1].Name != "bob" || d[2].Name != "carol" {
		t.Fatalf("demo accounts %+v", d)
	}
	for _, a := range d {
		if devkit.DeterministicKey("allegro-demo-"+a.Name).D.Cmp(a.Key.D) != 0 {
			t.Fatalf("%s key not keccak256(allegro-demo-%s)", a.Name, a.Name)
		}
	}
	for i, want := range []string{"0xc55A68109eCCBC8daA8e7e8Fc703A7DD44FB17A9", "0xBa009677d5DC2699804BB5c11c6C284C406c64c0", "0x05E4142955fDFFFae409f596305B94A06Fef0572"} {
		if d[i].Address != common.HexToAddress(want) {
			t.Fatalf("%s address %s, documented %s", d[i].Name, d[i].Address, want)
		}
	}
	l := devkit.LoadAccounts(3)
	if len(l) != 3 || l[2].Name != "load-2" || l[2].Address == l[1].Address || l[2].Tokens != devkit.LoadTokens {
		t.Fatalf("load accounts %+v", l)
	}
	if len(devkit.LoadAccounts(-1)) != 0 {
		t.Fatal("negative count")
	}
}

func uint256FromUint64(v uint64) *uint256.Int { return uint256.NewInt(v) }

func keccak(b []byte) []byte { return crypto.Keccak256(b) }
