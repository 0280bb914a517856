package validator

import (
	"context"
	"errors"
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum/common"

	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
)

// The chain does not know QCs. A sender who lands a transaction conflicting
// with a certified one directly on chain — another transaction for the same
// contention key, or one that spends what the certified payments need —
// defeats the QC, unless block builders refuse such transactions. The
// conflict check answers, for a raw transaction a builder is about to
// include, whether it would do that as far as this validator knows: the
// integration point for a Tempo validator's transaction pool. It is advice
// from one validator's view: a QC this validator has not learned yet is not
// seen, so a builder should ask the sidecar of its own validator, which
// learns every QC of the mesh within milliseconds.

// Kinds of conflict.
const (
	// ConflictCertifiedKey: a QC certifies another transaction for the
	// raw transaction's contention key.
	ConflictCertifiedKey = "certified_key"
	// ConflictSignedKey: this validator signed another transaction for the
	// key; its QC may form at any moment.
	ConflictSignedKey = "signed_key"
	// ConflictOverdraw: the raw transaction spends what certified (or
	// signed) payments of its sender or fee payer need.
	ConflictOverdraw = "overdraw"
	// ConflictUnknownSpend: the raw transaction is not a TIP-20 payment, so
	// what it spends cannot be judged, and its sender has certified or
	// signed payments not yet settled.
	ConflictUnknownSpend = "unknown_spend"
)

// Conflict is one reason a raw transaction conflicts.
type Conflict struct {
	Kind string
	// TxHash is the FastPay tx_hash of the certified or signed transaction
	// holding the key (certified_key, signed_key).
	TxHash qc.Hash
	// Account and Token, and the amounts, describe an overdraw: Available
	// is the chain balance less the reserved payments plus certified
	// credits, Needed what the raw transaction may take.
	Account, Token    common.Address
	Available, Needed *big.Int
	Message           string
}

// ConflictReport is the answer of CheckConflict.
type ConflictReport struct {
	// ChainTxHash is the raw transaction's hash on chain.
	ChainTxHash common.Hash
	Key         qc.ContentionKey
	// Certified reports that the raw transaction is the one certified (or
	// signed by this validator) for its key: including it is what the
	// QC promises.
	Certified bool
	// Block is the chain head the balances were read at.
	Block     uint64
	Conflicts []Conflict
}

// ErrNotTransaction: the input is not a signed transaction of this chain.
var ErrNotTransaction = errors.New("not a signed transaction of this chain")

// CheckConflict decodes raw (a signed 0x76 or EIP-2718 transaction) and
// reports whether including it on chain would defeat a certified payment.
func (v *Validator) CheckConflict(ctx context.Context, raw []byte) (*ConflictReport, error) {
	tx, err := decodeAny(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotTransaction, err)
	}
	if tx.ChainID != v.committee.Domain().ChainID {
		return nil, fmt.Errorf("%w: signed for chain %d, this validator serves chain %d", ErrNotTransaction, tx.ChainID, v.committee.Domain().ChainID)
	}
	view, err := v.chain.Latest(ctx)
	if err != nil {
		return nil, err
	}
	key := qc.ContentionKey{Sender: qc.Address(tx.Sender), NonceKey: qc.NonceKey(tx.NonceKey), NonceSeq: tx.Nonce}
	r := &ConflictReport{ChainTxHash: tx.TxHash, Key: key, Block: view.Head().Number}
	pay, payErr := tx.SinglePayment()

	// The key: a certified or signed transaction other than this one.
	v.mu.Lock()
	signed, isSigned := v.guard[key]
	certified, isCertified := v.certifiedKeys[key]
	var certifiedEffects qc.Effects
	if isCertified {
		if c, ok := v.credits.Peek(certified); ok {
			certifiedEffects = c.effects
		}
	}
	v.mu.Unlock()
	// Whether raw is the transaction known as txHash: the request this
	// validator signed gives the exact chain transaction; for a QC learned
	// without it, the effects are what the promise is about.
	same := func(txHash qc.Hash, e qc.Effects) (bool, error) {
		if isSigned && signed.txHash == txHash {
			req, err := v.store.signedRequest(key)
			if err != nil {
				return false, err
			}
			if req != nil {
				d, err := decodeAny(req.GetTx().GetTempoTx().GetData())
				return err == nil && d.TxHash == tx.TxHash, nil
			}
		}
		return payErr == nil && e == effectsOf(pay, key), nil
	}
	if isCertified {
		ok, err := same(certified, certifiedEffects)
		if err != nil {
			return nil, err
		}
		if ok {
			r.Certified = true
		} else {
			r.Conflicts = append(r.Conflicts, Conflict{Kind: ConflictCertifiedKey, TxHash: certified,
				Message: fmt.Sprintf("a QC certifies transaction %s for sender %s nonce key %x nonce %d", certified, tx.Sender, key.NonceKey[:], key.NonceSeq)})
		}
	}
	if isSigned && (!isCertified || signed.txHash != certified) {
		ok, err := same(signed.txHash, signed.effects)
		if err != nil {
			return nil, err
		}
		if ok {
			r.Certified = true
		} else {
			r.Conflicts = append(r.Conflicts, Conflict{Kind: ConflictSignedKey, TxHash: signed.txHash,
				Message: fmt.Sprintf("this validator signed transaction %s for sender %s nonce key %x nonce %d; its QC may form", signed.txHash, tx.Sender, key.NonceKey[:], key.NonceSeq)})
		}
	}

	// The funds: what this transaction may take must leave the reserved
	// payments covered.
	if payErr != nil {
		if v.hasReserved(qc.Address(tx.Sender)) {
			r.Conflicts = append(r.Conflicts, Conflict{Kind: ConflictUnknownSpend, Account: tx.Sender,
				Message: fmt.Sprintf("not a TIP-20 payment (%v), and %s has certified or signed payments not yet settled", payErr, tx.Sender)})
		}
		return r, nil
	}
	fee, err := v.fees.MaxFee(ctx, view, tx, pay.Token)
	if err != nil && !errors.Is(err, tempo.ErrMalformed) {
		return nil, err
	}
	// What it may take, by (account, token): the amount from the sender,
	// the maximum fee from the payer (one entry when they coincide).
	type spend struct {
		account, token common.Address
		amount         *big.Int
	}
	spends := []spend{{tx.Sender, pay.Token, new(big.Int).Set(pay.Amount)}}
	if err == nil {
		if fee.Payer == tx.Sender && fee.Token == pay.Token {
			spends[0].amount.Add(spends[0].amount, fee.Amount)
		} else {
			spends = append(spends, spend{fee.Payer, fee.Token, fee.Amount})
		}
	}
	// When the transaction is the certified one, its own reservation is
	// what it spends.
	var exclude *qc.ContentionKey
	if r.Certified {
		exclude = &key
	}
	for _, sp := range spends {
		available, err := v.reservedBalance(ctx, view, qc.Address(sp.account), qc.Address(sp.token), exclude)
		if err != nil {
			return nil, err
		}
		if available.Cmp(sp.amount) < 0 {
			r.Conflicts = append(r.Conflicts, Conflict{Kind: ConflictOverdraw, Account: sp.account, Token: sp.token, Available: available, Needed: sp.amount,
				Message: fmt.Sprintf("%s has %s units of %s left after the certified and signed payments not yet settled; this transaction may take %s", sp.account, available, feeTokenName(qc.Address(sp.token)), sp.amount)})
		}
	}
	return r, nil
}

