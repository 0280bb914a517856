package tempo

import (
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
)

// ValidatorConfigAddress is the ValidatorConfig precompile: the chain's
// validator set (SPEC §5a).
var ValidatorConfigAddress = common.HexToAddress("0xCccCcCCC00000000000000000000000000000000")

// Validator is one entry of ValidatorConfig.getValidators(). PublicKey is
// the validator's ed25519 consensus key.
type Validator struct {
	PublicKey        [32]byte       `abi:"publicKey"`
	Active           bool           `abi:"active"`
	Index            uint64         `abi:"index"`
	ValidatorAddress common.Address `abi:"validatorAddress"`
	InboundAddress   string         `abi:"inboundAddress"`
	OutboundAddress  string         `abi:"outboundAddress"`
}

// The subset of the ValidatorConfig interface this project uses: the view
// every sidecar reads, and the owner's calls the development chain serves.
const validatorConfigABIJSON = `[
 {"type":"function","name":"getValidators","stateMutability":"view","inputs":[],"outputs":[{"name":"validators","type":"tuple[]","components":[
  {"name":"publicKey","type":"bytes32"},{"name":"active","type":"bool"},{"name":"index","type":"uint64"},
  {"name":"validatorAddress","type":"address"},{"name":"inboundAddress","type":"string"},{"name":"outboundAddress","type":"string"}]}]},
 {"type":"function","name":"addValidator","stateMutability":"nonpayable","inputs":[
  {"name":"newValidatorAddress","type":"address"},{"name":"publicKey","type":"bytes32"},{"name":"active","type":"bool"},
  {"name":"inboundAddress","type":"string"},{"name":"outboundAddress","type":"string"}],"outputs":[]},
 {"type":"function","name":"changeValidatorStatus","stateMutability":"nonpayable","inputs":[
  {"name":"validator","type":"address"},{"name":"active","type":"bool"}],"outputs":[]},
 {"type":"function","name":"owner","stateMutability":"view","inputs":[],"outputs":[{"name":"","type":"address"}]},
 {"type":"function","name":"validatorCount","stateMutability":"view","inputs":[],"outputs":[{"name":"","type":"uint64"}]},
 {"type":"error","name":"Unauthorized","inputs":[]},
 {"type":"error","name":"ValidatorAlreadyExists","inputs":[]},
 {"type":"error","name":"ValidatorNotFound","inputs":[]},
 {"type":"error","name":"InvalidPublicKey","inputs":[]}
]`

// ValidatorConfigABI is the parsed interface of ValidatorConfigAddress.
var ValidatorConfigABI = mustParseABI(validatorConfigABIJSON)

func mustParseABI(s string) abi.ABI {
	a, err := abi.JSON(strings.NewReader(s))
	if err != nil {
		panic(fmt.Sprintf("tempo: ValidatorConfig ABI: %v", err)) // a bug in the constant above
	}
	return a
}

// MaxValidators bounds the validator set a sidecar accepts from the chain;
// a longer answer is refused rather than decoded.
const MaxValidators = 1024

var bigMaxValidators = big.NewInt(MaxValidators)

// ErrBadValidatorSet marks a getValidators answer that does not decode.
var ErrBadValidatorSet = errors.New("tempo: malformed getValidators result")

// GetValidatorsCalldata returns the calldata of getValidators().
func GetValidatorsCalldata() []byte {
	data, err := ValidatorConfigABI.Pack("getValidators")
	if err != nil {
		panic(err) // no arguments: cannot fail
	}
	return data
}

// DecodeValidators decodes the return data of getValidators().
func DecodeValidators(ret []byte) ([]Validator, error) {
	// The array length is the second word; refuse huge sets before the
	// decoder allocates for them.
	if len(ret) >= 64 {
		n := new(common.Hash)
		copy(n[:], ret[32:64])
		if n.Big().Cmp(bigMaxValidators) > 0 {
			return nil, fmt.Errorf("%w: %s validators, more than %d", ErrBadValidatorSet, n.Big(), MaxValidators)
		}
	}
	var out struct{ Validators []Validator }
	if err := ValidatorConfigABI.UnpackIntoInterface(&out, "getValidators", ret); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadValidatorSet, err)
	}
	return out.Validators, nil
}

// AddValidatorCalldata returns the calldata of the owner's
// addValidator(newValidatorAddress, publicKey, active, inbound, outbound).
func AddValidatorCalldata(v Validator) ([]byte, error) {
	return ValidatorConfigABI.Pack("addValidator", v.ValidatorAddress, v.PublicKey, v.Active, v.InboundAddress, v.OutboundAddress)
}

// ChangeValidatorStatusCalldata returns the calldata of the owner's
// changeValidatorStatus(validator, active).
func ChangeValidatorStatusCalldata(validator common.Address, active bool) []byte {
	data, err := ValidatorConfigABI.Pack("changeValidatorStatus", validator, active)
	if err != nil {
		panic(err) // fixed-size arguments of the right types: cannot fail
	}
	return data
}
