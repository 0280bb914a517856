package safety

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/qc"
)

func kinds(r *Report) []string {
	var out []string
	for _, v := range r.Violations {
		if !slices.Contains(out, v.Kind) {
			out = append(out, v.Kind)
		}
	}
	sort.Strings(out)
	return out
}

// roundTrip passes h through its JSON form.
func roundTrip(t *testing.T, h *History) *History {
	t.Helper()
	var buf bytes.Buffer
	if err := h.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	back, err := ReadHistory(&buf)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	return back
}

func TestFixturePasses(t *testing.T) {
	f := newFixture(t)
	for _, h := range []*History{f.h, roundTrip(t, f.h)} {
		r := Check(h, f.run)
		if !r.OK() {
			var buf bytes.Buffer
			_ = r.WriteText(&buf)
			t.Fatalf("the safe fixture fails:\n%s", buf.String())
		}
		if r.Err() != nil {
			t.Fatalf("Err() = %v on a passing report", r.Err())
		}
		// Expected Byzantine behaviour is reported, not counted as a violation.
		if len(r.Byzantine) != 1 || r.Byzantine[0].Validator != "v3" || !slices.Equal(r.Byzantine[0].DetectedBy, []string{"v0"}) {
			t.Errorf("Byzantine findings = %+v, want one double-sign by v3 detected by v0", r.Byzantine)
		}
		if r.Certificates.Invalid != 1 || r.Certificates.InvalidBySigner["v3"] != 1 {
			t.Errorf("invalid certificates = %d %v, want 1 attributed to v3", r.Certificates.Invalid, r.Certificates.InvalidBySigner)
		}
		// Token balances of alice, bob and carol, and the native balances
		// paying their certified payments' fees.
		if r.QCs.Certified != 3 || r.Balances.Checked != 6 || r.Balances.Unchecked != 0 {
			t.Errorf("certified %d, balances checked %d unchecked %d; want 3, 6, 0", r.QCs.Certified, r.Balances.Checked, r.Balances.Unchecked)
		}
		if f := r.Fees; f == nil || f.Counted != 3 || f.NoTerms != 0 || f.Payers != 3 || f.Unchecked != 0 || f.SettlementMargin != 10*time.Second {
			t.Errorf("fee stats %+v", r.Fees)
		}
		p := r.Payments
		if p.Sent != 7 || p.Accepted != 5 || p.WithQC != 3 || p.Settled != 3 || p.StrandedMinority != 1 ||
			p.RejectedByCode["EQUIVOCATION"] != 1 || p.Errors["connection refused"] != 1 || p.Chained != 1 || p.ConflictGroups != 1 {
			t.Errorf("payment stats = %+v", p)
		}
		for _, it := range r.Invariants {
			if !it.Checked || it.Violations != 0 {
				t.Errorf("invariant %s: checked %v, %d violations", it.ID, it.Checked, it.Violations)
			}
		}
	}
}

