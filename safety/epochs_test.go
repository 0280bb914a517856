package safety

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/qc"
)

// The two-epoch fixture: the safe fixture's run in epoch 1 (v0..v3, v3
// Byzantine) and a committee of epoch 2, either of the same keys or of
// new ones (w0..w3, w3 Byzantine), in which nothing happened yet.

var epoch2 = qc.Domain{ChainID: testDomain.ChainID, Epoch: 2}

type epochFixture struct {
	*fixture
	newKeys bool
	next    map[string]*qc.Signer // epoch-2 signers by epoch-1 name: "v1" is w1 with new keys
}

func newEpochFixture(t testing.TB, newKeys bool) *epochFixture {
	t.Helper()
	f := &epochFixture{fixture: newFixture(t), newKeys: newKeys, next: make(map[string]*qc.Signer)}
	info := CommitteeInfo{ChainID: epoch2.ChainID, Epoch: epoch2.Epoch}
	for i := range 4 {
		name := fmt.Sprintf("v%d", i)
		own := name
		if newKeys {
			own = fmt.Sprintf("w%d", i)
		}
		s := qc.NewSigner(testKey(own), own, epoch2)
		f.next[name] = s
		info.Members = append(info.Members, MemberInfo{Name: own, ID: s.ID(), Honest: i != 3})
	}
	f.h.Epochs = append(f.h.Epochs, info)
	return f
}

