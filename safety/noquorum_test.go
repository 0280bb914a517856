package safety

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/qc"
)

// The fixture's no-quorum phase runs from t0+10 s to t0+20 s.
const (
	phaseStart = 10 * time.Second
	phaseEnd   = 20 * time.Second
)

// signedAt is one certificate of a crafted payment: its signer and the
// creation time it carries, as an offset from the fixture's t0.
type signedAt struct {
	signer string
	at     time.Duration
}

// certify signs a payment of 1 from carol to bob at nonce seq with the
// given certificates, puts them on every board and returns the QC they
// form. Nobody holds the QC yet (see hold).
func certify(t *testing.T, f *fixture, label string, seq uint64, certs []signedAt) (qc.Hash, *qc.QC) {
	t.Helper()
	tx := txHash(label)
	e := effects(carol, bob, 1, seq)
	var cs []qc.Certificate
	for _, c := range certs {
		cert := f.signer(c.signer).Sign(tx, e, millis(f.t0.Add(c.at)))
		cs = append(cs, cert)
		for _, src := range []string{"v0", "v1", "v2", "v3"} {
			f.h.AddCertificate(src, cert)
		}
	}
	q := buildQC(t, mustCommittee(t, f.h), cs)
	f.txs[label] = tx
	return tx, q
}

// hold has each node serve q, and report that it got it at the offset
// from t0 and that the transaction is final.
func hold(f *fixture, q *qc.QC, at time.Duration, nodes ...string) {
	for _, n := range nodes {
		f.h.AddQC(n, q)
		f.h.AddStatus(q.TxHash, NodeStatus{Node: n, Stage: "FINALIZED", BlockHeight: 40, CertCount: len(q.Certs), QCHash: q.Hash,
			QCUnixMillis: millis(f.t0.Add(at)), FirstSeenUnixMillis: millis(f.t0.Add(at - 500*time.Millisecond))})
	}
}

// paid records the driver's payment of tx: sent at the offset sent, its
// client got a QC at qcAt (no QC when zero).
func paid(f *fixture, label string, tx qc.Hash, phase string, sent, qcAt time.Duration) {
	p := Payment{Name: label, TxHash: tx, Sender: carol, SubmittedTo: "v0", QuorumSide: phase != "partition:halves",
		Phase: phase, Sent: f.t0.Add(sent), Outcome: OutcomeCertified}
	if qcAt != 0 {
		p.QCAt = f.t0.Add(qcAt)
	}
	f.run.Payments = append(f.run.Payments, p)
}

// roundTripRun passes run through its JSON form.
func roundTripRun(t *testing.T, run *Run) *Run {
	t.Helper()
	var buf bytes.Buffer
	if err := run.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	back, err := ReadRun(&buf)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	return back
}

// leak has both sides sign during the phase: v0 and v1 (side v0+v1) at
// t0+14 s, v2 (side v2+v3) at t0+14.1 s. Nobody holds the QC yet.
func leak(t *testing.T, f *fixture, label string, seq uint64) (qc.Hash, *qc.QC) {
	t.Helper()
	tx, q := certify(t, f, label, seq, []signedAt{{"v0", 14 * time.Second}, {"v1", 14 * time.Second}, {"v2", 14*time.Second + 100*time.Millisecond}})
	paid(f, label, tx, "partition:halves", 14*time.Second-100*time.Millisecond, 0)
	return tx, q
}

