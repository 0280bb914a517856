package safety

import (
	"bytes"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"time"

	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
)

// SPEC §4, settlement guarantees: a QC is a promise that its payment will
// settle, so validators certify a payment only if
//
//   - its payer can pay the transaction's maximum fee on top of what it
//     already owes (the amount too, when the fee is paid from the same
//     account in the same token), and
//   - a 0x76 transaction stays valid long enough to reach a block: its
//     valid_before at least the settlement margin away, its valid_after at
//     most that far ahead.
//
// The QCs do not carry fees (effects name the amount and asset only), so
// Check takes each payment's fee terms from the run (Payment.Fee, recorded
// by the driver from the transaction it signed):
//
//   - the maximum fees of certified payments are debits of their payers in
//     their fee tokens, next to the certified amounts (see balances). This
//     is judged against initial balances, so it is stricter than the
//     validators' rule in one case: a settled transaction is charged its
//     actual fee, at most its maximum, and a payer whose later payments
//     rely on that difference is flagged although validators may rightly
//     certify them. Drivers fund their accounts so that this never
//     matters;
//   - the certificates of honest validators inside every valid QC of a
//     certified 0x76 payment must have been created while the window was
//     open: before valid_before − margin and not before valid_after −
//     margin, each side widened by CheckOptions.ClockTolerance (validators
//     stamp certificates with their clock; the window is in unix seconds
//     of the chain's). A Byzantine signer's timestamp is its own word and is
//     not judged.

// feeDebit sums the maximum fees one account pays in one token.
type feeDebit struct {
	sum   *big.Int
	items []feeItem
}

type feeItem struct {
	tx    qc.Hash
	names string // the run's payment names, e.g. " (feetight:1/exact)"
	max   *big.Int
}

func (f *feeDebit) describe() string {
	parts := make([]string, len(f.items))
	for i, it := range f.items {
		parts[i] = fmt.Sprintf("tx %s%s max fee %s", it.tx, it.names, it.max)
	}
	return strings.Join(parts, "; ")
}

func (f *feeDebit) txHashes() []string {
	out := make([]string, len(f.items))
	for i, it := range f.items {
		out[i] = it.tx.Hex()
	}
	sort.Strings(out)
	return out
}

// tokenName names a fee token in messages.
func tokenName(t qc.Address) string {
	if t == NativeToken {
		return "the native currency"
	}
	return "token " + t.Hex()
}

// margin returns the settlement margin the history records, or the
// default every committee file without one gets.
func (c *checker) margin() time.Duration {
	if m := c.h.Committee.SettlementMargin; m > 0 {
		return m
	}
	return tempo.DefaultSettlementMargin
}

// runFees returns, per transaction, the fee terms the run records (the
// first recorded of its payments) and the names of its payments.
func (c *checker) runFees() (map[qc.Hash]*PaymentFee, map[qc.Hash][]*Payment) {
	fees := make(map[qc.Hash]*PaymentFee)
	byTx := make(map[qc.Hash][]*Payment)
	if c.run == nil {
		return fees, byTx
	}
	for i := range c.run.Payments {
		p := &c.run.Payments[i]
		if p.TxHash.IsZero() {
			continue
		}
		byTx[p.TxHash] = append(byTx[p.TxHash], p)
		if _, ok := fees[p.TxHash]; !ok && p.Fee != nil && p.Fee.Max != nil {
			fees[p.TxHash] = p.Fee
		}
	}
	return fees, byTx
}

// sortedCertified returns the certified transactions in a fixed order.
func (c *checker) sortedCertified() []qc.Hash {
	txs := make([]qc.Hash, 0, len(c.certified))
	for tx := range c.certified {
		txs = append(txs, tx)
	}
	sort.Slice(txs, func(i, j int) bool { return bytes.Compare(txs[i][:], txs[j][:]) < 0 })
	return txs
}

