package safety

import (
	"bytes"
	"fmt"
	"math/big"
	"sort"

	"github.com/allegro-mesh/allegro/qc"
)

// SPEC §7.3: an account's certified debits never exceed its initial
// balance plus its certified credits (overdraft), fees included when the run
// records them (fee_uncovered; the fee terms are in fees.go).

type accountAsset struct {
	account, asset qc.Address
}

// balances checks §7.3 for every (account, token): the amounts of its
// certified payments must not exceed its initial balance plus its certified
// credits. With a run that records fee terms, the maximum fees of the
// certified payments an account pays for are debits too (SPEC §4): a QC
// whose payment cannot also pay its fee is a promise the chain may not keep.
// Amounts alone over the limit are an overdraft; amounts within it but
// fees beyond it are an uncovered fee.
func (c *checker) balances() {
	debits := make(map[accountAsset]*big.Int)
	credits := make(map[accountAsset]*big.Int)
	debitTxs := make(map[accountAsset][]string)
	add := func(m map[accountAsset]*big.Int, k accountAsset, v uint64) {
		if m[k] == nil {
			m[k] = new(big.Int)
		}
		m[k].Add(m[k], new(big.Int).SetUint64(v))
	}
	// One QC per transaction: several QCs for one transaction (different
	// certificate subsets) certify the same payment once.
	for _, v := range c.certified {
		e := v.qc.Effects()
		add(debits, accountAsset{e.Sender, e.Asset}, e.Amount)
		add(credits, accountAsset{e.Recipient, e.Asset}, e.Amount)
		debitTxs[accountAsset{e.Sender, e.Asset}] = append(debitTxs[accountAsset{e.Sender, e.Asset}], v.qc.TxHash.Hex())
	}
	fees := c.feeDebits()
	keys := make([]accountAsset, 0, len(debits)+len(fees))
	for k := range debits {
		keys = append(keys, k)
	}
	for k := range fees {
		if debits[k] == nil {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if x := bytes.Compare(keys[i].account[:], keys[j].account[:]); x != 0 {
			return x < 0
		}
		return bytes.Compare(keys[i].asset[:], keys[j].asset[:]) < 0
	})
	var unknown, feeUnknown []string
	for _, k := range keys {
		fee := fees[k]
		if fee != nil && c.r.Fees != nil {
			c.r.Fees.Payers++
		}
		initial, ok := c.h.initialBalance(k.account, k.asset)
		if !ok {
			if debits[k] != nil {
				unknown = append(unknown, k.account.Hex())
			}
			if fee != nil {
				feeUnknown = append(feeUnknown, k.account.Hex()+" (fee token "+tokenName(k.asset)+")")
			}
			continue
		}
		c.r.Balances.Checked++
		limit := new(big.Int).Set(initial)
		if cr := credits[k]; cr != nil {
			limit.Add(limit, cr)
		}
		amounts := orZero(debits[k])
		if amounts.Cmp(limit) > 0 {
			txs := debitTxs[k]
			sort.Strings(txs)
			c.violate(Violation{Kind: KindOverdraft,
				Message: fmt.Sprintf("account %s: certified debits %s exceed initial balance %s + certified credits %s of token %s",
					k.account.Hex(), amounts, initial, orZero(credits[k]), k.asset.Hex()),
				Account: k.account.Hex(), TxHashes: txs})
			continue
		}
		if fee == nil {
			continue
		}
		if total := new(big.Int).Add(amounts, fee.sum); total.Cmp(limit) > 0 {
			c.violate(Violation{Kind: KindFeeUncovered,
				Message: fmt.Sprintf("account %s: certified amounts %s plus the maximum fees %s of the %d certified payment(s) it pays fees for exceed initial balance %s + certified credits %s of %s by %s: %s",
					k.account.Hex(), amounts, fee.sum, len(fee.items), initial, orZero(credits[k]), tokenName(k.asset),
					new(big.Int).Sub(total, limit), fee.describe()),
				Account: k.account.Hex(), TxHashes: fee.txHashes()})
		}
	}
	c.r.Balances.Unchecked = len(unknown)
	if len(unknown) > 0 {
		c.note("overdraft not checked for %d account(s) with certified debits but no recorded initial balance of the token, e.g. %s", len(unknown), unknown[0])
	}
	if c.r.Fees != nil {
		c.r.Fees.Unchecked = len(feeUnknown)
	}
	if len(feeUnknown) > 0 {
		c.note("maximum fees not checked for %d payer(s) without a recorded initial balance of their fee token, e.g. %s", len(feeUnknown), feeUnknown[0])
	}
}