// TestNoQuorumPhase: SPEC §7.5 during a phase in which no side held a
// quorum (the fixture's partition: v0+v1 | v2+v3 from t0+10 s to t0+20 s,
// v3 Byzantine, quorum 3) is judged by the certificates in each QC. Each
// case changes the safe fixture; want lists the violation kinds (none: the
// run passes) and signers the validators the §7.5 violation names.
func TestNoQuorumPhase(t *testing.T) {
	ms := time.Millisecond
	tol := DefaultClockTolerance
	cases := []struct {
		name    string
		mutate  func(t *testing.T, f *fixture)
		want    []string
		signers []string
		note    string // a note the report must hold
		source  string // the source the §7.5 violation names, when set
	}{
		{
			// The long run's failure: every certificate predates the
			// partition; the QC was only assembled (and seen) late, on a
			// busy machine.
			name: "certificates created just before the partition, QC assembled 1.18 s into it",
			mutate: func(t *testing.T, f *fixture) {
				tx, q := certify(t, f, "late", 1, []signedAt{
					{"v0", phaseStart - 180*ms}, {"v1", phaseStart - 170*ms}, {"v2", phaseStart - 160*ms}})
				hold(f, q, phaseStart+1180*ms, "v0")
				hold(f, q, phaseStart+1200*ms, "v1", "v2")
				paid(f, "late", tx, "baseline", phaseStart-250*ms, phaseStart+1190*ms)
			},
		},
		{
			name: "one side signs during the partition and completes a QC with a certificate from before it",
			mutate: func(t *testing.T, f *fixture) {
				tx, q := certify(t, f, "one-side", 1, []signedAt{{"v2", phaseStart - 300*ms}, {"v0", 12 * time.Second}, {"v1", 12*time.Second + 50*ms}})
				hold(f, q, 12*time.Second+100*ms, "v0", "v1")
				hold(f, q, 21*time.Second, "v2")
				paid(f, "one-side", tx, "baseline", phaseStart-400*ms, 12*time.Second+120*ms)
			},
		},
		{
			// Counting the Byzantine v3 as signing during the partition on
			// its side would flag this honest late assembly: the payment
			// existed before the partition, so v3's timestamp may stand.
			name: "the Byzantine signer's certificate from before the partition with one side's during it",
			mutate: func(t *testing.T, f *fixture) {
				tx, q := certify(t, f, "byz-before", 1, []signedAt{{"v3", phaseStart - 200*ms}, {"v0", 12 * time.Second}, {"v1", 12 * time.Second}})
				hold(f, q, 12*time.Second+100*ms, "v0", "v1")
				paid(f, "byz-before", tx, "baseline", phaseStart-300*ms, 12*time.Second+120*ms)
			},
		},
		{
			name: "a partition that leaks: certificates created during it on both sides form a QC held during it",
			mutate: func(t *testing.T, f *fixture) {
				_, q := leak(t, f, "leak", 1)
				hold(f, q, 14*time.Second+500*ms, "v0")
				hold(f, q, 21*time.Second, "v1", "v2")
			},
			want:    []string{KindQCWithoutQuorum},
			signers: []string{"v0", "v1", "v2"},
			source:  "v0",
		},
		{
			name: "a leaked QC no sidecar status names, which the driver's client got during the partition",
			mutate: func(t *testing.T, f *fixture) {
				tx, q := leak(t, f, "leak-client", 1)
				f.h.AddQC("v1", q)
				f.h.AddStatus(tx, NodeStatus{Node: "v1", Stage: "FINALIZED", BlockHeight: 40})
				f.run.Payments[len(f.run.Payments)-1].QCAt = f.t0.Add(15 * time.Second)
			},
			want:    []string{KindQCWithoutQuorum},
			signers: []string{"v0", "v1", "v2"},
			source:  "driver",
		},
		{
			// The other half of §7.5: the payment stranded by the
			// partition was signed on both sides (the driver retries on
			// every sidecar) and certifies once the halves reconnect.
			name: "both sides' certificates from during the partition form a QC only after healing",
			mutate: func(t *testing.T, f *fixture) {
				_, q := leak(t, f, "healed", 1)
				hold(f, q, phaseEnd+700*ms, "v0", "v1", "v2")
				f.run.Payments[len(f.run.Payments)-1].QCAt = f.t0.Add(phaseEnd + 800*ms)
			},
		},
		{
			// Each QC is judged by its own certificates and by when its own
			// hash was held: nodes assemble different subsets.
			name: "two QCs of one payment: one side's held during the partition, both sides' held after healing",
			mutate: func(t *testing.T, f *fixture) {
				tx := txHash("two-qcs")
				e := effects(carol, bob, 1, 1)
				at := func(d time.Duration) uint64 { return millis(f.t0.Add(d)) }
				early := f.signer("v2").Sign(tx, e, at(phaseStart-300*ms))
				v0 := f.signer("v0").Sign(tx, e, at(12*time.Second))
				v1 := f.signer("v1").Sign(tx, e, at(12*time.Second))
				v3 := f.signer("v3").Sign(tx, e, at(13*time.Second))
				c := mustCommittee(t, f.h)
				hold(f, buildQC(t, c, []qc.Certificate{early, v0, v1}), 12*time.Second+100*ms, "v0", "v1")
				hold(f, buildQC(t, c, []qc.Certificate{v0, v1, v3}), phaseEnd+500*ms, "v2", "v3")
				paid(f, "two-qcs", tx, "baseline", phaseStart-400*ms, 12*time.Second+150*ms)
			},
		},
		{
			name: "certificates on both sides created at the partition's start plus the tolerance count as earlier",
			mutate: func(t *testing.T, f *fixture) {
				tx, q := certify(t, f, "edge-start", 1, []signedAt{{"v0", phaseStart + tol}, {"v1", phaseStart + tol}, {"v2", phaseStart + tol}})
				hold(f, q, phaseStart+tol+100*ms, "v0", "v2")
				paid(f, "edge-start", tx, "baseline", phaseStart-50*ms, phaseStart+tol+120*ms)
			},
		},
		{
			name: "certificates on both sides created 1 ms past the start plus the tolerance",
			mutate: func(t *testing.T, f *fixture) {
				tx, q := certify(t, f, "past-start", 1, []signedAt{{"v0", phaseStart + tol + ms}, {"v1", phaseStart + tol}, {"v2", phaseStart + tol + ms}})
				hold(f, q, phaseStart+tol+100*ms, "v0", "v2")
				paid(f, "past-start", tx, "baseline", phaseStart-50*ms, phaseStart+tol+120*ms)
			},
			want:    []string{KindQCWithoutQuorum},
			signers: []string{"v0", "v2"},
		},
		{
			name: "a QC of both sides' certificates first held at the partition's end minus the tolerance",
			mutate: func(t *testing.T, f *fixture) {
				_, q := leak(t, f, "edge-end", 1)
				hold(f, q, phaseEnd-tol, "v1")
			},
		},
		{
			name: "a QC of both sides' certificates held 1 ms before the partition's end minus the tolerance",
			mutate: func(t *testing.T, f *fixture) {
				_, q := leak(t, f, "past-end", 1)
				hold(f, q, phaseEnd-tol-ms, "v1")
			},
			want:    []string{KindQCWithoutQuorum},
			signers: []string{"v0", "v1", "v2"},
		},
		{
			// v3 (side v2+v3) signs a payment first submitted during the
			// partition and dates its certificate before it: the backdated
			// timestamp cannot hide that its certificate crossed.
			name: "a Byzantine signer backdates its certificate in a leaked QC",
			mutate: func(t *testing.T, f *fixture) {
				tx, q := certify(t, f, "backdated", 1, []signedAt{{"v0", 14 * time.Second}, {"v1", 14 * time.Second}, {"v3", phaseStart - time.Second}})
				hold(f, q, 14*time.Second+300*ms, "v0")
				paid(f, "backdated", tx, "partition:halves", 14*time.Second-100*ms, 0)
			},
			want:    []string{KindQCWithoutQuorum},
			signers: []string{"v0", "v1", "v3"},
		},
		{
			name: "no sides recorded: certificates from before the partition still explain a late QC",
			mutate: func(t *testing.T, f *fixture) {
				f.run.Phases[1].Sides = nil
				tx, q := certify(t, f, "late", 1, []signedAt{{"v0", phaseStart - 180*ms}, {"v1", phaseStart - 170*ms}, {"v3", phaseStart - 160*ms}})
				hold(f, q, phaseStart+1180*ms, "v0", "v1")
				paid(f, "late", tx, "baseline", phaseStart-250*ms, phaseStart+1190*ms)
			},
		},
		{
			// Without sides nothing created during the phase is explained
			// by a side: stricter than needed, never laxer.
			name: "no sides recorded: one side's certificate created during the partition in a QC held during it",
			mutate: func(t *testing.T, f *fixture) {
				f.run.Phases[1].Sides = nil
				tx, q := certify(t, f, "one-side", 1, []signedAt{{"v2", phaseStart - 300*ms}, {"v0", phaseStart - 300*ms}, {"v1", 12 * time.Second}})
				hold(f, q, 12*time.Second+100*ms, "v0", "v1")
				paid(f, "one-side", tx, "baseline", phaseStart-400*ms, 12*time.Second+120*ms)
			},
			want:    []string{KindQCWithoutQuorum},
			signers: []string{"v1"},
		},
		{
			name: "a QC of both sides' certificates that no source reports holding is noted, not judged",
			mutate: func(t *testing.T, f *fixture) {
				_, q := leak(t, f, "unseen", 1)
				f.h.AddLightClientQC("lc1", qcProto(t, q))
				f.h.ChainNonces = map[qc.Address]uint64{carol: 2}
			},
			note: "no source reported when the QC was held: not judged",
		},
		{
			name:   "sides naming a validator outside the committee",
			mutate: func(t *testing.T, f *fixture) { f.run.Phases[1].Sides = [][]string{{"v0", "v1"}, {"v2", "v9"}} },
			want:   []string{KindBadHistory},
		},
		{
			name:   "a validator on two sides",
			mutate: func(t *testing.T, f *fixture) { f.run.Phases[1].Sides = [][]string{{"v0", "v1"}, {"v1", "v2", "v3"}} },
			want:   []string{KindBadHistory},
		},
		{
			// Such a side would explain a QC formed entirely inside the
			// phase; the history contradicts itself.
			name: "a side with a quorum in a phase marked without one",
			mutate: func(t *testing.T, f *fixture) {
				f.run.Phases[1].Sides = [][]string{{"v0", "v1", "v2"}, {"v3"}}
				tx, q := certify(t, f, "quorum-side", 1, []signedAt{{"v0", 12 * time.Second}, {"v1", 12 * time.Second}, {"v2", 12 * time.Second}})
				hold(f, q, 12*time.Second+100*ms, "v0")
				paid(f, "quorum-side", tx, "partition:halves", 12*time.Second-100*ms, 12*time.Second+120*ms)
			},
			want:    []string{KindQCWithoutQuorum, KindBadHistory},
			signers: []string{"v0", "v1", "v2"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.mutate(t, f)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			for _, h := range []*History{f.h, roundTrip(t, f.h)} {
				for _, run := range []*Run{f.run, roundTripRun(t, f.run)} {
					r := Check(h, run)
					var buf bytes.Buffer
					_ = r.WriteText(&buf)
					if got := kinds(r); !slices.Equal(got, want) {
						t.Fatalf("violation kinds %v, want %v\n%s", got, want, buf.String())
					}
					if tc.note != "" && !slices.ContainsFunc(r.Notes, func(n string) bool { return strings.Contains(n, tc.note) }) {
						t.Fatalf("no note %q\n%s", tc.note, buf.String())
					}
					for _, v := range r.Violations {
						if v.Kind == KindQCWithoutQuorum && !slices.Equal(v.Validators, tc.signers) {
							t.Fatalf("violation names signers %v, want %v\n%s", v.Validators, tc.signers, buf.String())
						}
						if v.Kind == KindQCWithoutQuorum && tc.source != "" && !slices.Equal(v.Sources, []string{tc.source}) {
							t.Fatalf("violation names sources %v, want %s\n%s", v.Sources, tc.source, buf.String())
						}
					}
				}
			}
		})
	}
}

