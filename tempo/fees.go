package tempo

import (
	"context"
	"fmt"
	"math/big"
	"time"

	"github.com/ethereum/go-ethereum/common"
)

// A certified payment must be able to pay for its own inclusion: a sender
// holding exactly the amount, with the fee taken from the same token, would
// get a QC for a transaction the chain cannot include. So validators reserve
// the transaction's maximum fee as a pending debit of whoever pays it (SPEC
// §4, settlement guarantees). How the fee is paid depends on the chain.

// Fee-related addresses on Tempo.
var (
	// FeeManager is Tempo's fee manager precompile: getUserToken(address)
	// returns an account's preferred fee token (zero when unset).
	FeeManager = common.HexToAddress("0xfeeC000000000000000000000000000000000000")
	// PathUSD is the fee token of last resort.
	PathUSD = common.HexToAddress("0x20C0000000000000000000000000000000000000")
	// NativeGas stands for a chain's native currency where gas is paid in it
	// (the development chain): BalanceOf(NativeGas, holder) is holder's
	// native balance.
	NativeGas = common.Address{}
)

// feeUnitsPerTokenUnit converts a Tempo fee (gas × attodollars per gas)
// into units of a 6-decimal USD token: 10^18 / 10^6.
var feeUnitsPerTokenUnit = big.NewInt(1_000_000_000_000)

// Fee is the most a transaction can be charged for gas.
type Fee struct {
	// Payer is the account charged: a sponsored 0x76 transaction's fee
	// payer, else its sender.
	Payer common.Address
	// Token is what the fee is paid in: a TIP-20 token on Tempo, NativeGas
	// on a chain with native gas.
	Token common.Address
	// Amount is the maximum fee in Token's units.
	Amount *big.Int
}

// FeeModel resolves the maximum fee of a transaction. Implementations must
// be safe for concurrent use.
type FeeModel interface {
	// Name is the model's name in configuration ("tempo", "native").
	Name() string
	// MaxFee returns the maximum fee of tx, a payment in token, with the
	// state of view. An error is a failed chain read (wrapping
	// ErrChainUnavailable), or ErrMalformed for a fee token no fee can be
	// paid in.
	MaxFee(ctx context.Context, view ChainView, tx *DecodedTx, token common.Address) (Fee, error)
}

// DefaultSettlementMargin is the default of the network parameter that
// keeps a certified 0x76 transaction valid long enough to reach a block: it
// is certified only while its valid_before is at least this far away, and
// at most this long before its valid_after (SPEC §4).
const DefaultSettlementMargin = 10 * time.Second

// Fee model names.
const (
	FeeModelTempo  = "tempo"
	FeeModelNative = "native"
)

// FeeModelByName returns the model called name.
func FeeModelByName(name string) (FeeModel, error) {
	switch name {
	case FeeModelTempo:
		return TempoFees{}, nil
	case FeeModelNative:
		return NativeFees{}, nil
	}
	return nil, fmt.Errorf("fee model %q is unknown (want %q or %q)", name, FeeModelTempo, FeeModelNative)
}

// payer returns who pays tx's fee: the fee payer of a sponsored 0x76
// transaction, else the sender.
func payer(tx *DecodedTx) common.Address {
	if tx.FeePayer != nil {
		return *tx.FeePayer
	}
	return tx.Sender
}

// TempoFees is Tempo's fee rule. The fee token is, in order: the
// transaction's fee_token; the payer's preference in the FeeManager; for a
// TIP-20 transfer, the transferred token; pathUSD. The maximum fee is
// ceil(gas_limit × max_fee_per_gas / 10^12) units of it.
type TempoFees struct{}

// Name implements FeeModel.
func (TempoFees) Name() string { return FeeModelTempo }

// MaxFee implements FeeModel.
func (TempoFees) MaxFee(ctx context.Context, view ChainView, tx *DecodedTx, token common.Address) (Fee, error) {
	fee := Fee{Payer: payer(tx), Amount: maxFeeUnits(tx)}
	switch {
	case tx.FeeToken != nil:
		fee.Token = *tx.FeeToken
	default:
		pref, err := view.FeeTokenOf(ctx, fee.Payer)
		if err != nil {
			return Fee{}, err
		}
		switch {
		case pref != (common.Address{}):
			fee.Token = pref
		case IsTIP20Address(token):
			fee.Token = token
		default:
			fee.Token = PathUSD
		}
	}
	if !IsTIP20Address(fee.Token) {
		return Fee{}, malformedf("fee token %s is not a TIP-20 token: no fee can be paid in it", fee.Token)
	}
	// ceil(gas × price / 10^12)
	fee.Amount.Add(fee.Amount, new(big.Int).Sub(feeUnitsPerTokenUnit, big.NewInt(1)))
	fee.Amount.Quo(fee.Amount, feeUnitsPerTokenUnit)
	return fee, nil
}

// NativeFees is the rule of a chain whose gas is paid in its native
// currency (the development chain): the sender pays gas_limit ×
// max_fee_per_gas in NativeGas.
type NativeFees struct{}

// Name implements FeeModel.
func (NativeFees) Name() string { return FeeModelNative }

// MaxFee implements FeeModel.
func (NativeFees) MaxFee(_ context.Context, _ ChainView, tx *DecodedTx, _ common.Address) (Fee, error) {
	return Fee{Payer: payer(tx), Token: NativeGas, Amount: maxFeeUnits(tx)}, nil
}

// maxFeeUnits returns gas_limit × max_fee_per_gas.
func maxFeeUnits(tx *DecodedTx) *big.Int {
	price := tx.MaxFeePerGas
	if price == nil {
		price = new(big.Int)
	}
	return new(big.Int).Mul(new(big.Int).SetUint64(tx.GasLimit), price)
}