// TestCheckDetects injects one fault at a time into the safe fixture; each
// must fail Check with exactly the expected violation kinds, both on the
// history as built and after a JSON round trip.
func TestCheckDetects(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(t *testing.T, f *fixture)
		want   []string
	}{
		{
			name: "conflicting QC for one contention key",
			// dsB reaches a quorum too: the honest v1, which signed dsA,
			// signs dsB as well (with f = 1 a second QC needs an honest
			// double-sign), and the QC is on v2's board.
			mutate: func(t *testing.T, f *fixture) {
				dsB := f.txs["dsB"]
				certs := f.sign(dsB, effects(carol, bob, 5, 0), millis(f.t0.Add(3*time.Second)), "v1", "v2", "v3")
				q := buildQC(t, mustCommittee(t, f.h), certs)
				f.h.AddQC("v2", q)
				f.h.AddStatus(dsB, NodeStatus{Node: "v2", Stage: "FINALIZED", QCHash: q.Hash, QCUnixMillis: millis(f.t0.Add(4 * time.Second))})
			},
			want: []string{KindConflictingQC, KindHonestDoubleSign},
		},
		{
			name: "conflicting QC seen only by a light client",
			mutate: func(t *testing.T, f *fixture) {
				certs := f.sign(f.txs["dsB"], effects(carol, bob, 5, 0), millis(f.t0.Add(3*time.Second)), "v1", "v2", "v3")
				f.h.AddLightClientQC("lc1", qcProto(t, buildQC(t, mustCommittee(t, f.h), certs)))
			},
			// No sidecar reports dsB settled: it cannot be, alice's
			// payment took the nonce.
			want: []string{KindConflictingQC, KindHonestDoubleSign, KindNotSettled},
		},
		{
			name: "honest validator double-signs",
			mutate: func(t *testing.T, f *fixture) {
				// v1 also signs alice's nonce 0 to carol (v1 signed pay1).
				f.h.AddCertificate("v2", f.signer("v1").Sign(txHash("other"), effects(alice, carol, 7, 0), millis(f.t0)))
			},
			want: []string{KindHonestDoubleSign},
		},
		{
			name: "honest double-sign exposed only as evidence (across a restart)",
			mutate: func(t *testing.T, f *fixture) {
				// The board of v2 that held the second certificate was lost
				// in a restart; v0's evidence still has both.
				first := f.signer("v2").Sign(f.txs["pay1"], effects(alice, bob, 10, 0), millis(f.t0))
				second := f.signer("v2").Sign(txHash("pay1-again"), effects(alice, bob, 10, 0), millis(f.t0.Add(30*time.Second)))
				f.h.AddEvidence("v0", qc.Equivocation{First: first, Second: second})
			},
			want: []string{KindHonestDoubleSign},
		},
		{
			name: "the Byzantine validator's double-sign when it is declared honest",
			mutate: func(t *testing.T, f *fixture) {
				for i := range f.h.Committee.Members {
					f.h.Committee.Members[i].Honest = true
				}
			},
			want: []string{KindHonestDoubleSign},
		},
		{
			name: "overdraft",
			mutate: func(t *testing.T, f *fixture) {
				// alice: 100 + 5 credited; 10 + 96 certified (nonce 1 is
				// the stranded payment's).
				tx := txHash("overdraft")
				q := buildQC(t, mustCommittee(t, f.h), f.sign(tx, effects(alice, carol, 96, 2), millis(f.t0.Add(5*time.Second)), "v0", "v1", "v2"))
				f.h.AddQC("v0", q)
				f.h.AddStatus(tx, NodeStatus{Node: "v0", Stage: "FINALIZED", QCHash: q.Hash, QCUnixMillis: millis(f.t0.Add(5 * time.Second))})
			},
			want: []string{KindOverdraft},
		},
		{
			name: "overdraft through a chained payment",
			mutate: func(t *testing.T, f *fixture) {
				// bob holds 5 + 10 from pay1 and already spent 12: 4 more is
				// too much.
				tx := txHash("bob-again")
				q := buildQC(t, mustCommittee(t, f.h), f.sign(tx, effects(bob, alice, 4, 1), millis(f.t0.Add(5*time.Second)), "v0", "v1", "v2"))
				f.h.AddQC("v1", q)
				f.h.AddStatus(tx, NodeStatus{Node: "v1", Stage: "INCLUDED", QCHash: q.Hash})
			},
			want: []string{KindOverdraft},
		},
		{
			name: "tampered light-client QC",
			mutate: func(t *testing.T, f *fixture) {
				raw := qcProto(t, f.qcs["pay1"])
				i := bytes.Index(raw, f.qcs["pay1"].Certs[0].Signature[:])
				raw[i+5] ^= 0x40
				f.h.AddLightClientQC("lc2", raw)
			},
			want: []string{KindLightClientInvalidQC},
		},
		{
			name: "light client accepted bytes that are not a QC",
			mutate: func(t *testing.T, f *fixture) {
				f.h.AddLightClientQC("lc2", []byte{0xff, 0x01, 0x02})
			},
			want: []string{KindLightClientInvalidQC},
		},
		{
			name: "light client accepted a QC with a duplicate signer",
			mutate: func(t *testing.T, f *fixture) {
				f.h.AddLightClientQC("lc2", qcProto(t, withDuplicateSigner(f.qcs["pay2"])))
			},
			want: []string{KindLightClientInvalidQC},
		},
		{
			name: "honest board serves a QC with a duplicate signer",
			mutate: func(t *testing.T, f *fixture) {
				f.h.AddQC("v1", withDuplicateSigner(f.qcs["pay1"]))
			},
			want: []string{KindHonestServedInvalid},
		},
		{
			name: "honest board serves a QC with a foreign signer",
			mutate: func(t *testing.T, f *fixture) {
				q := cloneQC(f.qcs["pay1"])
				outsider := qc.NewSigner(testKey("outsider"), "outsider", testDomain)
				q.Certs[1] = outsider.Sign(q.TxHash, q.Certs[1].Effects, q.Certs[1].CreatedUnixMillis)
				q.Hash = qc.ComputeQCHash(q.TxHash, q.EffectsHash, q.Threshold, q.Certs)
				f.h.AddQC("v0", q)
			},
			want: []string{KindHonestServedInvalid},
		},
		{
			name: "honest board serves a certificate with a bad signature",
			mutate: func(t *testing.T, f *fixture) {
				c := f.signer("v3").Sign(f.txs["pay2"], effects(bob, carol, 12, 0), millis(f.t0))
				c.Signature[10] ^= 1
				f.h.AddCertificate("v1", c)
			},
			want: []string{KindHonestServedInvalid},
		},
		{
			name: "quorum-side payment accepted but never certified",
			mutate: func(t *testing.T, f *fixture) {
				tx := txHash("unfinished")
				f.h.AddCertificate("v1", f.signer("v1").Sign(tx, effects(bob, alice, 1, 1), millis(f.t0.Add(22*time.Second))))
				f.run.Payments = append(f.run.Payments, Payment{Name: "unfinished", TxHash: tx, Sender: bob, SubmittedTo: "v1",
					QuorumSide: true, Phase: "after:partition:halves", Sent: f.t0.Add(22 * time.Second), Outcome: OutcomeCertified})
			},
			want: []string{KindNotCompleted},
		},
		{
			name: "certified payment never settled",
			mutate: func(t *testing.T, f *fixture) {
				for i := range f.h.Txs {
					if f.h.Txs[i].TxHash == f.txs["pay2"] {
						for k := range f.h.Txs[i].Statuses {
							f.h.Txs[i].Statuses[k].Stage = "QUEUED_ONCHAIN"
						}
					}
				}
			},
			want: []string{KindNotSettled},
		},
		{
			name: "QC formed during a partition without a quorum",
			mutate: func(t *testing.T, f *fixture) {
				tx := txHash("partitioned")
				q := buildQC(t, mustCommittee(t, f.h), f.sign(tx, effects(carol, bob, 1, 1), millis(f.t0.Add(14*time.Second)), "v0", "v1", "v2"))
				f.h.AddQC("v0", q)
				f.h.AddStatus(tx, NodeStatus{Node: "v0", Stage: "FINALIZED", QCHash: q.Hash, QCUnixMillis: millis(f.t0.Add(15 * time.Second))})
				f.h.AddStatus(tx, NodeStatus{Node: "v1", Stage: "FINALIZED", QCHash: q.Hash, QCUnixMillis: millis(f.t0.Add(25 * time.Second))})
			},
			want: []string{KindQCWithoutQuorum},
		},
		{
			name: "both payments of a declared double-spend certified",
			mutate: func(t *testing.T, f *fixture) {
				// Two spends of alice's whole balance under different nonces,
				// declared mutually exclusive by the driver.
				c := mustCommittee(t, f.h)
				var payments []Payment
				for i, to := range []qc.Address{bob, carol} {
					tx := txHash("all-in-" + to.Hex())
					q := buildQC(t, c, f.sign(tx, effects(alice, to, 40, uint64(2+i)), millis(f.t0.Add(6*time.Second)), "v0", "v1", "v2"))
					f.h.AddQC("v0", q)
					f.h.AddStatus(tx, NodeStatus{Node: "v0", Stage: "FINALIZED", QCHash: q.Hash})
					payments = append(payments, Payment{Name: "all-in", TxHash: tx, Sender: alice, Conflicting: true, ConflictGroup: "alice-all-in",
						SubmittedTo: "v0", QuorumSide: true, Phase: "baseline", Sent: f.t0.Add(6 * time.Second), Outcome: OutcomeCertified})
				}
				f.run.Payments = append(f.run.Payments, payments...)
			},
			want: []string{KindConflictingQC},
		},
		{
			name: "committee with a duplicate member",
			mutate: func(t *testing.T, f *fixture) {
				f.h.Committee.Members[1].ID = f.h.Committee.Members[0].ID
			},
			want: []string{KindBadHistory},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.mutate(t, f)
			for _, h := range []*History{f.h, roundTrip(t, f.h)} {
				r := Check(h, f.run)
				if r.OK() {
					t.Fatal("Check passed a history with the fault")
				}
				if got := kinds(r); !slices.Equal(got, tc.want) {
					var buf bytes.Buffer
					_ = r.WriteText(&buf)
					t.Fatalf("violation kinds %v, want %v\n%s", got, tc.want, buf.String())
				}
				var text bytes.Buffer
				if err := r.WriteText(&text); err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(text.String(), "SAFETY CHECK: FAIL") || !strings.Contains(text.String(), tc.want[0]) {
					t.Fatalf("text report does not show the failure:\n%s", text.String())
				}
			}
		})
	}
}

