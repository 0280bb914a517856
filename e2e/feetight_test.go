package main

import (
	"bytes"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/allegro-mesh/allegro/client"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/safety"
	"github.com/allegro-mesh/allegro/tempo/devchain"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// The maximum fee the validators reserve for a driver payment on the dev
// chain: 250,000 gas × 100 gwei.
var wantMaxFee = big.NewInt(250_000 * 100_000_000_000)

func TestPayMaxFee(t *testing.T) {
	if payMaxFee().Cmp(wantMaxFee) != 0 {
		t.Fatalf("payMaxFee() = %s, want %s", payMaxFee(), wantMaxFee)
	}
}

// TestFeeTermsFromSignedPayment: the fee terms the driver records are read
// from the transaction it signed, with the gas limit and fee cap it used.
func TestFeeTermsFromSignedPayment(t *testing.T) {
	key := devkit.DeterministicKey("fee-terms")
	from := &account{name: "payer", key: key, addr: crypto.PubkeyToAddress(key.PublicKey), nonce: 3}
	d := &driver{chainID: devchain.DefaultChainID, token: devkit.TokenAddress}
	req, txHash, fee, err := d.newPayment(from, common.Address{0x42}, devkit.Dollar)
	if err != nil {
		t.Fatal(err)
	}
	if txHash.IsZero() || fee.Payer != qc.Address(from.addr) || fee.Token != safety.NativeToken || fee.Max.Cmp(wantMaxFee) != 0 ||
		fee.ValidBefore != 0 || fee.ValidAfter != 0 {
		t.Fatalf("fee terms %+v, want %s wei paid natively by %s", fee, wantMaxFee, from.addr)
	}
	// What the validators compute from the same transaction.
	var tx types.Transaction
	if err := tx.UnmarshalBinary(req.GetTx().GetTempoTx().GetData()); err != nil {
		t.Fatal(err)
	}
	if tx.Gas() != payGasLimit || tx.GasFeeCap().Cmp(payMaxFeePerGas) != 0 || tx.Nonce() != 3 {
		t.Fatalf("signed gas %d, fee cap %s, nonce %d", tx.Gas(), tx.GasFeeCap(), tx.Nonce())
	}

	// Other terms are read, not assumed.
	other, err := client.NewEVMPayment(key, devchain.DefaultChainID, 0, devkit.TokenAddress, common.Address{0x42}, 1,
		client.WithGasLimit(60_000), client.WithFees(big.NewInt(7), big.NewInt(1)))
	if err != nil {
		t.Fatal(err)
	}
	if f, err := feeTerms(other); err != nil || f.Max.Cmp(big.NewInt(60_000*7)) != 0 {
		t.Fatalf("fee terms %+v, %v; want 420000 wei", f, err)
	}
	tempoReq, err := client.NewTempoPayment(key, devchain.DefaultChainID, qc.NonceKey{}, 0, devkit.TokenAddress, common.Address{0x42}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := feeTerms(tempoReq); err == nil {
		t.Fatal("native fee terms read from a 0x76 transaction")
	}
}

// TestFeeTightPlan: each set funds its accounts with exactly the amount,
// the fee, both or neither, and a payment is planned to be certified
// exactly when its payer can pay amount and fee.
func TestFeeTightPlan(t *testing.T) {
	const amount = devkit.Dollar
	p := newFeeTightPlan(2, amount, wantMaxFee, 42)
	if len(p.accounts) != 12 || len(p.steps) != 12 {
		t.Fatalf("%d accounts, %d steps; want 12 and 12", len(p.accounts), len(p.steps))
	}
	want := map[string]struct {
		tokens uint64
		wei    *big.Int
	}{
		roleNoFee: {amount, new(big.Int)}, roleShort: {amount, new(big.Int).Sub(wantMaxFee, big.NewInt(1))},
		roleExactA: {amount, wantMaxFee}, roleHeirFee: {0, wantMaxFee}, roleExactB: {amount, wantMaxFee}, roleHeirNoFee: {0, new(big.Int)},
	}
	addrs := make(map[common.Address]bool)
	for _, a := range p.accounts {
		role := a.name[strings.Index(a.name, "-")+1:]
		w, ok := want[role]
		if !ok || a.tokens != w.tokens || a.wei.Cmp(w.wei) != 0 {
			t.Errorf("%s funded with %d tokens and %s wei", a.name, a.tokens, a.wei)
		}
		if addrs[a.addr] || a.addr != crypto.PubkeyToAddress(a.key.PublicKey) {
			t.Errorf("%s: address %s repeated or not its key's", a.name, a.addr)
		}
		addrs[a.addr] = true
	}
	// Token balances as the plan runs: a certified payment moves its
	// amount (its QC is what a child spends).
	tokens := make(map[string]uint64)
	for _, a := range p.accounts {
		tokens[a.name] = a.tokens
	}
	certified := make(map[string]bool)
	for _, st := range p.steps {
		if !strings.HasPrefix(st.label, feeTightLabelPrefix) || st.amount != amount {
			t.Errorf("step %+v", st)
		}
		from := p.account(st.from)
		if from == nil || (st.to != "" && p.account(st.to) == nil) {
			t.Fatalf("step %s names an unknown account", st.label)
		}
		if st.parent != "" && !certified[st.parent] {
			t.Errorf("%s: parent %s is not a certified step before it", st.label, st.parent)
		}
		canPay := tokens[st.from] >= st.amount && from.wei.Cmp(wantMaxFee) >= 0
		if wantCert := st.expect == expectQC; wantCert != canPay || (!canPay && st.expect != expectRefused) {
			t.Errorf("%s expects %s; its payer can pay amount and fee: %v", st.label, st.expect, canPay)
		}
		if canPay {
			certified[st.label] = true
			tokens[st.from] -= st.amount
			if st.to != "" {
				tokens[st.to] += st.amount
			}
		}
	}
	// Both kinds of chained child are planned: one with the fee, one without.
	var chained []string
	for _, st := range p.steps[:6] {
		if st.parent != "" {
			chained = append(chained, st.expect)
		}
	}
	if len(chained) != 2 || chained[0] != expectQC || chained[1] != expectRefused {
		t.Errorf("chained children expect %v", chained)
	}
	if q := newFeeTightPlan(1, amount, wantMaxFee, 42); q.accounts[0].addr != p.accounts[0].addr {
		t.Error("the same seed gives other accounts")
	}
	if q := newFeeTightPlan(1, amount, wantMaxFee, 43); q.accounts[0].addr == p.accounts[0].addr {
		t.Error("another seed gives the same accounts")
	}
}

// TestFundingTxs: one token transfer per account holding tokens and one
// native transfer per account holding wei, at consecutive nonces, signed
// by the funder.
func TestFundingTxs(t *testing.T) {
	p := newFeeTightPlan(1, devkit.Dollar, wantMaxFee, 1)
	funder := devkit.LoadAccounts(1)[0]
	chainID := big.NewInt(devchain.DefaultChainID)
	txs, err := fundingTxs(funder.Key, 7, chainID, p.accounts)
	if err != nil {
		t.Fatal(err)
	}
	tokens := make(map[common.Address]*big.Int)
	wei := make(map[common.Address]*big.Int)
	for i, tx := range txs {
		if tx.Nonce() != uint64(7+i) {
			t.Errorf("tx %d has nonce %d", i, tx.Nonce())
		}
		if from, err := types.Sender(types.LatestSignerForChainID(chainID), tx); err != nil || from != funder.Address {
			t.Errorf("tx %d signed by %s (%v)", i, from, err)
		}
		switch *tx.To() {
		case devkit.TokenAddress:
			data := tx.Data()
			if len(data) != 68 || !bytes.Equal(data[:4], devkit.SelectorTransfer[:]) || tx.Value().Sign() != 0 {
				t.Fatalf("tx %d: token call %x value %s", i, data, tx.Value())
			}
			tokens[common.BytesToAddress(data[4:36])] = new(big.Int).SetBytes(data[36:68])
		default:
			if tx.Gas() != nativeTransferGas || len(tx.Data()) != 0 {
				t.Fatalf("tx %d: native transfer with gas %d and data %x", i, tx.Gas(), tx.Data())
			}
			wei[*tx.To()] = tx.Value()
		}
	}
	n := 0
	for _, a := range p.accounts {
		if a.tokens > 0 {
			n++
			if tokens[a.addr] == nil || tokens[a.addr].Uint64() != a.tokens {
				t.Errorf("%s: funded with %v tokens, want %d", a.name, tokens[a.addr], a.tokens)
			}
		} else if tokens[a.addr] != nil {
			t.Errorf("%s: token transfer of %s, want none", a.name, tokens[a.addr])
		}
		if a.wei.Sign() > 0 {
			n++
			if wei[a.addr] == nil || wei[a.addr].Cmp(a.wei) != 0 {
				t.Errorf("%s: funded with %v wei, want %s", a.name, wei[a.addr], a.wei)
			}
		} else if wei[a.addr] != nil {
			t.Errorf("%s: native transfer of %s, want none", a.name, wei[a.addr])
		}
	}
	if len(txs) != n {
		t.Fatalf("%d funding transactions, want %d", len(txs), n)
	}
}

func TestCheckFunded(t *testing.T) {
	p := newFeeTightPlan(1, devkit.Dollar, wantMaxFee, 1)
	tokens, native := make(map[qc.Address]*big.Int), make(map[qc.Address]*big.Int)
	for _, a := range p.accounts {
		tokens[qc.Address(a.addr)] = new(big.Int).SetUint64(a.tokens)
		native[qc.Address(a.addr)] = new(big.Int).Set(a.wei)
	}
	if err := p.checkFunded(tokens, native); err != nil {
		t.Fatal(err)
	}
	exact := qc.Address(p.account("feetight1-" + roleExactA).addr)
	native[exact] = new(big.Int).Add(wantMaxFee, big.NewInt(1))
	if err := p.checkFunded(tokens, native); err == nil || !strings.Contains(err.Error(), "feetight1-exact-a") {
		t.Fatalf("one wei too many passes: %v", err)
	}
	delete(native, exact)
	if err := p.checkFunded(tokens, native); err == nil {
		t.Fatal("a missing balance passes")
	}
}

// TestFeeTightVerdict: a planned QC must be seen, a planned refusal must be
// the outcome.
func TestFeeTightVerdict(t *testing.T) {
	p := newFeeTightPlan(1, devkit.Dollar, wantMaxFee, 1)
	asPlanned := func() []safety.Payment {
		var out []safety.Payment
		for _, st := range p.steps {
			pay := safety.Payment{Name: st.label, Outcome: st.expect, FeeTight: true}
			if st.expect == expectQC {
				pay.Outcome, pay.QCAt = safety.OutcomeCertified, time.Unix(1, 0)
			}
			out = append(out, pay)
		}
		return append(out, safety.Payment{Name: "lane0#1", Outcome: "rejected:EQUIVOCATION"})
	}
	if lines, ok := feeTightVerdict(p, asPlanned()); !ok || len(lines) != len(p.steps) || strings.Contains(strings.Join(lines, "\n"), "UNEXPECTED") {
		t.Fatalf("as planned: ok %v\n%s", ok, strings.Join(lines, "\n"))
	}
	for _, tc := range []struct {
		name   string
		mutate func(ps []safety.Payment) []safety.Payment
		label  string
	}{
		{"a payer with exactly the fee refused", func(ps []safety.Payment) []safety.Payment {
			ps[2].QCAt, ps[2].Outcome = time.Time{}, expectRefused
			return ps
		}, "feetight:1/exact-a"},
		{"a payer short of the fee certified", func(ps []safety.Payment) []safety.Payment {
			ps[1].QCAt, ps[1].Outcome = time.Unix(2, 0), safety.OutcomeCertified
			return ps
		}, "feetight:1/short"},
		{"a refusal for another reason", func(ps []safety.Payment) []safety.Payment {
			ps[0].Outcome = "rejected:NONCE_SEQ_TOO_LOW"
			return ps
		}, "feetight:1/nofee"},
		{"accepted but never certified", func(ps []safety.Payment) []safety.Payment {
			ps[3].QCAt = time.Time{}
			return ps
		}, "feetight:1/heir-fee"},
		{"a step not sent", func(ps []safety.Payment) []safety.Payment { return append(ps[:5:5], ps[6:]...) }, "feetight:1/heir-nofee"},
	} {
		lines, ok := feeTightVerdict(p, tc.mutate(asPlanned()))
		if ok {
			t.Errorf("%s: verdict ok", tc.name)
			continue
		}
		for _, l := range lines {
			if strings.Contains(l, "UNEXPECTED") != strings.HasPrefix(l, tc.label+" ") {
				t.Errorf("%s: line %q", tc.name, l)
			}
		}
	}
}
