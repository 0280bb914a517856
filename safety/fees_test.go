package safety

import (
	"bytes"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/qc"
)

var (
	dave = testAddr("dave")
	erin = testAddr("erin")
	// sponsor pays other accounts' fees in feeUSD.
	sponsor = testAddr("sponsor")
	feeUSD  = qc.Address{0x20, 0xc0, 19: 0x07}
)

// tempoFee is the maximum fee of a fixture payment under Tempo's rule, in
// units of a 6-decimal USD token: ceil(250,000 × 100 gwei / 10^12).
const tempoFee = 25_000

// certify adds a payment certified at `at` by signers (default v0 v1 v2),
// finalized on the honest boards, to the history and the run, and returns
// its transaction.
func (f *fixture) certify(t *testing.T, name string, e qc.Effects, at time.Time, fee *PaymentFee, parent qc.Hash, signers ...string) qc.Hash {
	t.Helper()
	if len(signers) == 0 {
		signers = []string{"v0", "v1", "v2"}
	}
	tx := txHash(name)
	f.certifyWith(t, name, e, at, fee, parent, f.sign(tx, e, millis(at), signers...))
	return tx
}

// certifyWith is certify with the QC's certificates given.
func (f *fixture) certifyWith(t *testing.T, name string, e qc.Effects, at time.Time, fee *PaymentFee, parent qc.Hash, certs []qc.Certificate) {
	t.Helper()
	tx := certs[0].TxHash
	q := buildQC(t, mustCommittee(t, f.h), certs)
	for _, src := range []string{"v0", "v1", "v2"} {
		f.h.AddQC(src, q)
		f.h.AddStatus(tx, NodeStatus{Node: src, Stage: "FINALIZED", BlockHeight: 30, CertCount: len(certs), QCHash: q.Hash,
			QCUnixMillis: millis(at.Add(40 * time.Millisecond))})
	}
	f.run.Payments = append(f.run.Payments, Payment{Name: name, TxHash: tx, Sender: e.Sender, ParentTx: parent, SubmittedTo: "v0",
		QuorumSide: true, Phase: "baseline", Sent: at.Add(-20 * time.Millisecond), QCAt: at.Add(50 * time.Millisecond),
		Outcome: OutcomeCertified, Fee: fee, FeeTight: strings.HasPrefix(name, "feetight:")})
	f.qcs[name] = q
	f.txs[name] = tx
}

// fund sets account's initial balances: tokens of DefaultToken and wei of
// the native currency.
func (f *fixture) fund(account qc.Address, tokens int64, wei *big.Int) {
	f.h.InitialBalances[account] = big.NewInt(tokens)
	f.h.InitialFeeBalances[NativeToken][account] = new(big.Int).Set(wei)
}

// feeTight is the docker suite's fee-tight pattern on the fixture: dave
// holds exactly the amount in tokens and daveWei natively, pays it all to
// erin, who holds nothing in tokens and erinWei natively and spends what
// she received with dave's QC as parent.
func feeTight(t *testing.T, f *fixture, daveWei, erinWei *big.Int) {
	t.Helper()
	f.fund(dave, 10, daveWei)
	f.fund(erin, 0, erinWei)
	parent := f.certify(t, "feetight:dave->erin", effects(dave, erin, 10, 0), f.t0.Add(5*time.Second), nativeFee(dave), qc.Hash{})
	f.certify(t, "feetight:erin->alice", effects(erin, alice, 10, 0), f.t0.Add(6*time.Second), nativeFee(erin), parent)
}

func minus(a *big.Int, b int64) *big.Int { return new(big.Int).Sub(a, big.NewInt(b)) }

// tempo76 is the fee terms of a 0x76 payment from sender paying its fee in
// the token it transfers, valid in [after, before) (unix seconds, 0: unset).
func tempo76(sender qc.Address, before, after uint64) *PaymentFee {
	return &PaymentFee{Payer: sender, Token: DefaultToken, Max: big.NewInt(tempoFee), ValidBefore: before, ValidAfter: after}
}

func unixSec(t time.Time) uint64 { return uint64(t.Unix()) }

