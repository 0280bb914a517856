package devchain

import (
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/vm"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/allegro-mesh/allegro/tempo"
)

// The development chain's ValidatorConfig: a contract at
// tempo.ValidatorConfigAddress serving the part of Tempo's ValidatorConfig
// interface the mesh uses (getValidators, validatorCount, owner) and the
// owner's addValidator and changeValidatorStatus, with the same selectors,
// argument and return encodings and error selectors.
//
// Storage layout:
//
//   - slot 0: owner; slot 1: validator count.
//   - validator i's record at base = keccak256(uint256(i) ‖ uint256(2)):
//     base holds the byte length L of the record, base+1… the ABI encoding
//     of its Validator tuple (L/32 words), exactly as getValidators returns
//     it: words publicKey, active, index, validatorAddress, offset of
//     inboundAddress (192), offset of outboundAddress, then both strings.
//   - keccak256(leftpad32(validatorAddress) ‖ uint256(3)) holds i+1 for the
//     validator at address validatorAddress (0: none).
const (
	vcOwnerSlot   = 0
	vcCountSlot   = 1
	vcRecordTag   = 2
	vcIndexTag    = 3
	vcMaxStringSz = 256 // longest inbound/outbound address accepted
)

// Memory layout of the contract: [0, 64) hashing scratch, variables from
// 0x40, the tuple or the getValidators answer from vcOut.
const (
	vcVarI    = 0x40
	vcVarP    = 0x60
	vcVarW    = 0x80
	vcVarBase = 0xa0
	vcVarA    = 0xc0
	vcVarL    = 0xe0
	vcOut     = 0x100
)

// ValidatorConfigRuntimeCode returns the runtime bytecode of the
// development chain's ValidatorConfig.
func ValidatorConfigRuntimeCode() []byte {
	code, err := assembleValidatorConfig()
	if err != nil {
		panic(err) // a bug in this file, caught by the package tests
	}
	return code
}

// ValidatorConfigStorage returns the genesis storage of a ValidatorConfig
// owned by owner and holding vs, in order (their Index fields are ignored:
// the i-th gets index i). It is what the contract itself writes when the
// owner adds them one by one.
func ValidatorConfigStorage(owner common.Address, vs []tempo.Validator) (map[common.Hash]common.Hash, error) {
	st := map[common.Hash]common.Hash{
		common.BigToHash(big.NewInt(vcOwnerSlot)): common.BytesToHash(owner.Bytes()),
		common.BigToHash(big.NewInt(vcCountSlot)): common.BigToHash(big.NewInt(int64(len(vs)))),
	}
	for i, v := range vs {
		v.Index = uint64(i)
		rec, err := encodeValidatorRecord(v)
		if err != nil {
			return nil, err
		}
		base := validatorRecordSlot(uint64(i)).Big()
		st[common.BigToHash(base)] = common.BigToHash(big.NewInt(int64(len(rec))))
		for w := 0; w < len(rec)/32; w++ {
			slot := new(big.Int).Add(base, big.NewInt(int64(1+w)))
			st[common.BigToHash(slot)] = common.BytesToHash(rec[32*w : 32*w+32])
		}
		st[validatorIndexSlot(v.ValidatorAddress)] = common.BigToHash(big.NewInt(int64(i + 1)))
	}
	return st, nil
}

// encodeValidatorRecord is the ABI encoding of one Validator tuple: the
// element of getValidators' array without its offset word.
func encodeValidatorRecord(v tempo.Validator) ([]byte, error) {
	// Packing a one-element array gives offset ‖ length ‖ element offset ‖
	// element; the element starts at byte 96.
	args := tempo.ValidatorConfigABI.Methods["getValidators"].Outputs
	enc, err := args.Pack([]tempo.Validator{v})
	if err != nil {
		return nil, err
	}
	return enc[96:], nil
}

func validatorRecordSlot(i uint64) common.Hash {
	var buf [64]byte
	new(big.Int).SetUint64(i).FillBytes(buf[:32])
	buf[63] = vcRecordTag
	return crypto.Keccak256Hash(buf[:])
}

func validatorIndexSlot(a common.Address) common.Hash {
	var buf [64]byte
	copy(buf[12:32], a.Bytes())
	buf[63] = vcIndexTag
	return crypto.Keccak256Hash(buf[:])
}

func selector(name string) []byte { return tempo.ValidatorConfigABI.Methods[name].ID }

func errorSelector(name string) *big.Int {
	id := tempo.ValidatorConfigABI.Errors[name].ID
	return new(big.Int).Lsh(new(big.Int).SetBytes(id[:4]), 224)
}

// mload pushes the word at memory offset off.
func (a *asm) mload(off int) *asm { return a.push(off).op(vm.MLOAD) }

// mstoreTo stores the stack top at memory offset off.
func (a *asm) mstoreTo(off int) *asm { return a.push(off).op(vm.MSTORE) }

