package committee

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
)

const (
	testChain = 1337
	testEpoch = 5
)

// testKey is a deterministic ed25519 key named by tag.
func testKey(tag string) ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	copy(seed, tag)
	return ed25519.NewKeyFromSeed(seed)
}

func keyID(k ed25519.PrivateKey) qc.ValidatorID {
	return qc.ValidatorID(k.Public().(ed25519.PublicKey))
}

// deriveFixture is a chain's validator set of four active validators, each
// with one sidecar key bound from epoch 1, derived at epoch 5.
type deriveFixture struct {
	epoch      uint64
	consensus  []ed25519.PrivateKey // by validator index
	validators []tempo.Validator
	bindings   []qc.Binding // bindings[i] binds validator i's sidecar key
}

func newDeriveFixture(t *testing.T) *deriveFixture {
	t.Helper()
	f := &deriveFixture{epoch: testEpoch}
	for i := range 4 {
		ck := testKey(fmt.Sprintf("consensus-%d", i))
		f.consensus = append(f.consensus, ck)
		f.validators = append(f.validators, tempo.Validator{PublicKey: keyID(ck), Active: true, Index: uint64(i),
			ValidatorAddress: common.Address{0xA0 + byte(i), 1, 2, 3, 4, 5}})
		f.bindings = append(f.bindings, f.bind(t, i, fmt.Sprintf("sidecar-%d", i), 1))
	}
	return f
}

// bind returns validator i's binding of the sidecar key named tag.
func (f *deriveFixture) bind(t *testing.T, i int, tag string, firstEpoch uint64) qc.Binding {
	t.Helper()
	b, err := qc.SignBinding(f.consensus[i], testKey(tag), testChain, firstEpoch)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *deriveFixture) derive() (*qc.Committee, DeriveReport, error) {
	return Derive(testChain, f.epoch, f.validators, f.bindings)
}

func sidecarID(tag string) qc.ValidatorID { return keyID(testKey(tag)) }