// TestFeeRule applies one change at a time to the safe fixture (whose
// payments record native fee terms); each must give exactly the expected
// violation kinds, on the history and run as built and after a JSON round
// trip of both.
func TestFeeRule(t *testing.T) {
	at := func(f *fixture) time.Time { return f.t0.Add(5 * time.Second) }
	cases := []struct {
		name   string
		mutate func(t *testing.T, f *fixture)
		want   []string
		check  func(t *testing.T, f *fixture, r *Report)
	}{
		{
			name:   "fee-tight sender and chained recipient holding exactly the fee",
			mutate: func(t *testing.T, f *fixture) { feeTight(t, f, testFee, testFee) },
			check: func(t *testing.T, f *fixture, r *Report) {
				p := r.Payments
				if p.FeeTight != 2 || p.FeeTightWithQC != 2 || p.FeeTightSettled != 2 || len(p.FeeTightRejectedByCode) != 0 {
					t.Errorf("fee-tight stats %+v", p)
				}
				if r.Fees.Counted != 5 || r.Fees.Payers != 5 {
					t.Errorf("fee stats %+v, want 5 counted on 5 payers", r.Fees)
				}
			},
		},
		{
			name:   "fee-tight sender one wei short of the fee",
			mutate: func(t *testing.T, f *fixture) { feeTight(t, f, minus(testFee, 1), testFee) },
			want:   []string{KindFeeUncovered},
			check: func(t *testing.T, f *fixture, r *Report) {
				v := r.Violations[0]
				if v.Account != dave.Hex() || !slices.Equal(v.TxHashes, []string{f.txs["feetight:dave->erin"].Hex()}) ||
					!strings.Contains(v.Message, "feetight:dave->erin") || !strings.Contains(v.Message, "by 1:") ||
					v.Invariant != "§7.3/§4" {
					t.Errorf("violation %+v", v)
				}
			},
		},
		{
			name:   "fee-tight sender holding only the amount",
			mutate: func(t *testing.T, f *fixture) { feeTight(t, f, new(big.Int), testFee) },
			want:   []string{KindFeeUncovered},
		},
		{
			name:   "chained recipient spends its credit without the fee",
			mutate: func(t *testing.T, f *fixture) { feeTight(t, f, testFee, new(big.Int)) },
			want:   []string{KindFeeUncovered},
			check: func(t *testing.T, f *fixture, r *Report) {
				if v := r.Violations[0]; v.Account != erin.Hex() || !strings.Contains(v.Message, "feetight:erin->alice") {
					t.Errorf("violation %+v", v)
				}
			},
		},
		{
			name: "fee in the transferred token, balance = amount",
			mutate: func(t *testing.T, f *fixture) {
				f.fund(dave, 1_000_000, new(big.Int))
				f.certify(t, "tempo:dave", effects(dave, bob, 1_000_000, 0), at(f), tempo76(dave, 0, 0), qc.Hash{})
			},
			want: []string{KindFeeUncovered},
		},
		{
			name: "fee in the transferred token, balance = amount + fee",
			mutate: func(t *testing.T, f *fixture) {
				f.fund(dave, 1_000_000+tempoFee, new(big.Int))
				f.certify(t, "tempo:dave", effects(dave, bob, 1_000_000, 0), at(f), tempo76(dave, 0, 0), qc.Hash{})
			},
		},
		{
			name: "a received credit pays the fee in the transferred token",
			mutate: func(t *testing.T, f *fixture) {
				// bob holds 5 + 10 from pay1 and spent 12: 3 left, enough
				// for 2 units and a fee of 1.
				f.certify(t, "tempo:bob", effects(bob, carol, 2, 1), at(f),
					&PaymentFee{Payer: bob, Token: DefaultToken, Max: big.NewInt(1)}, f.txs["pay1"])
			},
		},
		{
			name: "sponsor cannot cover the fee it pays",
			mutate: func(t *testing.T, f *fixture) {
				f.fund(dave, 1_000_000, new(big.Int))
				f.h.InitialFeeBalances[feeUSD] = map[qc.Address]*big.Int{sponsor: big.NewInt(tempoFee - 1)}
				f.certify(t, "sponsored", effects(dave, bob, 1_000_000, 0), at(f),
					&PaymentFee{Payer: sponsor, Token: feeUSD, Max: big.NewInt(tempoFee)}, qc.Hash{})
			},
			want: []string{KindFeeUncovered},
			check: func(t *testing.T, f *fixture, r *Report) {
				if v := r.Violations[0]; v.Account != sponsor.Hex() {
					t.Errorf("violation on %s, want the sponsor", v.Account)
				}
			},
		},
		{
			name: "sponsor covers the fee",
			mutate: func(t *testing.T, f *fixture) {
				f.fund(dave, 1_000_000, new(big.Int))
				f.h.InitialFeeBalances[feeUSD] = map[qc.Address]*big.Int{sponsor: big.NewInt(tempoFee)}
				f.certify(t, "sponsored", effects(dave, bob, 1_000_000, 0), at(f),
					&PaymentFee{Payer: sponsor, Token: feeUSD, Max: big.NewInt(tempoFee)}, qc.Hash{})
			},
		},
		{
			name: "an amount beyond the balance stays an overdraft",
			mutate: func(t *testing.T, f *fixture) {
				f.fund(dave, 9, new(big.Int))
				f.certify(t, "tempo:dave", effects(dave, bob, 10, 0), at(f), tempo76(dave, 0, 0), qc.Hash{})
			},
			want: []string{KindOverdraft},
		},
		{
			name: "0x76 certified within the margin of valid_before",
			mutate: func(t *testing.T, f *fixture) {
				f.fund(dave, 1_000_000, new(big.Int))
				f.certify(t, "tempo76:late", effects(dave, bob, 1, 0), at(f), tempo76(dave, unixSec(at(f))+9, 0), qc.Hash{})
			},
			want: []string{KindInsideMargin},
			check: func(t *testing.T, f *fixture, r *Report) {
				v := r.Violations[0]
				if v.Invariant != "§4" || !slices.Equal(v.Validators, []string{"v0", "v1", "v2"}) || !strings.Contains(v.Message, "valid_before") {
					t.Errorf("violation %+v", v)
				}
				for _, it := range r.Invariants {
					if it.ID == "§4" && it.Violations != 1 {
						t.Errorf("§4 row %+v", it)
					}
				}
			},
		},
		{
			name: "0x76 certified more than the margin before valid_after",
			mutate: func(t *testing.T, f *fixture) {
				f.fund(dave, 1_000_000, new(big.Int))
				f.certify(t, "tempo76:early", effects(dave, bob, 1, 0), at(f), tempo76(dave, 0, unixSec(at(f))+11), qc.Hash{})
			},
			want: []string{KindInsideMargin},
		},
		{
			name: "0x76 certified inside its window",
			mutate: func(t *testing.T, f *fixture) {
				f.fund(dave, 1_000_000, new(big.Int))
				f.certify(t, "tempo76:ok", effects(dave, bob, 1, 0), at(f), tempo76(dave, unixSec(at(f))+11, unixSec(at(f))+10), qc.Hash{})
			},
			check: func(t *testing.T, f *fixture, r *Report) {
				if r.Fees.Windows != 1 {
					t.Errorf("windows judged %d, want 1", r.Fees.Windows)
				}
			},
		},
		{
			name: "only the Byzantine signer signed inside the margin",
			mutate: func(t *testing.T, f *fixture) {
				f.fund(dave, 1_000_000, new(big.Int))
				// v0 and v1 sign 4 s before valid_before − margin, v3 5 s
				// later, inside the margin.
				e, tx := effects(dave, bob, 1, 0), txHash("tempo76:byz")
				certs := append(f.sign(tx, e, millis(at(f)), "v0", "v1"), f.signer("v3").Sign(tx, e, millis(at(f).Add(5*time.Second))))
				f.certifyWith(t, "tempo76:byz", e, at(f), tempo76(dave, unixSec(at(f))+14, 0), qc.Hash{}, certs)
			},
		},
		{
			name: "the same late certificate from a validator run honestly",
			mutate: func(t *testing.T, f *fixture) {
				for i := range f.h.Committee.Members {
					f.h.Committee.Members[i].Honest = true
				}
				f.fund(dave, 1_000_000, new(big.Int))
				e, tx := effects(dave, bob, 1, 0), txHash("tempo76:v3")
				certs := append(f.sign(tx, e, millis(at(f)), "v0", "v1"), f.signer("v3").Sign(tx, e, millis(at(f).Add(5*time.Second))))
				f.certifyWith(t, "tempo76:v3", e, at(f), tempo76(dave, unixSec(at(f))+14, 0), qc.Hash{}, certs)
			},
			// v3's double-sign in the fixture is an honest one now.
			want: []string{KindInsideMargin, KindHonestDoubleSign},
			check: func(t *testing.T, f *fixture, r *Report) {
				for _, v := range r.Violations {
					if v.Kind == KindInsideMargin && !slices.Equal(v.Validators, []string{"v3"}) {
						t.Errorf("violation names %v, want v3 only", v.Validators)
					}
				}
			},
		},
		{
			name: "the committee's margin is the one judged",
			mutate: func(t *testing.T, f *fixture) {
				f.h.Committee.SettlementMargin = 30 * time.Second
				f.fund(dave, 1_000_000, new(big.Int))
				f.certify(t, "tempo76:late", effects(dave, bob, 1, 0), at(f), tempo76(dave, unixSec(at(f))+20, 0), qc.Hash{})
			},
			want: []string{KindInsideMargin},
		},
		{
			name: "a history without a recorded margin is judged with the default",
			mutate: func(t *testing.T, f *fixture) {
				f.h.Committee.SettlementMargin = 0
				f.fund(dave, 1_000_000, new(big.Int))
				f.certify(t, "tempo76:late", effects(dave, bob, 1, 0), at(f), tempo76(dave, unixSec(at(f))+9, 0), qc.Hash{})
			},
			want: []string{KindInsideMargin},
		},
		{
			name: "a run stored before fee terms were recorded",
			mutate: func(t *testing.T, f *fixture) {
				for i := range f.run.Payments {
					f.run.Payments[i].Fee = nil
				}
				f.h.InitialFeeBalances = nil
				f.h.Committee.SettlementMargin = 0
			},
			check: func(t *testing.T, f *fixture, r *Report) {
				if r.Fees.Counted != 0 || r.Fees.NoTerms != 3 || r.Balances.Checked != 3 {
					t.Errorf("fees %+v, balances %+v", r.Fees, r.Balances)
				}
				if !slices.ContainsFunc(r.Notes, func(n string) bool { return strings.Contains(n, "fees not checked") }) {
					t.Errorf("no note about the missing fee terms: %v", r.Notes)
				}
				for _, it := range r.Invariants {
					if want := it.ID != "§4"; it.Checked != want {
						t.Errorf("invariant %s checked = %v, want %v", it.ID, it.Checked, want)
					}
				}
			},
		},
		{
			name:   "a payer without an initial balance of its fee token",
			mutate: func(t *testing.T, f *fixture) { delete(f.h.InitialFeeBalances[NativeToken], bob) },
			check: func(t *testing.T, f *fixture, r *Report) {
				if r.Fees.Unchecked != 1 || r.Fees.Payers != 3 {
					t.Errorf("fee stats %+v", r.Fees)
				}
				if !slices.ContainsFunc(r.Notes, func(n string) bool { return strings.Contains(n, "maximum fees not checked for 1 payer") }) {
					t.Errorf("no note about the unchecked payer: %v", r.Notes)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.mutate(t, f)
			for i, hr := range []struct {
				h   *History
				run *Run
			}{{f.h, f.run}, {roundTrip(t, f.h), roundTripRun(t, f.run)}} {
				r := Check(hr.h, hr.run)
				var text bytes.Buffer
				if err := r.WriteText(&text); err != nil {
					t.Fatal(err)
				}
				if got := kinds(r); !slices.Equal(got, tc.want) {
					t.Fatalf("pass %d: violation kinds %v, want %v\n%s", i, got, tc.want, text.String())
				}
				if len(tc.want) > 0 && !strings.Contains(text.String(), tc.want[0]) {
					t.Fatalf("text report does not show the violation:\n%s", text.String())
				}
				if tc.check != nil {
					tc.check(t, f, r)
				}
				if t.Failed() {
					t.Logf("report:\n%s", text.String())
					return
				}
			}
		})
	}
}

// TestMarginClockTolerance: the window's edges widen by the clock
// tolerance, and only by it.
func TestMarginClockTolerance(t *testing.T) {
	for _, tc := range []struct {
		name      string
		offset    time.Duration // certificate time minus (valid_before − margin)
		tolerance time.Duration
		flagged   bool
	}{
		{"one millisecond before the edge, no tolerance", -time.Millisecond, 0, false},
		{"at the edge, no tolerance", 0, 0, true},
		{"at the edge, within the tolerance", 0, 250 * time.Millisecond, false},
		{"just within the tolerance", 249 * time.Millisecond, 250 * time.Millisecond, false},
		{"at the tolerance", 250 * time.Millisecond, 250 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.fund(dave, 1_000_000, new(big.Int))
			before := unixSec(f.t0) + 20
			at := time.Unix(int64(before), 0).Add(-10 * time.Second).Add(tc.offset)
			f.certify(t, "tempo76", effects(dave, bob, 1, 0), at, tempo76(dave, before, 0), qc.Hash{})
			r := CheckWith(f.h, f.run, CheckOptions{ClockTolerance: tc.tolerance})
			if got := slices.Contains(kinds(r), KindInsideMargin); got != tc.flagged {
				t.Fatalf("flagged %v, want %v: %v", got, tc.flagged, kinds(r))
			}
		})
	}
}