// TestClockToleranceOption: the tolerance is the CheckOptions field; with
// none, a certificate created 1 ms after the partition began is created
// during it.
func TestClockToleranceOption(t *testing.T) {
	f := newFixture(t)
	tx, q := certify(t, f, "early", 1, []signedAt{{"v0", phaseStart + time.Millisecond}, {"v1", phaseStart}, {"v2", phaseStart + time.Millisecond}})
	hold(f, q, phaseStart+100*time.Millisecond, "v0")
	paid(f, "early", tx, "baseline", phaseStart-50*time.Millisecond, phaseStart+120*time.Millisecond)
	if got := DefaultCheckOptions().ClockTolerance; got != 250*time.Millisecond {
		t.Fatalf("default tolerance %s", got)
	}
	if r := Check(f.h, f.run); !r.OK() || r.ClockTolerance != DefaultClockTolerance {
		t.Fatalf("default tolerance: %v, report tolerance %s", kinds(r), r.ClockTolerance)
	}
	r := CheckWith(f.h, f.run, CheckOptions{})
	if got := kinds(r); !slices.Equal(got, []string{KindQCWithoutQuorum}) {
		t.Fatalf("no tolerance: kinds %v", got)
	}
	if r := CheckWith(f.h, f.run, CheckOptions{ClockTolerance: -time.Millisecond}); !slices.Equal(kinds(r), []string{KindBadHistory}) {
		t.Fatalf("negative tolerance: kinds %v", kinds(r))
	}
}

