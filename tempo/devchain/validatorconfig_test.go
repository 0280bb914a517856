package devchain

import (
	"bytes"
	"errors"
	"math/big"
	"reflect"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/state"
	"github.com/ethereum/go-ethereum/core/tracing"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/core/vm"
	"github.com/ethereum/go-ethereum/core/vm/runtime"
	"github.com/ethereum/go-ethereum/params"
	"github.com/holiman/uint256"

	"github.com/allegro-mesh/allegro/tempo"
)

var vcOwner = common.HexToAddress("0x0000000000000000000000000000000000000abc")

// vcEVM runs the ValidatorConfig contract on a scratch state.
type vcEVM struct {
	t     *testing.T
	state *state.StateDB
}

func newVCEVM(t *testing.T, genesis []tempo.Validator) *vcEVM {
	t.Helper()
	sdb, err := state.New(types.EmptyRootHash, state.NewDatabaseForTesting())
	if err != nil {
		t.Fatal(err)
	}
	sdb.SetCode(tempo.ValidatorConfigAddress, ValidatorConfigRuntimeCode(), 0)
	sdb.AddBalance(vcOwner, uint256.NewInt(1e18), tracing.BalanceChangeUnspecified) // for calls with value
	st, err := ValidatorConfigStorage(vcOwner, genesis)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range st {
		sdb.SetState(tempo.ValidatorConfigAddress, k, v)
	}
	return &vcEVM{t: t, state: sdb}
}

func (e *vcEVM) call(caller common.Address, input []byte, value *big.Int) ([]byte, error) {
	out, _, err := runtime.Call(tempo.ValidatorConfigAddress, input, &runtime.Config{
		ChainConfig: params.AllDevChainProtocolChanges,
		Origin:      caller,
		GasLimit:    5_000_000,
		Value:       value,
		State:       e.state,
		BlockNumber: big.NewInt(1),
		Time:        1,
	})
	return out, err
}

func (e *vcEVM) mustCall(caller common.Address, input []byte) []byte {
	e.t.Helper()
	out, err := e.call(caller, input, nil)
	if err != nil {
		e.t.Fatalf("call %x: %v (revert data %x)", input[:4], err, out)
	}
	return out
}

func (e *vcEVM) validators() []tempo.Validator {
	e.t.Helper()
	vs, err := tempo.DecodeValidators(e.mustCall(common.Address{0xee}, tempo.GetValidatorsCalldata()))
	if err != nil {
		e.t.Fatal(err)
	}
	return vs
}

func testValidator(i int, inbound, outbound string) tempo.Validator {
	v := tempo.Validator{Active: true, ValidatorAddress: common.BigToAddress(big.NewInt(int64(0x1000 + i))), InboundAddress: inbound, OutboundAddress: outbound}
	v.PublicKey[0], v.PublicKey[31] = byte(i+1), 0x77
	return v
}