func TestDerive(t *testing.T) {
	cases := []struct {
		name    string
		mutate  func(t *testing.T, f *deriveFixture)
		wantErr error
		n       int
		members int
		unbound []uint64 // validator indices
		refused []error  // one sentinel per refused binding, in any order
		check   func(t *testing.T, f *deriveFixture, c *qc.Committee, r DeriveReport)
	}{
		{name: "valid", n: 4, members: 4, check: func(t *testing.T, f *deriveFixture, c *qc.Committee, r DeriveReport) {
			if c.Quorum() != 3 || c.F() != 1 || c.Domain() != (qc.Domain{ChainID: testChain, Epoch: testEpoch}) {
				t.Fatalf("quorum %d f %d domain %+v", c.Quorum(), c.F(), c.Domain())
			}
			m, ok := c.Member(sidecarID("sidecar-2"))
			if !ok || m.Seat != keyID(f.consensus[2]) || m.Name != "v2-a2010203" {
				t.Fatalf("member of validator 2: %+v %v", m, ok)
			}
			if len(r.Seats) != 4 || r.Seats[2].Name != "v2-a2010203" || r.Seats[2].FirstEpoch != 1 || len(r.Pending)+len(r.Superseded) != 0 {
				t.Fatalf("report %+v", r)
			}
		}},
		{name: "unbound member counts in n but cannot sign", n: 4, members: 3, unbound: []uint64{3},
			mutate: func(t *testing.T, f *deriveFixture) { f.bindings = f.bindings[:3] },
			check: func(t *testing.T, f *deriveFixture, c *qc.Committee, r DeriveReport) {
				if c.Quorum() != 3 || c.Contains(keyID(f.consensus[3])) {
					t.Fatalf("quorum %d; consensus key a member: %v", c.Quorum(), c.Contains(keyID(f.consensus[3])))
				}
			}},
		{name: "inactive validator is no seat and its binding is refused", n: 3, members: 3, refused: []error{qc.ErrBindingInactive},
			mutate: func(t *testing.T, f *deriveFixture) { f.validators[1].Active = false },
			check: func(t *testing.T, f *deriveFixture, c *qc.Committee, r DeriveReport) {
				if c.Contains(sidecarID("sidecar-1")) || slices.Contains(c.Seats(), keyID(f.consensus[1])) {
					t.Fatal("inactive validator in the committee")
				}
			}},
		{name: "binding for another chain", n: 4, members: 3, unbound: []uint64{2}, refused: []error{qc.ErrBindingChain},
			mutate: func(t *testing.T, f *deriveFixture) {
				b, err := qc.SignBinding(f.consensus[2], testKey("sidecar-2"), 4217, 1)
				if err != nil {
					t.Fatal(err)
				}
				f.bindings[2] = b
			}},
		{name: "binding signed by the wrong key", n: 4, members: 3, unbound: []uint64{1}, refused: []error{qc.ErrBindingSignature},
			mutate: func(t *testing.T, f *deriveFixture) {
				b := f.bind(t, 2, "sidecar-1", 1) // validator 2's signature...
				b.ConsensusKey = keyID(f.consensus[1])
				f.bindings[1] = b // ...claiming to be validator 1's
			}},
		{name: "consensus key bound to itself", n: 4, members: 3, unbound: []uint64{0}, refused: []error{qc.ErrBindingSelf},
			mutate: func(t *testing.T, f *deriveFixture) {
				b, err := qc.SignBinding(f.consensus[0], f.consensus[0], testChain, 1)
				if err != nil {
					t.Fatal(err)
				}
				f.bindings[0] = b
			}},
		{name: "sidecar key is another validator's consensus key", n: 4, members: 3, unbound: []uint64{0}, refused: []error{ErrSidecarKeyIsConsensusKey},
			mutate: func(t *testing.T, f *deriveFixture) {
				b, err := qc.SignBinding(f.consensus[0], f.consensus[1], testChain, 1)
				if err != nil {
					t.Fatal(err)
				}
				f.bindings[0] = b
			}},
		{name: "a later binding revokes an earlier one; a future one is not yet in effect", n: 4, members: 4,
			mutate: func(t *testing.T, f *deriveFixture) {
				f.bindings = append(f.bindings, f.bind(t, 0, "sidecar-0b", testEpoch), f.bind(t, 0, "sidecar-0c", testEpoch+1))
			},
			check: func(t *testing.T, f *deriveFixture, c *qc.Committee, r DeriveReport) {
				if !c.Contains(sidecarID("sidecar-0b")) || c.Contains(sidecarID("sidecar-0")) || c.Contains(sidecarID("sidecar-0c")) {
					t.Fatal("validator 0 signs with another key than its binding of epoch 5")
				}
				if len(r.Superseded) != 1 || r.Superseded[0].SidecarKey != sidecarID("sidecar-0") ||
					len(r.Pending) != 1 || r.Pending[0].SidecarKey != sidecarID("sidecar-0c") {
					t.Fatalf("superseded %+v pending %+v", r.Superseded, r.Pending)
				}
			}},
		{name: "only a future binding: unbound until its epoch", n: 4, members: 3, unbound: []uint64{1},
			mutate: func(t *testing.T, f *deriveFixture) { f.bindings[1] = f.bind(t, 1, "sidecar-1", testEpoch+1) },
			check: func(t *testing.T, f *deriveFixture, c *qc.Committee, r DeriveReport) {
				if len(r.Pending) != 1 {
					t.Fatalf("pending %+v", r.Pending)
				}
				f.epoch++
				next, _, err := f.derive()
				if err != nil || !next.Contains(sidecarID("sidecar-1")) {
					t.Fatalf("epoch %d: binding not in effect (%v)", f.epoch, err)
				}
			}},
		{name: "future binding of a validator not yet active is pending, not refused", n: 3, members: 3,
			mutate: func(t *testing.T, f *deriveFixture) {
				f.validators[3].Active = false
				f.bindings[3] = f.bind(t, 3, "sidecar-3", testEpoch+2)
			},
			check: func(t *testing.T, f *deriveFixture, c *qc.Committee, r DeriveReport) {
				if len(r.Pending) != 1 {
					t.Fatalf("pending %+v", r.Pending)
				}
			}},
		{name: "consensus key bound to two sidecar keys: one seat, two members", n: 4, members: 5,
			mutate: func(t *testing.T, f *deriveFixture) { f.bindings = append(f.bindings, f.bind(t, 2, "sidecar-2b", 1)) },
			check: func(t *testing.T, f *deriveFixture, c *qc.Committee, r DeriveReport) {
				for _, tag := range []string{"sidecar-2", "sidecar-2b"} {
					m, ok := c.Member(sidecarID(tag))
					if !ok || m.Seat != keyID(f.consensus[2]) || !strings.HasPrefix(m.Name, "v2-a2010203/") {
						t.Fatalf("%s: %+v %v", tag, m, ok)
					}
				}
				if len(r.Seats[2].Members) != 2 {
					t.Fatalf("seat 2 members %v", r.Seats[2].Members)
				}
				// Three certificates from two seats are no quorum; one more
				// seat makes one.
				signers := func(tags ...string) []*qc.Signer {
					var out []*qc.Signer
					for _, tag := range tags {
						out = append(out, qc.NewSigner(testKey(tag), tag, c.Domain()))
					}
					return out
				}
				if err := c.VerifyQC(testQC(c, signers("sidecar-0", "sidecar-2", "sidecar-2b"))); !errors.Is(err, qc.ErrBelowQuorum) {
					t.Fatalf("qc of two seats: %v", err)
				}
				if err := c.VerifyQC(testQC(c, signers("sidecar-0", "sidecar-1", "sidecar-2b"))); err != nil {
					t.Fatalf("qc of three seats: %v", err)
				}
			}},
		{name: "sidecar key bound by two consensus keys signs for neither", n: 4, members: 2, unbound: []uint64{1, 3},
			refused: []error{ErrSidecarKeyShared, ErrSidecarKeyShared},
			mutate:  func(t *testing.T, f *deriveFixture) { f.bindings[3] = f.bind(t, 3, "sidecar-1", 1) },
			check: func(t *testing.T, f *deriveFixture, c *qc.Committee, r DeriveReport) {
				if c.Contains(sidecarID("sidecar-1")) {
					t.Fatal("shared sidecar key is a member")
				}
			}},
		{name: "shared sidecar key revoked by a later binding is no conflict", n: 4, members: 4,
			mutate: func(t *testing.T, f *deriveFixture) {
				f.bindings[3] = f.bind(t, 3, "sidecar-1", 1)
				f.bindings = append(f.bindings, f.bind(t, 3, "sidecar-3", 2))
			}},
		{name: "the same binding twice counts once", n: 4, members: 4,
			mutate: func(t *testing.T, f *deriveFixture) { f.bindings = append(f.bindings, f.bindings...) }},
		{name: "consensus key listed by two active validators is one seat", n: 3, members: 3, refused: []error{qc.ErrBindingInactive},
			mutate: func(t *testing.T, f *deriveFixture) { f.validators[3].PublicKey = f.validators[1].PublicKey },
			check: func(t *testing.T, f *deriveFixture, c *qc.Committee, r DeriveReport) {
				if len(r.DuplicateKeys) != 1 || r.DuplicateKeys[0] != keyID(f.consensus[1]) || r.Seats[1].Name != "v1-a1010203" {
					t.Fatalf("duplicates %v seats %+v", r.DuplicateKeys, r.Seats)
				}
			}},
		{name: "no active validator", wantErr: ErrNoActiveValidators,
			mutate: func(t *testing.T, f *deriveFixture) {
				for i := range f.validators {
					f.validators[i].Active = false
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newDeriveFixture(t)
			if tc.mutate != nil {
				tc.mutate(t, f)
			}
			c, r, err := f.derive()
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.N() != tc.n || len(c.Members()) != tc.members {
				t.Fatalf("n %d members %d, want %d and %d", c.N(), len(c.Members()), tc.n, tc.members)
			}
			var unbound []uint64
			for _, s := range r.Unbound {
				unbound = append(unbound, s.Index)
				if c.Contains(s.Key) || len(s.Members) != 0 {
					t.Fatalf("unbound seat %s signs", s.Name)
				}
			}
			if !slices.Equal(unbound, tc.unbound) {
				t.Fatalf("unbound %v, want %v", unbound, tc.unbound)
			}
			if len(r.Refused) != len(tc.refused) {
				t.Fatalf("refused %v, want %v", r.Refused, tc.refused)
			}
			for _, want := range tc.refused {
				wantN := 0
				for _, w := range tc.refused {
					if w == want {
						wantN++
					}
				}
				if n := countRefused(r, want); n != wantN {
					t.Fatalf("%d refusals match %v, want %d: %v", n, want, wantN, r.Refused)
				}
			}
			if tc.check != nil {
				tc.check(t, f, c, r)
			}
		})
	}
}

func countRefused(r DeriveReport, want error) int {
	n := 0
	for _, rb := range r.Refused {
		if errors.Is(rb.Err, want) {
			n++
		}
	}
	return n
}

// testQC builds a QC from one certificate of each signer, whatever their
// seats.
func testQC(c *qc.Committee, signers []*qc.Signer) *qc.QC {
	eff := qc.Effects{Sender: qc.Address{1}, Recipient: qc.Address{2}, Amount: 5, Asset: qc.Address{0x20}, NonceSeq: 1}
	tx := qc.Hash{7}
	q := &qc.QC{TxHash: tx, EffectsHash: eff.Hash(), Threshold: uint32(c.Quorum()), Epoch: c.Domain().Epoch}
	for _, s := range signers {
		q.Certs = append(q.Certs, s.Sign(tx, eff, 1))
	}
	q.Hash = qc.ComputeQCHash(q.TxHash, q.EffectsHash, q.Threshold, q.Certs)
	return q
}

// The committee and report depend on the inputs as sets.
func TestDeriveOrderIndependent(t *testing.T) {
	f := newDeriveFixture(t)
	bad, err := qc.SignBinding(f.consensus[0], testKey("x"), 4217, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Validator 0 bound only from epoch 9; validator 1 moves to a new key
	// at epoch 3; validator 2 has two keys; validator 3 moves at epoch 3 to
	// validator 1's old key (no conflict: revoked) and to validator 2's
	// first key (a conflict).
	f.bindings = append(f.bindings[1:], f.bind(t, 0, "sidecar-0b", 9), f.bind(t, 1, "sidecar-1b", 3), f.bind(t, 2, "sidecar-2b", 1),
		f.bind(t, 3, "sidecar-1", 3), f.bind(t, 3, "sidecar-2", 3), bad)
	f.validators = append(f.validators, tempo.Validator{PublicKey: keyID(testKey("consensus-9")), Index: 4})
	want, wantReport, err := f.derive()
	if err != nil {
		t.Fatal(err)
	}
	if len(wantReport.Refused) != 3 || len(wantReport.Unbound) != 1 || len(wantReport.Pending) != 1 || len(wantReport.Superseded) != 2 ||
		len(want.Members()) != 3 || !want.Contains(sidecarID("sidecar-1")) || !want.Contains(sidecarID("sidecar-2b")) {
		t.Fatalf("fixture does not exercise the rules: %d members, report %+v", len(want.Members()), wantReport)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		rng.Shuffle(len(f.bindings), func(i, j int) { f.bindings[i], f.bindings[j] = f.bindings[j], f.bindings[i] })
		rng.Shuffle(len(f.validators), func(i, j int) { f.validators[i], f.validators[j] = f.validators[j], f.validators[i] })
		got, report, err := f.derive()
		if err != nil {
			t.Fatal(err)
		}
		if got.Hash() != want.Hash() || !reflect.DeepEqual(report, wantReport) {
			t.Fatalf("order changed the result: hash %s vs %s", got.Hash(), want.Hash())
		}
	}
	// The hash does change with what the committee is.
	f.bindings = slices.DeleteFunc(f.bindings, func(b qc.Binding) bool { return b.SidecarKey == sidecarID("sidecar-2b") })
	if other, _, err := f.derive(); err != nil || other.Hash() == want.Hash() {
		t.Fatalf("one member fewer, same hash (%v)", err)
	}
}

func TestAcceptBinding(t *testing.T) {
	cases := []struct {
		current, first uint64
		ok             bool
	}{
		{0, 0, false}, // a genesis binding: loaded from files, never learned
		{0, 1, false},
		{0, 2, true},
		{5, 5, false},
		{5, 6, false},
		{5, 7, true},
		{5, 1000, true},
		{math.MaxUint64 - 2, math.MaxUint64, true},
		{math.MaxUint64 - 1, math.MaxUint64, false},
		{math.MaxUint64, math.MaxUint64, false},
	}
	for _, tc := range cases {
		err := AcceptBinding(&qc.Binding{FirstEpoch: tc.first}, tc.current)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrBindingTooEarly)) {
			t.Errorf("current %d, first epoch %d: %v", tc.current, tc.first, err)
		}
	}
}