func TestOnlyLiveness(t *testing.T) {
	f := newFixture(t)
	if Check(f.h, f.run).OnlyLiveness() {
		t.Fatal("a passing report is not waiting for anything")
	}
	for i := range f.h.Txs {
		f.h.Txs[i].Statuses = nil
	}
	if r := Check(f.h, f.run); !r.OnlyLiveness() {
		t.Fatalf("unsettled payments only: %v", kinds(r))
	}
	f.h.AddQC("v1", withDuplicateSigner(f.qcs["pay1"]))
	if r := Check(f.h, f.run); r.OnlyLiveness() {
		t.Fatalf("a safety violation is not a liveness wait: %v", kinds(r))
	}
}

// TestCheckWithoutRun: history invariants alone; the run-only checks are
// reported as not checked.
func TestCheckWithoutRun(t *testing.T) {
	f := newFixture(t)
	r := Check(f.h, nil)
	if !r.OK() || r.Payments != nil || len(r.Phases) != 0 {
		t.Fatalf("OK %v payments %v phases %d", r.OK(), r.Payments, len(r.Phases))
	}
	for _, it := range r.Invariants {
		if want := it.ID != "§7.5" && it.ID != "§4"; it.Checked != want {
			t.Errorf("invariant %s checked = %v, want %v", it.ID, it.Checked, want)
		}
	}
	// An unsettled QC is not a violation without the run (settling takes
	// time the run knows about).
	for i := range f.h.Txs {
		f.h.Txs[i].Statuses = nil
	}
	if r := Check(f.h, nil); !r.OK() {
		t.Fatalf("violations without a run: %v", kinds(r))
	}
}