// decodeAny decodes a signed 0x76 or EIP-2718 transaction.
func decodeAny(raw []byte) (*tempo.DecodedTx, error) {
	if len(raw) > 0 && raw[0] == tempo.TempoTxType {
		return tempo.DecodeTempoTx(raw)
	}
	return tempo.DecodeEVMTx(raw)
}

// effectsOf returns the effects of a payment with contention key key.
func effectsOf(pay tempo.Payment, key qc.ContentionKey) qc.Effects {
	return qc.Effects{Sender: key.Sender, Recipient: qc.Address(pay.Recipient), Amount: pay.Amount.Uint64(),
		Asset: qc.Address(pay.Token), NonceKey: key.NonceKey, NonceSeq: key.NonceSeq}
}

// hasReserved reports whether account has signed or certified payments
// this validator has not seen settle.
func (v *Validator) hasReserved(account qc.Address) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.debits[account]) > 0 || len(v.bySender[account]) > 0
}

// reservedBalance is account's chain balance of token less the payments
// (and maximum fees) it certified or this validator signed, unsettled at
// view, plus its certified credits; exclude leaves one key's reservation
// out.
func (v *Validator) reservedBalance(ctx context.Context, view tempo.ChainView, account, token qc.Address, exclude *qc.ContentionKey) (*big.Int, error) {
	balance, err := view.BalanceOf(ctx, common.Address(token), common.Address(account))
	if err != nil {
		return nil, err
	}
	type reservation struct {
		effects qc.Effects
		amount  *big.Int
		credit  bool
	}
	var rs []reservation
	seen := make(map[qc.ContentionKey]bool)
	v.mu.Lock()
	for k := range v.debits[account] {
		g := v.guard[k]
		if exclude != nil && k == *exclude {
			continue
		}
		if g.effects.Sender == account && g.effects.Asset == token {
			rs = append(rs, reservation{g.effects, amountBig(g.effects.Amount), false})
			seen[k] = true
		}
		if g.fee != nil && g.fee.payer == account && g.fee.token == token {
			rs = append(rs, reservation{g.effects, g.fee.amount, false})
		}
	}
	for h := range v.bySender[account] {
		c, ok := v.credits.Peek(h)
		k := c.effects.ContentionKey()
		if !ok || seen[k] || c.effects.Asset != token || (exclude != nil && k == *exclude) {
			continue
		}
		rs = append(rs, reservation{c.effects, amountBig(c.effects.Amount), false})
	}
	for h := range v.byRecipient[account] {
		if c, ok := v.credits.Peek(h); ok && c.effects.Asset == token {
			rs = append(rs, reservation{c.effects, amountBig(c.effects.Amount), true})
		}
	}
	v.mu.Unlock()
	nonces := tempo.NewNonceReads(view)
	for _, r := range rs {
		settled, err := settledIn(ctx, nonces, r.effects)
		if err != nil {
			return nil, err
		}
		switch {
		case settled:
		case r.credit:
			balance.Add(balance, r.amount)
		default:
			balance.Sub(balance, r.amount)
		}
	}
	return balance, nil
}