func TestSchedule(t *testing.T) {
	if err := (Schedule{}).Validate(); err == nil {
		t.Fatal("epoch length 0 accepted")
	}
	s := Schedule{EpochLength: 10}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ height, epoch uint64 }{{0, 0}, {9, 0}, {10, 1}, {29, 2}, {30, 3}} {
		if got := s.EpochOf(tc.height); got != tc.epoch {
			t.Errorf("EpochOf(%d) = %d, want %d", tc.height, got, tc.epoch)
		}
	}
	for _, tc := range []struct {
		s            Schedule
		epoch, block uint64
		err          bool
	}{
		{s, 0, 0, false},
		{s, 1, 9, false},
		{s, 3, 29, false},
		{Schedule{EpochLength: 1}, 1, 0, false},
		{Schedule{EpochLength: math.MaxUint64}, 1, math.MaxUint64 - 1, false},
		{Schedule{EpochLength: math.MaxUint64}, 2, 0, true},
		{s, math.MaxUint64 / 10, math.MaxUint64/10*10 - 1, false},
		{s, math.MaxUint64/10 + 1, 0, true},
	} {
		got, err := tc.s.CommitteeBlock(tc.epoch)
		if tc.err {
			if !errors.Is(err, ErrEpochOutOfRange) {
				t.Errorf("L=%d CommitteeBlock(%d): %d %v, want out of range", tc.s.EpochLength, tc.epoch, got, err)
			}
			continue
		}
		if err != nil || got != tc.block {
			t.Errorf("L=%d CommitteeBlock(%d) = %d %v, want %d", tc.s.EpochLength, tc.epoch, got, err, tc.block)
		}
		// The committee's block is the last of the previous epoch.
		if tc.epoch > 0 && tc.s.EpochOf(got) != tc.epoch-1 {
			t.Errorf("L=%d: block %d of committee %d is in epoch %d", tc.s.EpochLength, got, tc.epoch, tc.s.EpochOf(got))
		}
	}
	if first, err := s.FirstBlock(3); err != nil || first != 30 {
		t.Fatalf("FirstBlock(3) = %d %v", first, err)
	}
}