// committee2 is the protocol committee of epoch 2.
func (f *epochFixture) committee2(t testing.TB) *qc.Committee {
	t.Helper()
	c, err := f.h.Epochs[0].QCommittee()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// certify2 has the epoch-2 members named by their epoch-1 names certify
// (tx, e) and returns the QC.
func (f *epochFixture) certify2(t testing.TB, tx qc.Hash, e qc.Effects, names ...string) *qc.QC {
	t.Helper()
	certs := make([]qc.Certificate, len(names))
	for i, n := range names {
		certs[i] = f.next[n].Sign(tx, e, millis(f.t0.Add(40*time.Second)))
	}
	return buildQC(t, f.committee2(t), certs)
}

// hold records q on the boards of sources, reported settled so the run's
// settlement rule is satisfied.
func (f *epochFixture) hold(q *qc.QC, sources ...string) {
	for _, src := range sources {
		f.h.AddQC(src, q)
		f.h.AddStatus(q.TxHash, NodeStatus{Node: src, Stage: "FINALIZED", BlockHeight: 30, QCHash: q.Hash,
			QCUnixMillis: millis(f.t0.Add(41 * time.Second))})
	}
}

// dsB2 certifies the fixture's dsB (carol's nonce 0, which dsA took in
// epoch 1) in epoch 2 by the honest members.
func (f *epochFixture) dsB2(t testing.TB) *qc.QC {
	return f.certify2(t, f.txs["dsB"], effects(carol, bob, 5, 0), "v0", "v1", "v2")
}

func TestCheckAcrossEpochs(t *testing.T) {
	type keysCase struct {
		want   []string // violation kinds
		epochs []uint64 // Epochs of the conflicting_qc violation, if any
	}
	cases := []struct {
		name   string
		mutate func(t *testing.T, f *epochFixture)
		// same: epoch 2 has epoch 1's keys; fresh: new keys.
		same, fresh keysCase
		check       func(t *testing.T, f *epochFixture, r *Report)
	}{
		{
			name:   "nothing happened in epoch 2",
			mutate: func(*testing.T, *epochFixture) {},
		},
		{
			name: "the same transaction certified in both epochs",
			mutate: func(t *testing.T, f *epochFixture) {
				f.hold(f.certify2(t, f.txs["pay1"], effects(alice, bob, 10, 0), "v0", "v1", "v2"), "v0", "v1")
			},
			check: func(t *testing.T, f *epochFixture, r *Report) {
				if r.QCs.ValidByEpoch[1] != 3 || r.QCs.ValidByEpoch[2] != 1 || r.QCs.Certified != 3 {
					t.Errorf("valid QCs by epoch %v, certified %d; want 3 in epoch 1, 1 in epoch 2, 3 transactions", r.QCs.ValidByEpoch, r.QCs.Certified)
				}
			},
		},
		{
			name:   "a conflicting QC in epoch 2 on an honest board",
			mutate: func(t *testing.T, f *epochFixture) { f.hold(f.dsB2(t), "v2") },
			// With the same keys, v0 and v1 signed dsA in epoch 1 and dsB
			// in epoch 2: their own double-signs, across epochs.
			same:  keysCase{want: []string{KindConflictingQC, KindHonestDoubleSign}, epochs: []uint64{1, 2}},
			fresh: keysCase{want: []string{KindConflictingQC}, epochs: []uint64{1, 2}},
		},
		{
			name: "a conflicting QC in epoch 2 seen only by a light client",
			mutate: func(t *testing.T, f *epochFixture) {
				f.h.AddLightClientQC("lc1", qcProto(t, f.dsB2(t)))
			},
			same:  keysCase{want: []string{KindConflictingQC, KindHonestDoubleSign}, epochs: []uint64{1, 2}},
			fresh: keysCase{want: []string{KindConflictingQC}, epochs: []uint64{1, 2}},
		},
		{
			name: "a conflicting QC carrying no epoch is attributed by its signatures",
			mutate: func(t *testing.T, f *epochFixture) {
				q := f.dsB2(t)
				q.Epoch = 0
				f.hold(q, "v2")
			},
			same:  keysCase{want: []string{KindConflictingQC, KindHonestDoubleSign}, epochs: []uint64{1, 2}},
			fresh: keysCase{want: []string{KindConflictingQC}, epochs: []uint64{1, 2}},
		},
		{
			name: "a QC carrying no epoch for a transaction of epoch 1",
			mutate: func(t *testing.T, f *epochFixture) {
				q := f.certify2(t, f.txs["pay2"], effects(bob, carol, 12, 0), "v0", "v1", "v2")
				q.Epoch = 0
				f.hold(q, "v0")
			},
			check: func(t *testing.T, f *epochFixture, r *Report) {
				if r.QCs.ValidByEpoch[2] != 1 || r.QCs.Invalid != 0 {
					t.Errorf("valid QCs by epoch %v, invalid %d; want the epoch-0 QC valid in epoch 2", r.QCs.ValidByEpoch, r.QCs.Invalid)
				}
			},
		},
		{
			name: "two conflicting QCs both in epoch 2",
			mutate: func(t *testing.T, f *epochFixture) {
				tx := txHash("epoch2-a")
				f.hold(f.certify2(t, tx, effects(bob, alice, 1, 1), "v0", "v1", "v2"), "v0")
				f.hold(f.certify2(t, txHash("epoch2-b"), effects(bob, carol, 1, 1), "v1", "v2", "v3"), "v1")
			},
			same:  keysCase{want: []string{KindConflictingQC, KindHonestDoubleSign}, epochs: []uint64{2}},
			fresh: keysCase{want: []string{KindConflictingQC, KindHonestDoubleSign}, epochs: []uint64{2}},
		},
		{
			name: "an honest member signs another transaction for an epoch-1 key in epoch 2",
			mutate: func(t *testing.T, f *epochFixture) {
				// v1 signed pay1 (alice's nonce 0) in epoch 1.
				f.h.AddCertificate("v2", f.next["v1"].Sign(txHash("other"), effects(alice, carol, 7, 0), millis(f.t0.Add(40*time.Second))))
			},
			// Only one validator's guard is involved: with new keys w1
			// never signed the key before.
			same: keysCase{want: []string{KindHonestDoubleSign}},
		},
		{
			name: "a QC of an epoch without a committee on an honest board",
			mutate: func(t *testing.T, f *epochFixture) {
				f.hold(epoch3QC(t, f.fixture), "v1")
			},
			same:  keysCase{want: []string{KindUnverifiableQC}},
			fresh: keysCase{want: []string{KindUnverifiableQC}},
			check: func(t *testing.T, f *epochFixture, r *Report) {
				if r.QCs.UnknownEpoch != 1 || r.QCs.Invalid != 0 {
					t.Errorf("unknown-epoch QCs %d, invalid %d; want 1, 0", r.QCs.UnknownEpoch, r.QCs.Invalid)
				}
				for _, v := range r.Violations {
					if v.Kind == KindUnverifiableQC && (!slices.Equal(v.Epochs, []uint64{3}) || !slices.Equal(v.Sources, []string{"v1"})) {
						t.Errorf("unverifiable QC reported with epochs %v sources %v, want [3] [v1]", v.Epochs, v.Sources)
					}
				}
			},
		},
		{
			name: "a QC of an epoch without a committee accepted by a light client",
			mutate: func(t *testing.T, f *epochFixture) {
				f.h.AddLightClientQC("lc1", qcProto(t, epoch3QC(t, f.fixture)))
			},
			same:  keysCase{want: []string{KindUnverifiableQC}},
			fresh: keysCase{want: []string{KindUnverifiableQC}},
		},
		{
			name: "a QC of an epoch without a committee served by the Byzantine sidecar only",
			mutate: func(t *testing.T, f *epochFixture) {
				f.h.AddQC("v3", epoch3QC(t, f.fixture))
			},
			check: func(t *testing.T, f *epochFixture, r *Report) {
				if r.QCs.UnknownEpoch != 1 || !slices.ContainsFunc(r.Notes, func(n string) bool { return strings.Contains(n, "carries epoch 3") }) {
					t.Errorf("unknown-epoch QCs %d, notes %v; want 1 and a note naming epoch 3", r.QCs.UnknownEpoch, r.Notes)
				}
			},
		},
		{
			name: "a QC signed in epoch 2 carrying epoch 1",
			mutate: func(t *testing.T, f *epochFixture) {
				q := f.certify2(t, f.txs["pay2"], effects(bob, carol, 12, 0), "v0", "v1", "v2")
				q.Epoch = 1
				f.hold(q, "v0")
			},
			same:  keysCase{want: []string{KindHonestServedInvalid}},
			fresh: keysCase{want: []string{KindHonestServedInvalid}},
		},
		{
			name: "a QC signed in epoch 2 carrying an unknown epoch",
			mutate: func(t *testing.T, f *epochFixture) {
				q := f.certify2(t, f.txs["pay2"], effects(bob, carol, 12, 0), "v0", "v1", "v2")
				q.Epoch = 7
				f.hold(q, "v0")
			},
			// Provably invalid, not merely unverifiable: the signatures
			// belong to epoch 2.
			same:  keysCase{want: []string{KindHonestServedInvalid}},
			fresh: keysCase{want: []string{KindHonestServedInvalid}},
		},
		{
			name: "the Byzantine member equivocates within epoch 2, exposed by an honest board",
			mutate: func(t *testing.T, f *epochFixture) {
				at := millis(f.t0.Add(40 * time.Second))
				a := f.next["v3"].Sign(txHash("byz-a"), effects(carol, alice, 1, 1), at)
				b := f.next["v3"].Sign(txHash("byz-b"), effects(carol, bob, 1, 1), at)
				f.h.AddEvidence("v0", qc.Equivocation{First: a, Second: b})
			},
			check: func(t *testing.T, f *epochFixture, r *Report) {
				if r.Evidence.Valid != 2 || len(r.Byzantine) != 2 {
					t.Errorf("valid evidence %d, Byzantine findings %+v; want 2 and 2", r.Evidence.Valid, r.Byzantine)
				}
			},
		},
		{
			name: "evidence pairing the Byzantine member's certificates of epochs 1 and 2",
			mutate: func(t *testing.T, f *epochFixture) {
				// v3 signed dsA in epoch 1; in epoch 2 its key signs a
				// different payment for carol's nonce 0.
				first := f.fixture.sign(f.txs["dsA"], effects(carol, alice, 5, 0), millis(f.t0.Add(3*time.Second)), "v3")[0]
				second := f.next["v3"].Sign(txHash("byz-late"), effects(carol, bob, 9, 0), millis(f.t0.Add(40*time.Second)))
				f.h.AddEvidence("v1", qc.Equivocation{First: first, Second: second})
			},
			// One validator's two signatures prove its double-sign; with
			// new keys the two certificates are by different validators,
			// and an honest board reporting that is wrong.
			fresh: keysCase{want: []string{KindHonestServedInvalid}},
			check: func(t *testing.T, f *epochFixture, r *Report) {
				if f.newKeys {
					return
				}
				if len(r.Byzantine) != 1 || !slices.Equal(r.Byzantine[0].DetectedBy, []string{"v0", "v1"}) {
					t.Errorf("Byzantine findings %+v, want v3's double-sign detected by v0 and v1", r.Byzantine)
				}
			},
		},
	}
	for _, tc := range cases {
		for _, newKeys := range []bool{false, true} {
			keys, want := "same keys", tc.same
			if newKeys {
				keys, want = "new keys", tc.fresh
			}
			t.Run(tc.name+"/"+keys, func(t *testing.T) {
				f := newEpochFixture(t, newKeys)
				tc.mutate(t, f)
				wantKinds := slices.Sorted(slices.Values(want.want))
				for _, h := range []*History{f.h, roundTrip(t, f.h)} {
					r := Check(h, nil)
					if got := kinds(r); !slices.Equal(got, wantKinds) {
						var buf bytes.Buffer
						_ = r.WriteText(&buf)
						t.Fatalf("kinds %v, want %v\n%s", got, wantKinds, buf.String())
					}
					for _, v := range r.Violations {
						if v.Kind != KindConflictingQC {
							continue
						}
						if !slices.Equal(v.Epochs, want.epochs) {
							t.Errorf("conflicting QCs reported in epochs %v, want %v", v.Epochs, want.epochs)
						}
						if len(want.epochs) > 1 && !strings.Contains(v.Message, "across epochs "+epochList(want.epochs)) {
							t.Errorf("message %q does not name the epochs", v.Message)
						}
					}
					if len(r.Committee.Epochs) != 2 {
						t.Errorf("report committee epochs %+v, want 1 and 2", r.Committee.Epochs)
					}
					if tc.check != nil {
						tc.check(t, f, r)
					}
				}
			})
		}
	}
}

// epoch3QC certifies a fresh payment in epoch 3, a committee the history
// does not have.
func epoch3QC(t testing.TB, f *fixture) *qc.QC {
	t.Helper()
	d := qc.Domain{ChainID: testDomain.ChainID, Epoch: 3}
	var members []qc.Member
	var certs []qc.Certificate
	for i := range 4 {
		s := qc.NewSigner(testKey(fmt.Sprintf("v%d", i)), fmt.Sprintf("v%d", i), d)
		members = append(members, qc.Member{Name: s.Name(), ID: s.ID()})
		if i < 3 {
			certs = append(certs, s.Sign(txHash("epoch3"), effects(bob, alice, 2, 1), millis(f.t0.Add(50*time.Second))))
		}
	}
	c, err := qc.NewCommittee(d, members)
	if err != nil {
		t.Fatal(err)
	}
	return buildQC(t, c, certs)
}

// TestCheckAcrossEpochsWithRun: the whole check, run included, passes with
// a second epoch in which payments settle, and the report names both
// epochs.
func TestCheckAcrossEpochsWithRun(t *testing.T) {
	f := newEpochFixture(t, true)
	tx := txHash("late")
	q := f.certify2(t, tx, effects(alice, carol, 3, 2), "v0", "v1", "v2")
	f.hold(q, "v0", "v1", "v2")
	f.run.Payments = append(f.run.Payments, Payment{Name: "late", TxHash: tx, Sender: alice, SubmittedTo: "w0", QuorumSide: true,
		Phase: "after:partition:halves", Sent: f.t0.Add(25 * time.Second), QCAt: f.t0.Add(25*time.Second + 80*time.Millisecond),
		Outcome: OutcomeCertified, Fee: nativeFee(alice)})
	r := Check(f.h, f.run)
	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	if !r.OK() {
		t.Fatalf("a safe run over two epochs fails:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "epochs: 1 (4 validators, f=1, quorum 3), 2 (4 validators, f=1, quorum 3)") {
		t.Errorf("the text report does not list both epochs:\n%s", buf.String())
	}
	if !slices.Equal(r.Committee.Byzantine, []string{"v3", "w3"}) {
		t.Errorf("Byzantine members %v, want v3 and w3", r.Committee.Byzantine)
	}
}

// TestCheckSeatedEpoch: in a committee derived from the chain, a seat
// (consensus key) signs through the sidecar keys bound to it, and two of
// its keys signing different transactions for one contention key are that
// validator's double-sign.
func TestCheckSeatedEpoch(t *testing.T) {
	seatKey := func(name string) qc.ValidatorID {
		return qc.NewSigner(testKey("consensus-"+name), name, epoch2).ID()
	}
	cases := []struct {
		name   string
		honest bool
		want   []string
	}{
		{name: "honest seat", honest: true, want: []string{KindHonestDoubleSign}},
		{name: "Byzantine seat", honest: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			info := CommitteeInfo{ChainID: epoch2.ChainID, Epoch: epoch2.Epoch}
			signers := map[string]*qc.Signer{}
			for i := range 4 {
				seat := seatKey(fmt.Sprintf("s%d", i))
				info.Seats = append(info.Seats, seat)
				name := fmt.Sprintf("s%d", i)
				s := qc.NewSigner(testKey("sidecar-"+name), name, epoch2)
				signers[name] = s
				info.Members = append(info.Members, MemberInfo{Name: name, ID: s.ID(), Seat: seat, Honest: i != 3 || tc.honest})
			}
			// s0 rotated its sidecar key: s0b signs for the same seat.
			rot := qc.NewSigner(testKey("sidecar-s0b"), "s0b", epoch2)
			info.Members = append(info.Members, MemberInfo{Name: "s0b", ID: rot.ID(), Seat: info.Seats[0], Honest: tc.honest})
			f.h.Epochs = append(f.h.Epochs, info)

			at := millis(f.t0.Add(40 * time.Second))
			f.h.AddCertificate("s1", signers["s0"].Sign(txHash("seat-a"), effects(bob, alice, 1, 1), at))
			f.h.AddCertificate("s1", rot.Sign(txHash("seat-b"), effects(bob, carol, 1, 1), at))
			for _, h := range []*History{f.h, roundTrip(t, f.h)} {
				r := Check(h, nil)
				if got := kinds(r); !slices.Equal(got, tc.want) {
					t.Fatalf("kinds %v, want %v", got, tc.want)
				}
				for _, v := range r.Violations {
					if len(v.Validators) != 1 || !strings.Contains(v.Validators[0], "s0+s0b") {
						t.Errorf("double-sign named %v, want the seat of s0 and s0b", v.Validators)
					}
				}
				if !tc.honest && (len(r.Byzantine) != 2 || !slices.ContainsFunc(r.Byzantine, func(b ByzantineFinding) bool { return strings.Contains(b.Validator, "s0+s0b") })) {
					t.Errorf("Byzantine findings %+v, want the seat's double-sign besides v3's", r.Byzantine)
				}
				if e := r.Committee.Epochs; len(e) != 2 || e[1].N != 4 || e[1].Quorum != 3 {
					t.Errorf("epoch summaries %+v, want epoch 2 of four seats", e)
				}
			}
		})
	}
}

func TestNewCommittees(t *testing.T) {
	mk := func(chain, epoch uint64) *qc.Committee {
		d := qc.Domain{ChainID: chain, Epoch: epoch}
		s := qc.NewSigner(testKey("v0"), "v0", d)
		c, err := qc.NewCommittee(d, []qc.Member{{Name: "v0", ID: s.ID()}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cases := []struct {
		name string
		cs   []*qc.Committee
		want string // error text; empty: valid
	}{
		{name: "one", cs: []*qc.Committee{mk(1337, 1)}},
		{name: "several", cs: []*qc.Committee{mk(1337, 3), mk(1337, 1), mk(1337, 2)}},
		{name: "none", want: "none given"},
		{name: "nil", cs: []*qc.Committee{mk(1337, 1), nil}, want: "committee 1 is nil"},
		{name: "two chains", cs: []*qc.Committee{mk(1337, 1), mk(4217, 2)}, want: "of chain 4217"},
		{name: "one epoch twice", cs: []*qc.Committee{mk(1337, 1), mk(1337, 1)}, want: "two committees of epoch 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewCommittees(tc.cs...)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.IsSorted(s.Epochs()) || len(s.Epochs()) != len(tc.cs) {
				t.Fatalf("epochs %v", s.Epochs())
			}
		})
	}
}

// TestCommitteesVerifyQC: a QC is verified against its epoch's committee,
// and one carrying no epoch against the committee its signatures belong
// to, even when both epochs have the same keys.
func TestCommitteesVerifyQC(t *testing.T) {
	f := newEpochFixture(t, false)
	s, err := f.h.QCommittees()
	if err != nil {
		t.Fatal(err)
	}
	q := f.certify2(t, txHash("x"), effects(bob, alice, 1, 1), "v0", "v1", "v2")
	for _, carried := range []uint64{2, 0} {
		q.Epoch = carried
		c, err := s.VerifyQC(q)
		if err != nil || c.Domain().Epoch != 2 {
			t.Fatalf("carried epoch %d: committee %v, error %v; want epoch 2", carried, c, err)
		}
	}
	q.Epoch = 9
	if _, err := s.VerifyQC(q); !errors.Is(err, qc.ErrWrongEpoch) {
		t.Fatalf("epoch-2 QC carrying epoch 9: %v, want ErrWrongEpoch", err)
	}
	if _, err := s.VerifyQC(epoch3QC(t, f.fixture)); !errors.Is(err, ErrUnknownEpoch) {
		t.Fatalf("epoch-3 QC: %v, want ErrUnknownEpoch", err)
	}
	forged := epoch3QC(t, f.fixture)
	forged.Epoch = 0
	if _, err := s.VerifyQC(forged); err == nil || !errors.Is(err, qc.ErrBadSignature) {
		t.Fatalf("epoch-3 QC carrying no epoch: %v, want a bad signature in every known epoch", err)
	}
}

// TestMergeEpochs: histories collected at several points join their
// committees of other epochs; two different committees of one epoch do not
// merge.
func TestMergeEpochs(t *testing.T) {
	a := newFixture(t).h
	b := newEpochFixture(t, true)
	if err := a.Merge(b.h); err != nil {
		t.Fatal(err)
	}
	if err := a.Merge(b.h); err != nil {
		t.Fatalf("merging the same epochs again: %v", err)
	}
	if len(a.Epochs) != 1 || a.Epochs[0].Epoch != 2 {
		t.Fatalf("merged epochs %+v, want epoch 2 once", a.Epochs)
	}
	other := newEpochFixture(t, false)
	if err := a.Merge(other.h); err == nil || !strings.Contains(err.Error(), "epoch 2") {
		t.Fatalf("merged two committees of epoch 2: %v", err)
	}
}

// TestCollectEpochs: Collect records the committees of the other epochs it
// is given and the epoch a served QC carries, so the history is checked
// against every epoch; a committee of another chain or of the committee
// file's epoch is refused.
func TestCollectEpochs(t *testing.T) {
	f := newEpochFixture(t, true)
	file := &committee.File{ChainID: testDomain.ChainID, Epoch: testDomain.Epoch, QCShards: 16}
	for i := range 4 {
		name := fmt.Sprintf("v%d", i)
		file.Members = append(file.Members, committee.Member{Name: name, PublicKey: strings.TrimPrefix(f.signer(name).ID().Hex(), "0x")})
	}
	path := filepath.Join(t.TempDir(), "committee.toml")
	if err := file.Write(path); err != nil {
		t.Fatal(err)
	}
	c2 := f.committee2(t)
	q := f.certify2(t, txHash("late"), effects(alice, carol, 3, 2), "v0", "v1", "v2")

	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("/api/v1/info", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, apiserver.InfoResponse{Name: "v0", ID: f.signer("v0").ID().Hex()})
	})
	mux.HandleFunc("/api/v1/evidence", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, apiserver.EvidenceResponse{Evidence: []apiserver.JSONEquivocation{}})
	})
	mux.HandleFunc("/api/v1/bulletin", func(w http.ResponseWriter, r *http.Request) {
		resp := apiserver.BulletinResponse{QCs: []apiserver.JSONQC{}}
		for i := range q.Certs {
			resp.Certificates = append(resp.Certificates, apiserver.NewJSONCertificate(&q.Certs[i]))
		}
		if r.URL.Query().Get("tx") != "" {
			resp.QCs = append(resp.QCs, apiserver.NewJSONQC(q))
		}
		reply(w, resp)
	})
	mux.HandleFunc("/api/v1/tx/{hash}/status", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("hash") != q.TxHash.Hex() {
			http.NotFound(w, r)
			return
		}
		reply(w, apiserver.TxStatusResponse{TxHash: q.TxHash.Hex(), Stage: "FINALIZED", CertCount: len(q.Certs), Quorum: 3,
			QCFormed: true, QCHash: q.Hash.Hex(), BlockHeight: 30, QCUnixMillis: apiserver.U64(millis(f.t0.Add(41 * time.Second)))})
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	other := func(chain, epoch uint64) *qc.Committee {
		c, err := NewCommitteeInfo(c2).withDomain(chain, epoch).QCommittee()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// A network whose committees come from the chain: the file is only an
	// address book, and Epochs are every committee.
	chainFile := *file
	chainFile.EpochLength, chainFile.CommitteeSource = 10, committee.SourceChain
	chainPath := filepath.Join(t.TempDir(), "committee.toml")
	if err := chainFile.Write(chainPath); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		fromChain bool
		epochs    []*qc.Committee
		want      string // error text; empty: collects
	}{
		{name: "epoch 2", epochs: []*qc.Committee{c2}},
		{name: "from the chain: epoch 1 and 2", fromChain: true, epochs: []*qc.Committee{other(testDomain.ChainID, 1), c2}},
		{name: "from the chain without epochs", fromChain: true, want: "Epochs must hold them"},
		{name: "nil", epochs: []*qc.Committee{nil}, want: "Epochs[0] is nil"},
		{name: "another chain", epochs: []*qc.Committee{other(4217, 2)}, want: "of chain 4217"},
		{name: "the committee file's epoch", epochs: []*qc.Committee{other(testDomain.ChainID, 1)}, want: "two committees of epoch 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cpath := path
			if tc.fromChain {
				cpath = chainPath
			}
			h, err := Collect(ctx, CollectConfig{Sidecars: []Sidecar{{Name: "v0", APIURL: srv.URL, Honest: true}},
				CommitteeFile: cpath, Epochs: tc.epochs, Logger: slog.New(slog.DiscardHandler)})
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(h.Epochs) != 1 || h.Epochs[0].Epoch != 2 || len(h.Epochs[0].Members) != 4 {
				t.Fatalf("history epochs %+v, want the committee of epoch 2", h.Epochs)
			}
			if len(h.QCs) != 1 || h.QCs[0].QC.Epoch != 2 {
				t.Fatalf("collected QCs %+v, want one carrying epoch 2", h.QCs)
			}
			for _, h := range []*History{h, roundTrip(t, h)} {
				r := Check(h, nil)
				if !r.OK() || r.QCs.ValidByEpoch[2] != 1 {
					t.Fatalf("check: kinds %v, valid QCs by epoch %v; want OK with one valid QC of epoch 2", kinds(r), r.QCs.ValidByEpoch)
				}
			}
		})
	}
}

