package devchain

import (
	"encoding/binary"
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/vm"
	"github.com/ethereum/go-ethereum/core/vm/program"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// Token storage layout.
//
//   - slot 0: the balances mapping. holder's balance lives at
//     keccak256(leftpad32(holder) ‖ uint256(0)), exactly like a Solidity
//     `mapping(address => uint256)` declared first. See BalanceSlot.
//   - slot 1: totalSupply (set at genesis; transfers do not change it).
const (
	balancesMappingSlot = 0
	totalSupplySlot     = 1
)

// BalanceSlot returns the storage slot holding holder's token balance.
func BalanceSlot(holder common.Address) common.Hash {
	var buf [64]byte
	copy(buf[12:32], holder.Bytes())
	buf[63] = balancesMappingSlot
	return crypto.Keccak256Hash(buf[:])
}

// TotalSupplySlot returns the storage slot holding the total supply.
func TotalSupplySlot() common.Hash { return common.BigToHash(big.NewInt(totalSupplySlot)) }

// TokenRuntimeCode returns the runtime bytecode of the token contract,
// assembled by this package. Behaviour:
//
//   - any call with value, calldata shorter than 4 bytes, an unknown
//     selector, a calldata length other than the exact ABI length, or an
//     address argument with non-zero upper 12 bytes reverts with no data;
//   - balanceOf(address) returns the holder's balance (uint256);
//   - transfer(address,uint256) moves value from the caller, emits Transfer
//     and returns true; if the caller's balance is short it reverts with
//     InsufficientBalance(available, required, token);
//   - transferWithMemo(address,uint256,bytes32) does the same and also emits
//     TransferWithMemo(from, to, value, memo);
//   - decimals() returns 6, totalSupply() returns slot 1.
func TokenRuntimeCode() []byte {
	code, err := assembleToken()
	if err != nil {
		panic(err) // a bug in this file, caught by the package tests
	}
	return code
}

// asm wraps go-ethereum's program builder with named forward labels: jumps
// push a 2-byte placeholder that is patched once the label is placed.
type asm struct {
	p      *program.Program
	labels map[string]uint64
	fixups []fixup
}

type fixup struct {
	pos   int // offset of the 2 placeholder bytes
	label string
}

func newAsm() *asm { return &asm{p: program.New(), labels: make(map[string]uint64)} }

func (a *asm) op(ops ...vm.OpCode) *asm { a.p.Op(ops...); return a }
func (a *asm) push(v any) *asm          { a.p.Push(v); return a }

func (a *asm) pushLabel(label string) {
	a.p.Op(vm.PUSH2)
	a.fixups = append(a.fixups, fixup{pos: a.p.Size(), label: label})
	a.p.Append([]byte{0, 0})
}

// jump jumps to label unconditionally.
func (a *asm) jump(label string) *asm { a.pushLabel(label); a.p.Op(vm.JUMP); return a }

// jumpi jumps to label when the stack top (consumed) is non-zero.
func (a *asm) jumpi(label string) *asm { a.pushLabel(label); a.p.Op(vm.JUMPI); return a }

// mark places label (a JUMPDEST) here.
func (a *asm) mark(label string) *asm {
	_, pc := a.p.Jumpdest()
	a.labels[label] = pc
	return a
}

func (a *asm) assemble() ([]byte, error) {
	code := append([]byte(nil), a.p.Bytes()...)
	for _, f := range a.fixups {
		pc, ok := a.labels[f.label]
		if !ok {
			return nil, fmt.Errorf("devchain: token assembly: undefined label %q", f.label)
		}
		if pc > 0xffff {
			return nil, fmt.Errorf("devchain: token assembly: label %q out of PUSH2 range", f.label)
		}
		binary.BigEndian.PutUint16(code[f.pos:], uint16(pc))
	}
	return code, nil
}

// Stack comments below list the stack bottom → top.

// slotOf replaces the address on top of the stack by its balance slot
// (keccak256(addr ‖ 0)); uses memory [0, 64).
func (a *asm) slotOf() *asm {
	return a.push(0).op(vm.MSTORE). // mem[0:32] = addr
					push(balancesMappingSlot).push(32).op(vm.MSTORE). // mem[32:64] = 0
					push(64).push(0).op(vm.KECCAK256)
}

// requireCalldataSize reverts unless CALLDATASIZE == n.
func (a *asm) requireCalldataSize(n int) *asm {
	return a.push(n).op(vm.CALLDATASIZE, vm.EQ, vm.ISZERO).jumpi("revert")
}

// loadAddressArg pushes the ABI address argument at calldata offset off,
// reverting if its upper 12 bytes are not zero.
func (a *asm) loadAddressArg(off int) *asm {
	return a.push(off).op(vm.CALLDATALOAD). // [addr]
						op(vm.DUP1).push(160).op(vm.SHR).jumpi("revert")
}

// returnWord returns the 32-byte word on top of the stack.
func (a *asm) returnWord() *asm {
	return a.push(0).op(vm.MSTORE).push(32).push(0).op(vm.RETURN)
}

// transferBody moves value from CALLER to `to` and emits Transfer.
// Stack in: [to amount]; stack out: [to amount].
func (a *asm) transferBody() *asm {
	// Debit the caller.
	a.op(vm.CALLER).slotOf()        // [to amount fromSlot]
	a.op(vm.DUP1, vm.SLOAD)         // [to amount fromSlot fromBal]
	a.op(vm.DUP1, vm.DUP4, vm.GT)   // [to amount fromSlot fromBal amount>fromBal]
	a.jumpi("insufficient")         // [to amount fromSlot fromBal]
	a.op(vm.DUP3, vm.SWAP1, vm.SUB) // [to amount fromSlot fromBal-amount]
	a.op(vm.SWAP1, vm.SSTORE)       // [to amount]
	// Credit the recipient (read after the debit, so self-transfers are exact).
	a.op(vm.DUP2).slotOf()        // [to amount toSlot]
	a.op(vm.DUP1, vm.SLOAD)       // [to amount toSlot toBal]
	a.op(vm.DUP3, vm.ADD)         // [to amount toSlot toBal+amount]
	a.op(vm.DUP1, vm.DUP4, vm.GT) // [to amount toSlot new amount>new] (overflow)
	a.jumpi("revert")             // [to amount toSlot new]
	a.op(vm.SWAP1, vm.SSTORE)     // [to amount]
	// emit Transfer(from, to, amount)
	a.op(vm.DUP1).push(0).op(vm.MSTORE) // mem[0:32] = amount
	a.op(vm.DUP2, vm.CALLER)            // [to amount to from]
	a.push(devkit.TransferEventTopic)   // [.. to from topic0]
	a.push(32).push(0).op(vm.LOG3)      // [to amount]
	return a
}

func assembleToken() ([]byte, error) {
	a := newAsm()
	// Non-payable, and at least a selector.
	a.op(vm.CALLVALUE).jumpi("revert")
	a.push(4).op(vm.CALLDATASIZE, vm.LT).jumpi("revert")
	a.push(0).op(vm.CALLDATALOAD).push(224).op(vm.SHR) // [selector]
	dispatch := []struct {
		sel   [4]byte
		label string
	}{
		{devkit.SelectorTransfer, "transfer"},
		{devkit.SelectorTransferWithMemo, "transferWithMemo"},
		{devkit.SelectorBalanceOf, "balanceOf"},
		{devkit.SelectorDecimals, "decimals"},
		{devkit.SelectorTotalSupply, "totalSupply"},
	}
	for _, d := range dispatch {
		a.op(vm.DUP1).push(d.sel[:]).op(vm.EQ).jumpi(d.label)
	}
	a.jump("revert")

	// balanceOf(address) → uint256
	a.mark("balanceOf").op(vm.POP).requireCalldataSize(4 + 32)
	a.loadAddressArg(4).slotOf().op(vm.SLOAD).returnWord()

	// decimals() → uint8
	a.mark("decimals").op(vm.POP).requireCalldataSize(4)
	a.push(devkit.TokenDecimals).returnWord()

	// totalSupply() → uint256
	a.mark("totalSupply").op(vm.POP).requireCalldataSize(4)
	a.push(totalSupplySlot).op(vm.SLOAD).returnWord()

	// transfer(address,uint256) → bool
	a.mark("transfer").op(vm.POP).requireCalldataSize(4 + 2*32)
	a.loadAddressArg(4).push(36).op(vm.CALLDATALOAD) // [to amount]
	a.transferBody()
	a.jump("returnTrue")

	// transferWithMemo(address,uint256,bytes32) → bool
	a.mark("transferWithMemo").op(vm.POP).requireCalldataSize(4 + 3*32)
	a.loadAddressArg(4).push(36).op(vm.CALLDATALOAD) // [to amount]
	a.transferBody()
	// emit TransferWithMemo(from, to, amount, memo); mem[0:32] still holds amount.
	a.push(68).op(vm.CALLDATALOAD)            // [to amount memo]
	a.op(vm.DUP3, vm.CALLER)                  // [to amount memo to from]
	a.push(devkit.TransferWithMemoEventTopic) // [.. memo to from topic0]
	a.push(32).push(0).op(vm.LOG4)            // [to amount]
	a.jump("returnTrue")

	a.mark("returnTrue").push(1).returnWord()

	// Stack: [to amount fromSlot fromBal] → revert InsufficientBalance(fromBal, amount, this).
	a.mark("insufficient")
	a.push(new(big.Int).Lsh(new(big.Int).SetBytes(devkit.InsufficientBalanceSelector[:]), 224)).push(0).op(vm.MSTORE)
	a.push(4).op(vm.MSTORE)                 // available
	a.op(vm.POP).push(36).op(vm.MSTORE)     // required
	a.op(vm.ADDRESS).push(68).op(vm.MSTORE) // token
	a.push(100).push(0).op(vm.REVERT)

	a.mark("revert").push(0).push(0).op(vm.REVERT)
	return a.assemble()
}