func TestCheckNilHistory(t *testing.T) {
	r := Check(nil, nil)
	if r.OK() || kinds(r)[0] != KindBadHistory {
		t.Fatalf("nil history: %v", kinds(r))
	}
}

// TestMissingInitialBalance: an account without an initial balance is
// reported as not checked, not passed silently.
func TestMissingInitialBalance(t *testing.T) {
	f := newFixture(t)
	delete(f.h.InitialBalances, bob)
	r := Check(f.h, f.run)
	if !r.OK() || r.Balances.Unchecked != 1 || r.Balances.Checked != 5 {
		t.Fatalf("OK %v balances %+v", r.OK(), r.Balances)
	}
	if !slices.ContainsFunc(r.Notes, func(n string) bool { return strings.Contains(n, "overdraft not checked") }) {
		t.Fatalf("no note about the unchecked account: %v", r.Notes)
	}
}

// TestSettledByChainNonce: a certified payment no sidecar reports as
// settled counts as on chain when the sender's chain nonce passed it.
func TestSettledByChainNonce(t *testing.T) {
	f := newFixture(t)
	for i := range f.h.Txs {
		if f.h.Txs[i].TxHash == f.txs["pay1"] {
			f.h.Txs[i].Statuses = nil
		}
	}
	if r := Check(f.h, f.run); kinds(r)[0] != KindNotSettled {
		t.Fatalf("kinds %v, want not_settled", kinds(r))
	}
	f.h.ChainNonces = map[qc.Address]uint64{alice: 1}
	r := Check(roundTrip(t, f.h), f.run)
	if !r.OK() || r.Payments.SettledByNonce != 1 {
		t.Fatalf("OK %v settled by nonce %d", r.OK(), r.Payments.SettledByNonce)
	}
}