// withDomain returns c moved to another chain and epoch.
func (c CommitteeInfo) withDomain(chain, epoch uint64) CommitteeInfo {
	c.ChainID, c.Epoch = chain, epoch
	return c
}

// TestBoundaryStats: the report gives, for each epoch boundary of a run, the
// time to QC of the payments sent around it, the first QC after it and the
// committee change, and the run's boundaries survive its JSON form.
func TestBoundaryStats(t *testing.T) {
	f := newEpochFixture(t, true)
	tx := txHash("late")
	q := f.certify2(t, tx, effects(alice, carol, 3, 2), "v0", "v1", "v2")
	f.hold(q, "v0", "v1", "v2")
	at := f.t0.Add(25 * time.Second)
	f.run.Payments = append(f.run.Payments, Payment{Name: "late", TxHash: tx, Sender: alice, SubmittedTo: "w0", QuorumSide: true,
		Phase: "after:partition:halves", Sent: at.Add(500 * time.Millisecond), QCAt: at.Add(1500 * time.Millisecond),
		Outcome: OutcomeCertified, Fee: nativeFee(alice)})
	f.run.Boundaries = []Boundary{{Epoch: 2, Height: 20, At: at}, {Epoch: 3, Height: 30, At: at.Add(time.Hour)}}
	var stored bytes.Buffer
	if err := f.run.WriteJSON(&stored); err != nil {
		t.Fatal(err)
	}
	var run Run
	if err := json.Unmarshal(stored.Bytes(), &run); err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(run.Boundaries, f.run.Boundaries, func(a, b Boundary) bool { return a.Epoch == b.Epoch && a.Height == b.Height && a.At.Equal(b.At) }) {
		t.Fatalf("boundaries after the JSON round trip: %+v", run.Boundaries)
	}
	r := Check(f.h, &run)
	if len(r.Boundaries) != 2 {
		t.Fatalf("%d boundaries in the report, want 2", len(r.Boundaries))
	}
	b := r.Boundaries[0]
	if b.Sent != 1 || b.WithQC != 1 || b.TimeToQC.Max != time.Second || b.FirstQC != 1500*time.Millisecond {
		t.Errorf("boundary of epoch 2: %+v, want the late payment (1 s to its QC, 1.5 s after the boundary)", b)
	}
	if !slices.Equal(b.Joined, []string{"w0", "w1", "w2", "w3"}) || !slices.Equal(b.Left, []string{"v0", "v1", "v2", "v3"}) {
		t.Errorf("boundary of epoch 2: joined %v left %v", b.Joined, b.Left)
	}
	if b2 := r.Boundaries[1]; b2.Sent != 0 || b2.FirstQC != 0 || b2.Joined != nil {
		t.Errorf("boundary of epoch 3 (nothing sent, no committee known): %+v", b2)
	}
	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Epoch boundaries", "+w0 +w1 +w2 +w3 -v0 -v1 -v2 -v3", "1500ms", "over 1 boundaries"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
}