// hashWithTag replaces the stack top x by keccak256(x ‖ uint256(tag)); uses
// memory [0, 64).
func (a *asm) hashWithTag(tag int) *asm {
	return a.push(0).op(vm.MSTORE).push(tag).push(32).op(vm.MSTORE).push(64).push(0).op(vm.KECCAK256)
}

// requireOwner reverts with Unauthorized() unless the caller is the owner.
func (a *asm) requireOwner() *asm {
	return a.op(vm.CALLER).push(vcOwnerSlot).op(vm.SLOAD, vm.EQ, vm.ISZERO).jumpi("unauthorized")
}

// requireBoolArg reverts unless the calldata word at off is 0 or 1.
func (a *asm) requireBoolArg(off int) *asm {
	return a.push(off).op(vm.CALLDATALOAD).push(1).op(vm.LT).jumpi("revert") // 1 < arg
}

// copyStringArg copies the ABI string whose offset word is at calldata
// offset headOff into memory at vcOut+rel, where rel is the stack top, and
// replaces rel by the offset just past it (rel + 32 + padded length).
// Reverts on an offset or length out of bounds.
func (a *asm) copyStringArg(headOff int) *asm {
	// src = 4 + offset; the offset must be small enough not to wrap.
	a.push(headOff).op(vm.CALLDATALOAD) // [rel off]
	a.op(vm.DUP1).push(32).op(vm.SHR).jumpi("revert")
	a.push(4).op(vm.ADD)                                        // [rel src]
	a.op(vm.DUP1).op(vm.CALLDATALOAD)                           // [rel src len]
	a.op(vm.DUP1).push(vcMaxStringSz).op(vm.LT).jumpi("revert") // max < len
	// padded = (len + 31) / 32 * 32
	a.push(31).op(vm.ADD).push(5).op(vm.SHR).push(5).op(vm.SHL) // [rel src padded]
	// The string must lie inside the calldata: src + 32 + len ≤ size,
	// checked on the padded length, which ABI encoders always send.
	a.op(vm.DUP1, vm.DUP3).op(vm.ADD).push(32).op(vm.ADD)  // [rel src padded end]
	a.op(vm.CALLDATASIZE, vm.LT).jumpi("revert")           // size < end
	a.push(32).op(vm.ADD)                                  // [rel src n]
	a.op(vm.DUP1, vm.DUP3, vm.DUP5).push(vcOut).op(vm.ADD) // [rel src n n src dest]
	a.op(vm.CALLDATACOPY)                                  // [rel src n]
	a.op(vm.SWAP1, vm.POP, vm.ADD)                         // [rel+n]
	return a
}