// TestCompletedOnChainWithoutQC: a quorum-side payment that got no QC is
// complete when its own transaction is on chain with a successful receipt,
// and not when another transaction is, or nothing is recorded.
func TestCompletedOnChainWithoutQC(t *testing.T) {
	chainTx := txHash("unfinished on chain")
	cases := []struct {
		name     string
		chainTx  qc.Hash // the payment's recorded chain hash
		included map[qc.Hash]uint64
		complete bool
	}{
		{"its transaction on chain", chainTx, map[qc.Hash]uint64{chainTx: 40}, true},
		{"another transaction on chain", chainTx, map[qc.Hash]uint64{txHash("other"): 40}, false},
		{"nothing on chain", chainTx, nil, false},
		{"chain hash not recorded", qc.Hash{}, map[qc.Hash]uint64{{}: 40}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tx := txHash("unfinished")
			f.h.AddCertificate("v1", f.signer("v1").Sign(tx, effects(bob, alice, 1, 1), millis(f.t0.Add(22*time.Second))))
			f.run.Payments = append(f.run.Payments, Payment{Name: "unfinished", TxHash: tx, ChainTx: tc.chainTx, Sender: bob, SubmittedTo: "v1",
				QuorumSide: true, Phase: "after:partition:halves", Sent: f.t0.Add(22 * time.Second), Outcome: OutcomeCertified})
			f.h.ChainIncluded = tc.included
			r := Check(roundTrip(t, f.h), roundTripRun(t, f.run))
			var text bytes.Buffer
			if err := r.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			if tc.complete {
				if !r.OK() || r.Payments.OnChainWithoutQC != 1 || !strings.Contains(text.String(), "reached the chain first") {
					t.Fatalf("OK %v, on chain without QC %d\n%s", r.OK(), r.Payments.OnChainWithoutQC, text.String())
				}
				return
			}
			if got := kinds(r); !slices.Equal(got, []string{KindNotCompleted}) || r.Payments.OnChainWithoutQC != 0 {
				t.Fatalf("kinds %v, on chain without QC %d; want not_completed only", got, r.Payments.OnChainWithoutQC)
			}
		})
	}
}

func TestPercentiles(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	p := percentiles(ds)
	if p.N != 100 || p.P50 != 50*time.Millisecond || p.P95 != 95*time.Millisecond || p.P99 != 99*time.Millisecond || p.Max != 100*time.Millisecond {
		t.Fatalf("percentiles %+v", p)
	}
	if one := percentiles([]time.Duration{7}); one.P50 != 7 || one.P99 != 7 {
		t.Fatalf("one sample: %+v", one)
	}
	if none := percentiles(nil); none.N != 0 {
		t.Fatalf("no samples: %+v", none)
	}
}

func TestPhaseStats(t *testing.T) {
	f := newFixture(t)
	r := Check(f.h, f.run)
	names := make([]string, len(r.Phases))
	for i, p := range r.Phases {
		names[i] = p.Name
	}
	if want := []string{"baseline", "partition:halves", "after:partition:halves", "all"}; !slices.Equal(names, want) {
		t.Fatalf("phases %v, want %v", names, want)
	}
	base := r.Phases[0]
	if base.Sent != 5 || base.WithQC != 3 || base.TimeToQC.N != 3 || base.TimeToQC.P50 != 70*time.Millisecond || base.TimeToQC.Max != 90*time.Millisecond {
		t.Fatalf("baseline %+v", base)
	}
	if !r.Phases[1].NoQuorum || r.Phases[1].TimeToQC.N != 0 {
		t.Fatalf("partition %+v", r.Phases[1])
	}
}

func mustCommittee(t testing.TB, h *History) *qc.Committee {
	t.Helper()
	c, err := h.QCommittee()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func cloneQC(q *qc.QC) *qc.QC {
	c := *q
	c.Certs = slices.Clone(q.Certs)
	return &c
}

// withDuplicateSigner replaces the last certificate with a copy of the
// first, keeping the count at the quorum, and recomputes qc_hash so only
// the duplicate is wrong.
func withDuplicateSigner(q *qc.QC) *qc.QC {
	c := cloneQC(q)
	c.Certs[len(c.Certs)-1] = c.Certs[0]
	c.Hash = qc.ComputeQCHash(c.TxHash, c.EffectsHash, c.Threshold, c.Certs)
	return c
}

var _ = ed25519.PublicKey(nil)
var _ = sha256.Sum256

// TestByzantineStatusDoesNotSettle: only honest sidecars' word counts for
// settlement.
func TestByzantineStatusDoesNotSettle(t *testing.T) {
	f := newFixture(t)
	for i := range f.h.Txs {
		if f.h.Txs[i].TxHash == f.txs["pay2"] {
			f.h.Txs[i].Statuses = []NodeStatus{{Node: "v3", Stage: "FINALIZED"}}
		}
	}
	if got := kinds(Check(f.h, f.run)); !slices.Equal(got, []string{KindNotSettled}) {
		t.Fatalf("kinds %v, want not_settled", got)
	}
}