func addCalldata(t *testing.T, v tempo.Validator) []byte {
	t.Helper()
	data, err := tempo.AddValidatorCalldata(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Validators whose addresses cover every string length class: empty, under,
// at and over one word, and the maximum.
func variedValidators() []tempo.Validator {
	return []tempo.Validator{
		testValidator(0, "10.0.0.1:4000", "10.0.0.1:4000"),
		testValidator(1, "", strings.Repeat("a", 31)),
		testValidator(2, strings.Repeat("b", 32), strings.Repeat("c", 33)),
		testValidator(3, strings.Repeat("d", vcMaxStringSz), ""),
	}
}

func withIndexes(vs []tempo.Validator) []tempo.Validator {
	out := append([]tempo.Validator(nil), vs...)
	for i := range out {
		out[i].Index = uint64(i)
	}
	return out
}

func TestValidatorConfigAddThenList(t *testing.T) {
	e := newVCEVM(t, nil)
	if vs := e.validators(); len(vs) != 0 {
		t.Fatalf("empty contract lists %v", vs)
	}
	want := variedValidators()
	for _, v := range want {
		v.Index = 99 // the contract assigns the index itself
		e.mustCall(vcOwner, addCalldata(t, v))
	}
	if got := e.validators(); !reflect.DeepEqual(got, withIndexes(want)) {
		t.Fatalf("getValidators:\n got %+v\nwant %+v", got, withIndexes(want))
	}
	if got := new(big.Int).SetBytes(e.mustCall(vcOwner, tempo.ValidatorConfigABI.Methods["validatorCount"].ID)); got.Int64() != int64(len(want)) {
		t.Fatalf("validatorCount %v", got)
	}
	if got := common.BytesToAddress(e.mustCall(vcOwner, tempo.ValidatorConfigABI.Methods["owner"].ID)); got != vcOwner {
		t.Fatalf("owner %v", got)
	}
}

// The genesis storage ValidatorConfigStorage writes is what the contract
// writes itself: same answer, byte for byte, and same storage words.
func TestValidatorConfigGenesisMatchesContract(t *testing.T) {
	vs := variedValidators()
	fromGenesis := newVCEVM(t, vs)
	added := newVCEVM(t, nil)
	for _, v := range vs {
		added.mustCall(vcOwner, addCalldata(t, v))
	}
	a := fromGenesis.mustCall(vcOwner, tempo.GetValidatorsCalldata())
	b := added.mustCall(vcOwner, tempo.GetValidatorsCalldata())
	if !bytes.Equal(a, b) {
		t.Fatalf("getValidators differs:\ngenesis %x\nadded   %x", a, b)
	}
	st, err := ValidatorConfigStorage(vcOwner, vs)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range st {
		if got := added.state.GetState(tempo.ValidatorConfigAddress, k); got != v {
			t.Fatalf("slot %x: contract wrote %x, genesis has %x", k, got, v)
		}
	}
}

func TestValidatorConfigChangeStatus(t *testing.T) {
	vs := variedValidators()
	e := newVCEVM(t, vs)
	e.mustCall(vcOwner, tempo.ChangeValidatorStatusCalldata(vs[2].ValidatorAddress, false))
	want := withIndexes(vs)
	want[2].Active = false
	if got := e.validators(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after deactivating v2:\n got %+v\nwant %+v", got, want)
	}
	e.mustCall(vcOwner, tempo.ChangeValidatorStatusCalldata(vs[2].ValidatorAddress, true))
	if got := e.validators(); !reflect.DeepEqual(got, withIndexes(vs)) {
		t.Fatalf("after reactivating v2: %+v", got)
	}
}

func TestValidatorConfigRefusals(t *testing.T) {
	vs := variedValidators()[:2]
	stranger := common.HexToAddress("0x0000000000000000000000000000000000000bad")
	newV := testValidator(7, "10.0.0.7:4000", "10.0.0.7:4000")
	errSel := func(name string) []byte { id := tempo.ValidatorConfigABI.Errors[name].ID; return id[:4] }
	cases := []struct {
		name   string
		caller common.Address
		input  func() []byte
		value  *big.Int
		want   []byte // revert data; nil: empty
	}{
		{"add by a stranger", stranger, func() []byte { return addCalldata(t, newV) }, nil, errSel("Unauthorized")},
		{"add an address twice", vcOwner, func() []byte {
			v := newV
			v.ValidatorAddress = vs[1].ValidatorAddress
			return addCalldata(t, v)
		}, nil, errSel("ValidatorAlreadyExists")},
		{"add a zero public key", vcOwner, func() []byte {
			v := newV
			v.PublicKey = [32]byte{}
			return addCalldata(t, v)
		}, nil, errSel("InvalidPublicKey")},
		{"add with active = 2", vcOwner, func() []byte {
			d := addCalldata(t, newV)
			d[4+3*32-1] = 2
			return d
		}, nil, nil},
		{"add with a dirty address", vcOwner, func() []byte {
			d := addCalldata(t, newV)
			d[4] = 1
			return d
		}, nil, nil},
		{"add an inbound address over the limit", vcOwner, func() []byte {
			v := newV
			v.InboundAddress = strings.Repeat("x", vcMaxStringSz+1)
			return addCalldata(t, v)
		}, nil, nil},
		{"add with the strings cut off", vcOwner, func() []byte {
			d := addCalldata(t, newV)
			return d[:len(d)-32]
		}, nil, nil},
		{"add with a string offset past the calldata", vcOwner, func() []byte {
			d := addCalldata(t, newV)
			d[4+4*32-2] = 0xff
			return d
		}, nil, nil},
		{"add with value", vcOwner, func() []byte { return addCalldata(t, newV) }, big.NewInt(1), nil},
		{"status of an unknown validator", vcOwner, func() []byte { return tempo.ChangeValidatorStatusCalldata(newV.ValidatorAddress, false) }, nil, errSel("ValidatorNotFound")},
		{"status by a stranger", stranger, func() []byte { return tempo.ChangeValidatorStatusCalldata(vs[0].ValidatorAddress, false) }, nil, errSel("Unauthorized")},
		{"status with active = 2", vcOwner, func() []byte {
			d := tempo.ChangeValidatorStatusCalldata(vs[0].ValidatorAddress, false)
			d[len(d)-1] = 2
			return d
		}, nil, nil},
		{"getValidators with extra calldata", vcOwner, func() []byte { return append(tempo.GetValidatorsCalldata(), 0) }, nil, nil},
		{"unknown selector", vcOwner, func() []byte { return []byte{1, 2, 3, 4} }, nil, nil},
		{"short calldata", vcOwner, func() []byte { return []byte{1} }, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newVCEVM(t, vs)
			out, err := e.call(tc.caller, tc.input(), tc.value)
			if !errors.Is(err, vm.ErrExecutionReverted) {
				t.Fatalf("err %v, want a revert (out %x)", err, out)
			}
			if !bytes.Equal(out, tc.want) {
				t.Fatalf("revert data %x, want %x", out, tc.want)
			}
			if got := e.validators(); !reflect.DeepEqual(got, withIndexes(vs)) {
				t.Fatalf("a refused call changed the set: %+v", got)
			}
		})
	}
}

// Random answers never decode into more than tempo.MaxValidators entries.
func TestDecodeValidatorsRefusesHugeSets(t *testing.T) {
	ret := make([]byte, 64)
	ret[31] = 0x20
	big.NewInt(tempo.MaxValidators + 1).FillBytes(ret[32:64])
	if _, err := tempo.DecodeValidators(ret); !errors.Is(err, tempo.ErrBadValidatorSet) {
		t.Fatalf("err %v", err)
	}
}