// TestRunJSONWithoutFees: a run.json written before fee terms were
// recorded reads, and one with them round-trips.
func TestRunJSONWithoutFees(t *testing.T) {
	old := `{"version": 1, "phases": [], "payments": [{"name": "p", "tx_hash": "0x` + strings.Repeat("ab", 32) +
		`", "sender": "` + alice.Hex() + `", "submitted_to": "v0", "quorum_side": true, "phase": "baseline", "outcome": "certified"}]}`
	r, err := ReadRun(strings.NewReader(old))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Payments) != 1 || r.Payments[0].Fee != nil || r.Payments[0].FeeTight {
		t.Fatalf("payments %+v", r.Payments)
	}
	f := newFixture(t)
	f.run.Payments[0].Fee = &PaymentFee{Payer: sponsor, Token: feeUSD, Max: big.NewInt(7), ValidBefore: 1_800_000_100, ValidAfter: 1_800_000_000}
	f.run.Payments[0].FeeTight = true
	back := roundTripRun(t, f.run)
	if got, want := back.Payments[0].Fee, f.run.Payments[0].Fee; got == nil || got.Payer != want.Payer || got.Token != want.Token ||
		got.Max.Cmp(want.Max) != 0 || got.ValidBefore != want.ValidBefore || got.ValidAfter != want.ValidAfter || !back.Payments[0].FeeTight {
		t.Fatalf("fee terms %+v after a round trip, want %+v", got, want)
	}
	bad := strings.Replace(old, `"outcome"`, `"fee": {"payer": "`+alice.Hex()+`", "token": "`+NativeToken.Hex()+`", "max": "-1"}, "outcome"`, 1)
	if _, err := ReadRun(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "payments[0].fee.max") {
		t.Fatalf("a negative maximum fee reads: %v", err)
	}
}

// TestHistoryMergeKeepsFeeBalances: merged histories keep the fee-token
// balances and the margin.
func TestHistoryMergeKeepsFeeBalances(t *testing.T) {
	f := newFixture(t)
	h := NewHistory(f.h.Committee, DefaultToken)
	h.Committee.SettlementMargin = 0
	if err := h.Merge(roundTrip(t, f.h)); err != nil {
		t.Fatal(err)
	}
	if h.Committee.SettlementMargin != 10*time.Second || h.InitialFeeBalances[NativeToken][alice].Cmp(ether(1)) != 0 {
		t.Fatalf("margin %s, native balances %v", h.Committee.SettlementMargin, h.InitialFeeBalances)
	}
}
