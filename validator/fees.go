package validator

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/big"

	"github.com/ethereum/go-ethereum/common"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
)

// feeDebit is the maximum fee of a transaction this validator signed,
// reserved from its payer like the amount is from the sender.
type feeDebit struct {
	payer  qc.Address
	token  qc.Address
	amount *big.Int
}

func feeDebitOf(f tempo.Fee) *feeDebit {
	return &feeDebit{payer: qc.Address(f.Payer), token: qc.Address(f.Token), amount: new(big.Int).Set(f.Amount)}
}

// encode lays the debit out as payer (20) ‖ token (20) ‖ amount (big-endian).
func (f *feeDebit) encode() []byte {
	b := make([]byte, 0, 40+32)
	b = append(b, f.payer[:]...)
	b = append(b, f.token[:]...)
	return append(b, f.amount.Bytes()...)
}

func decodeFeeDebit(b []byte) (*feeDebit, error) {
	if len(b) < 40 || len(b) > 40+64 {
		return nil, fmt.Errorf("fee record of %d bytes", len(b))
	}
	f := &feeDebit{amount: new(big.Int).SetBytes(b[40:])}
	copy(f.payer[:], b[:20])
	copy(f.token[:], b[20:40])
	return f, nil
}

// FeeDebit is a reserved maximum fee, as reported by OverlayOf.
type FeeDebit struct {
	Payer, Token qc.Address
	Amount       *big.Int
	Key          qc.ContentionKey // the transaction's contention key
}

// lockAccounts takes the decision locks of the sender and the fee payer in
// a fixed order (two payments can share either account), and returns the
// unlock.
func (v *Validator) lockAccounts(a, b qc.Address) func() {
	i := maphash.Comparable(v.seed, a) % senderStripes
	j := maphash.Comparable(v.seed, b) % senderStripes
	if i == j {
		v.senders[i].Lock()
		return v.senders[i].Unlock
	}
	first, second := &v.senders[min(i, j)], &v.senders[max(i, j)]
	first.Lock()
	second.Lock()
	return func() {
		second.Unlock()
		first.Unlock()
	}
}

// checkFunds is step 6: the sender's available balance of the asset must
// cover the amount, and the payer's available balance of the fee token the
// maximum fee (the two add up when one account pays both in one token). It
// returns the fee to reserve.
func (v *Validator) checkFunds(ctx context.Context, view tempo.ChainView, p *Payment) (*feeDebit, error) {
	e := p.Effects
	fee, err := v.fees.MaxFee(ctx, view, p.Tx, common.Address(e.Asset))
	switch {
	case errors.Is(err, tempo.ErrMalformed):
		return nil, reject(codeInvalidFormat, err, "fee")
	case err != nil:
		return nil, reject(fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE, err, "fee token")
	}
	debit := feeDebitOf(fee)
	amount := amountBig(e.Amount)
	shared := debit.payer == e.Sender && debit.token == e.Asset
	need := new(big.Int).Set(amount)
	if shared {
		need.Add(need, debit.amount)
	}
	available, err := v.available(ctx, view, e.Sender, e.Asset, e.ContentionKey())
	if err != nil {
		return nil, reject(fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE, err, "balance of %s", common.Address(e.Sender))
	}
	if available.Cmp(need) < 0 {
		if shared {
			return nil, reject(fastpayv1.RejectCode_INSUFFICIENT_FUNDS, nil,
				"%s has %s units of %s available (chain balance minus pending debits plus certified credits at block %d); the payment needs %d plus a maximum fee of %s (gas_limit %d × max_fee_per_gas %s, %s fees), %s in all",
				common.Address(e.Sender), available, common.Address(e.Asset), view.Head().Number, e.Amount, debit.amount,
				p.Tx.GasLimit, p.Tx.MaxFeePerGas, v.fees.Name(), need)
		}
		return nil, reject(fastpayv1.RejectCode_INSUFFICIENT_FUNDS, nil,
			"%s has %s units of %s available (chain balance minus pending debits plus certified credits at block %d), payment needs %d",
			common.Address(e.Sender), available, common.Address(e.Asset), view.Head().Number, e.Amount)
	}
	if shared {
		return debit, nil
	}
	feeAvailable, err := v.available(ctx, view, debit.payer, debit.token, e.ContentionKey())
	if err != nil {
		return nil, reject(fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE, err, "fee balance of %s", common.Address(debit.payer))
	}
	if feeAvailable.Cmp(debit.amount) < 0 {
		who := "the fee payer " + common.Address(debit.payer).Hex()
		if debit.payer == e.Sender {
			who = common.Address(debit.payer).Hex() + ", which pays the fee,"
		}
		return nil, reject(fastpayv1.RejectCode_INSUFFICIENT_FUNDS, nil,
			"%s has %s units of fee token %s available at block %d; the maximum fee is %s (gas_limit %d × max_fee_per_gas %s, %s fees)",
			who, feeAvailable, feeTokenName(debit.token), view.Head().Number, debit.amount,
			p.Tx.GasLimit, p.Tx.MaxFeePerGas, v.fees.Name())
	}
	return debit, nil
}

func feeTokenName(t qc.Address) string {
	if common.Address(t) == tempo.NativeGas {
		return "(native gas)"
	}
	return common.Address(t).Hex()
}