// feeDebits returns the maximum fees of the certified payments per (payer,
// fee token); nil without a run.
func (c *checker) feeDebits() map[accountAsset]*feeDebit {
	if c.run == nil {
		return nil
	}
	fees, byTx := c.runFees()
	out := make(map[accountAsset]*feeDebit)
	for _, tx := range c.sortedCertified() {
		f := fees[tx]
		if f == nil {
			c.r.Fees.NoTerms++
			continue
		}
		c.r.Fees.Counted++
		k := accountAsset{f.Payer, f.Token}
		d := out[k]
		if d == nil {
			d = &feeDebit{sum: new(big.Int)}
			out[k] = d
		}
		d.sum.Add(d.sum, f.Max)
		d.items = append(d.items, feeItem{tx: tx, names: paymentNames(byTx[tx]), max: f.Max})
	}
	if c.r.Fees.NoTerms > 0 {
		if c.r.Fees.Counted == 0 {
			c.note("fees not checked: the run records no fee terms for its %d certified transaction(s) (a run stored before fees were recorded)", c.r.Fees.NoTerms)
		} else {
			c.note("%d certified transaction(s) have no fee terms in the run: their maximum fees are not counted", c.r.Fees.NoTerms)
		}
	}
	return out
}

// validityWindows checks that no honest validator certified a 0x76 payment
// outside its validity window narrowed by the settlement margin.
func (c *checker) validityWindows() {
	fees, byTx := c.runFees()
	margin, tol := c.margin(), c.opts.ClockTolerance
	qcsOf := make(map[qc.Hash][]*qc.QC)
	for _, q := range c.distinct {
		qcsOf[q.TxHash] = append(qcsOf[q.TxHash], q)
	}
	for _, tx := range c.sortedCertified() {
		f := fees[tx]
		if f == nil || (f.ValidBefore == 0 && f.ValidAfter == 0) {
			continue
		}
		c.r.Fees.Windows++
		// Signing is allowed while now + margin < valid_before and
		// now + margin >= valid_after.
		var lastOK, firstOK time.Time
		if f.ValidBefore != 0 {
			lastOK = unixSeconds(f.ValidBefore).Add(-margin).Add(tol)
		}
		if f.ValidAfter != 0 {
			firstOK = unixSeconds(f.ValidAfter).Add(-margin).Add(-tol)
		}
		var late, early, signers []string // "name at time", and the names
		for _, q := range qcsOf[tx] {
			for i := range q.Certs {
				cert := &q.Certs[i]
				if !c.honest(cert.Signer) {
					continue
				}
				at := unixMillis(cert.CreatedUnixMillis)
				what := fmt.Sprintf("%s at %s", c.name(cert.Signer), at.UTC().Format(time.RFC3339Nano))
				switch {
				case !lastOK.IsZero() && !at.Before(lastOK):
					late = addName(late, what)
				case !firstOK.IsZero() && at.Before(firstOK):
					early = addName(early, what)
				default:
					continue
				}
				signers = addName(signers, c.name(cert.Signer))
			}
		}
		if len(late) == 0 && len(early) == 0 {
			continue
		}
		var why []string
		if len(late) > 0 {
			why = append(why, fmt.Sprintf("certificates by %s were created within %s of its valid_before %d (%s)",
				strings.Join(late, ", "), margin, f.ValidBefore, unixSeconds(f.ValidBefore).UTC().Format(time.RFC3339)))
		}
		if len(early) > 0 {
			why = append(why, fmt.Sprintf("certificates by %s were created more than %s before its valid_after %d (%s)",
				strings.Join(early, ", "), margin, f.ValidAfter, unixSeconds(f.ValidAfter).UTC().Format(time.RFC3339)))
		}
		var account string
		if v := c.certified[tx]; v != nil {
			account = v.qc.Effects().Sender.Hex()
		}
		c.violate(Violation{Kind: KindInsideMargin,
			Message: fmt.Sprintf("0x76 transaction %s%s was certified inside the settlement margin (clock tolerance %s): %s",
				tx, paymentNames(byTx[tx]), tol, strings.Join(why, "; ")),
			TxHashes: []string{tx.Hex()}, Account: account, Validators: signers})
	}
}

func unixSeconds(s uint64) time.Time {
	const maxSeconds = 1 << 40 // beyond any timestamp a transaction can mean
	return time.Unix(int64(min(s, maxSeconds)), 0)
}