// TestRunWithoutSides: a run stored before phases recorded their sides
// (no "sides" in its JSON) reads back and is checked, its no-quorum phase
// judged without sides.
func TestRunWithoutSides(t *testing.T) {
	f := newFixture(t)
	tx, q := certify(t, f, "one-side", 1, []signedAt{{"v2", phaseStart - 300*time.Millisecond}, {"v0", phaseStart - 300*time.Millisecond}, {"v1", 12 * time.Second}})
	hold(f, q, 12*time.Second+100*time.Millisecond, "v0", "v1")
	paid(f, "one-side", tx, "baseline", phaseStart-400*time.Millisecond, 12*time.Second+120*time.Millisecond)
	if r := Check(f.h, f.run); !r.OK() {
		t.Fatalf("with sides: %v", kinds(r))
	}
	var buf bytes.Buffer
	if err := f.run.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"sides"`) {
		t.Fatalf("sides not written:\n%s", buf.String())
	}
	var old map[string]any
	if err := json.Unmarshal(buf.Bytes(), &old); err != nil {
		t.Fatal(err)
	}
	for _, ph := range old["phases"].([]any) {
		delete(ph.(map[string]any), "sides")
	}
	b, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	run, err := ReadRun(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("old run: %v", err)
	}
	if !run.Phases[1].NoQuorum || run.Phases[1].Sides != nil {
		t.Fatalf("old run phase %+v", run.Phases[1])
	}
	// v1's certificate from during the phase is explained by no side.
	if got := kinds(Check(f.h, run)); !slices.Equal(got, []string{KindQCWithoutQuorum}) {
		t.Fatalf("without sides: kinds %v", got)
	}
}