func assembleValidatorConfig() ([]byte, error) {
	a := newAsm()
	a.op(vm.CALLVALUE).jumpi("revert")
	a.push(4).op(vm.CALLDATASIZE, vm.LT).jumpi("revert")
	a.push(0).op(vm.CALLDATALOAD).push(224).op(vm.SHR) // [selector]
	for _, d := range []struct{ method, label string }{
		{"getValidators", "getValidators"},
		{"validatorCount", "validatorCount"},
		{"owner", "owner"},
		{"addValidator", "addValidator"},
		{"changeValidatorStatus", "changeValidatorStatus"},
	} {
		a.op(vm.DUP1).push(selector(d.method)).op(vm.EQ).jumpi(d.label)
	}
	a.jump("revert")

	a.mark("owner").op(vm.POP).requireCalldataSize(4)
	a.push(vcOwnerSlot).op(vm.SLOAD).returnWord()

	a.mark("validatorCount").op(vm.POP).requireCalldataSize(4)
	a.push(vcCountSlot).op(vm.SLOAD).returnWord()

	// getValidators(): out = 0x20 ‖ n ‖ n offsets ‖ n records, built at
	// vcOut; P is the write position of the next record.
	a.mark("getValidators").op(vm.POP).requireCalldataSize(4)
	a.push(0x20).mstoreTo(vcOut)
	a.push(vcCountSlot).op(vm.SLOAD).mstoreTo(vcOut + 32)
	a.mload(vcOut + 32).push(5).op(vm.SHL).push(vcOut + 64).op(vm.ADD).mstoreTo(vcVarP)
	a.push(0).mstoreTo(vcVarI)
	a.mark("gvNext")
	a.push(vcCountSlot).op(vm.SLOAD).mload(vcVarI).op(vm.EQ).jumpi("gvDone")
	// offsets[i] = P − (vcOut + 64)
	a.push(vcOut + 64).mload(vcVarP).op(vm.SUB)
	a.mload(vcVarI).push(5).op(vm.SHL).push(vcOut + 64).op(vm.ADD).op(vm.MSTORE)
	a.mload(vcVarI).hashWithTag(vcRecordTag).mstoreTo(vcVarBase)
	a.push(0).mstoreTo(vcVarW)
	a.mark("gvWord") // copy the record's words while 32·w < L
	a.mload(vcVarBase).op(vm.SLOAD).mload(vcVarW).push(5).op(vm.SHL).op(vm.LT, vm.ISZERO).jumpi("gvWordsDone")
	a.mload(vcVarW).mload(vcVarBase).op(vm.ADD).push(1).op(vm.ADD).op(vm.SLOAD)
	a.mload(vcVarW).push(5).op(vm.SHL).mload(vcVarP).op(vm.ADD).op(vm.MSTORE)
	a.mload(vcVarW).push(1).op(vm.ADD).mstoreTo(vcVarW)
	a.jump("gvWord")
	a.mark("gvWordsDone")
	a.mload(vcVarBase).op(vm.SLOAD).mload(vcVarP).op(vm.ADD).mstoreTo(vcVarP)
	a.mload(vcVarI).push(1).op(vm.ADD).mstoreTo(vcVarI)
	a.jump("gvNext")
	a.mark("gvDone")
	a.push(vcOut).mload(vcVarP).op(vm.SUB).push(vcOut).op(vm.RETURN)

	// addValidator(address,bytes32,bool,string,string), owner only.
	a.mark("addValidator").op(vm.POP).requireOwner()
	a.push(4+5*32).op(vm.CALLDATASIZE, vm.LT).jumpi("revert")
	a.loadAddressArg(4).mstoreTo(vcVarA)
	a.push(36).op(vm.CALLDATALOAD, vm.ISZERO).jumpi("invalidPublicKey")
	a.requireBoolArg(68)
	a.mload(vcVarA).hashWithTag(vcIndexTag)        // [idxSlot]
	a.op(vm.DUP1, vm.SLOAD).jumpi("alreadyExists") // [idxSlot]
	a.push(vcCountSlot).op(vm.SLOAD)               // [idxSlot i]
	a.op(vm.DUP1).mstoreTo(vcVarI)
	a.op(vm.DUP1).push(1).op(vm.ADD)              // [idxSlot i i+1]
	a.op(vm.DUP1).push(vcCountSlot).op(vm.SSTORE) // count = i+1
	a.op(vm.DUP3, vm.SSTORE, vm.POP, vm.POP)      // indexOf[a] = i+1
	// The record, at vcOut.
	a.push(36).op(vm.CALLDATALOAD).mstoreTo(vcOut)
	a.push(68).op(vm.CALLDATALOAD).mstoreTo(vcOut + 32)
	a.mload(vcVarI).mstoreTo(vcOut + 64)
	a.mload(vcVarA).mstoreTo(vcOut + 96)
	a.push(192).op(vm.DUP1).mstoreTo(vcOut + 128) // [192]
	a.copyStringArg(100)                          // [rel]
	a.op(vm.DUP1).mstoreTo(vcOut + 160)
	a.copyStringArg(132) // [L]
	a.mstoreTo(vcVarL)
	a.mload(vcVarI).hashWithTag(vcRecordTag).mstoreTo(vcVarBase)
	a.mload(vcVarL).mload(vcVarBase).op(vm.SSTORE)
	a.push(0).mstoreTo(vcVarW)
	a.mark("avWord")
	a.mload(vcVarL).mload(vcVarW).push(5).op(vm.SHL).op(vm.LT, vm.ISZERO).jumpi("stop")
	a.mload(vcVarW).push(5).op(vm.SHL).push(vcOut).op(vm.ADD).op(vm.MLOAD)
	a.mload(vcVarW).mload(vcVarBase).op(vm.ADD).push(1).op(vm.ADD).op(vm.SSTORE)
	a.mload(vcVarW).push(1).op(vm.ADD).mstoreTo(vcVarW)
	a.jump("avWord")

	// changeValidatorStatus(address,bool), owner only: rewrites the
	// record's active word (base + 2).
	a.mark("changeValidatorStatus").op(vm.POP).requireOwner().requireCalldataSize(4 + 2*32)
	a.requireBoolArg(36)
	a.loadAddressArg(4).hashWithTag(vcIndexTag).op(vm.SLOAD) // [i+1]
	a.op(vm.DUP1, vm.ISZERO).jumpi("notFound")
	a.push(1).op(vm.SWAP1, vm.SUB).hashWithTag(vcRecordTag) // [base]
	a.push(36).op(vm.CALLDATALOAD, vm.SWAP1).push(2).op(vm.ADD, vm.SSTORE)
	a.jump("stop")

	a.mark("stop").op(vm.STOP)
	for _, e := range []struct{ label, name string }{
		{"unauthorized", "Unauthorized"},
		{"alreadyExists", "ValidatorAlreadyExists"},
		{"notFound", "ValidatorNotFound"},
		{"invalidPublicKey", "InvalidPublicKey"},
	} {
		a.mark(e.label).push(errorSelector(e.name)).push(0).op(vm.MSTORE).push(4).push(0).op(vm.REVERT)
	}
	a.mark("revert").push(0).push(0).op(vm.REVERT)
	return a.assemble()
}
