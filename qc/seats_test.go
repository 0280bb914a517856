package qc

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"testing"
)

// seatedFixture is a committee derived from a chain: four seats (consensus
// keys c0..c3); c0 and c1 bound to one sidecar key each, c2 bound to two
// (k2a, k2b), c3 not bound. n = 4, quorum 3, and only c0, c1 and c2 can sign.
type seatedFixture struct {
	committee *Committee
	seats     []ValidatorID
	k0, k1    *Signer
	k2a, k2b  *Signer
}

func newSeatedFixture(t *testing.T, domain Domain) seatedFixture {
	t.Helper()
	key := func(tag string) ed25519.PrivateKey {
		seed := make([]byte, ed25519.SeedSize)
		copy(seed, tag)
		return ed25519.NewKeyFromSeed(seed)
	}
	seats := make([]ValidatorID, 4)
	for i := range seats {
		seats[i] = ValidatorID(key(fmt.Sprintf("consensus-%d", i)).Public().(ed25519.PublicKey))
	}
	f := seatedFixture{seats: seats,
		k0: NewSigner(key("sidecar-0"), "k0", domain), k1: NewSigner(key("sidecar-1"), "k1", domain),
		k2a: NewSigner(key("sidecar-2a"), "k2a", domain), k2b: NewSigner(key("sidecar-2b"), "k2b", domain)}
	members := []Member{
		{Name: "k0", ID: f.k0.ID(), Seat: seats[0]}, {Name: "k1", ID: f.k1.ID(), Seat: seats[1]},
		{Name: "k2a", ID: f.k2a.ID(), Seat: seats[2]}, {Name: "k2b", ID: f.k2b.ID(), Seat: seats[2]},
	}
	c, err := NewSeatedCommittee(domain, seats, members)
	if err != nil {
		t.Fatal(err)
	}
	f.committee = c
	return f
}

func TestSeatedCommitteeCountsSeats(t *testing.T) {
	domain := Domain{ChainID: 1337, Epoch: 4}
	f := newSeatedFixture(t, domain)
	c := f.committee
	if c.N() != 4 || c.Quorum() != 3 || c.F() != 1 || len(c.Members()) != 4 || !c.Seated() {
		t.Fatalf("n=%d quorum=%d f=%d members=%d seated=%v", c.N(), c.Quorum(), c.F(), len(c.Members()), c.Seated())
	}
	if seat, ok := c.SeatOf(f.k2b.ID()); !ok || seat != f.seats[2] {
		t.Fatalf("seat of k2b: %v %v", seat, ok)
	}
	if c.Contains(f.seats[3]) {
		t.Fatal("an unbound consensus key can sign")
	}
	eff := testEffects()
	tx := fill32(7)

	// Two keys of one seat count once: k0, k2a, k2b is two seats.
	a := NewAssembler(c, tx, eff.Hash())
	for _, s := range []*Signer{f.k0, f.k2a, f.k2b} {
		if _, err := a.Add(s.Sign(tx, eff, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if a.Ready() || a.Count() != 2 {
		t.Fatalf("three keys of two seats: ready=%v count=%d", a.Ready(), a.Count())
	}
	if _, err := a.Build(); !errors.Is(err, ErrBelowQuorum) {
		t.Fatalf("build from two seats: %v", err)
	}
	if _, err := a.Add(f.k1.Sign(tx, eff, 1)); err != nil {
		t.Fatal(err)
	}
	q, err := a.Build()
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Certs) != 3 || q.Threshold != 3 || q.Epoch != 4 {
		t.Fatalf("qc: %d certs, threshold %d, epoch %d", len(q.Certs), q.Threshold, q.Epoch)
	}
	if err := c.VerifyQC(q); err != nil {
		t.Fatal(err)
	}

	// A QC whose certificates cover only two seats is refused even though
	// it carries three distinct signers.
	short := &QC{TxHash: tx, EffectsHash: eff.Hash(), Threshold: 3, Epoch: 4,
		Certs: []Certificate{f.k0.Sign(tx, eff, 1), f.k2a.Sign(tx, eff, 1), f.k2b.Sign(tx, eff, 1)}}
	short.Hash = ComputeQCHash(short.TxHash, short.EffectsHash, short.Threshold, short.Certs)
	if err := c.VerifyQC(short); !errors.Is(err, ErrBelowQuorum) {
		t.Fatalf("qc of two seats: %v", err)
	}
	// Every seat's key in one QC (one seat twice) still verifies.
	full := &QC{TxHash: tx, EffectsHash: eff.Hash(), Threshold: 3, Epoch: 4,
		Certs: []Certificate{f.k0.Sign(tx, eff, 1), f.k1.Sign(tx, eff, 1), f.k2a.Sign(tx, eff, 1), f.k2b.Sign(tx, eff, 1)}}
	full.Hash = ComputeQCHash(full.TxHash, full.EffectsHash, full.Threshold, full.Certs)
	if err := c.VerifyQC(full); err != nil {
		t.Fatalf("qc with a seat twice: %v", err)
	}
}

func TestSeatedCommitteeConstruction(t *testing.T) {
	domain := Domain{ChainID: 1337, Epoch: 1}
	f := newSeatedFixture(t, domain)
	stranger := ValidatorID{0xEE}
	cases := []struct {
		name    string
		seats   []ValidatorID
		members []Member
	}{
		{"no seats", nil, nil},
		{"seat twice", []ValidatorID{f.seats[0], f.seats[0]}, nil},
		{"member of no seat", f.seats, []Member{{Name: "x", ID: f.k0.ID(), Seat: stranger}}},
		{"member twice", f.seats, []Member{{Name: "a", ID: f.k0.ID(), Seat: f.seats[0]}, {Name: "b", ID: f.k0.ID(), Seat: f.seats[1]}}},
	}
	for _, tc := range cases {
		if _, err := NewSeatedCommittee(domain, tc.seats, tc.members); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	// Seats without members: the committee exists but nobody can sign.
	c, err := NewSeatedCommittee(domain, f.seats, nil)
	if err != nil || c.N() != 4 || len(c.Members()) != 0 {
		t.Fatalf("unbound committee: %v", err)
	}
	// A committee file's members are their own seats, however spelled, and
	// its hash does not change with seats.
	plain, _ := testCommittee(t, 4, domain)
	spelled := make([]Member, 0, 4)
	for _, m := range plain.Members() {
		spelled = append(spelled, Member{Name: m.Name, ID: m.ID, Seat: m.ID})
	}
	again, err := NewCommittee(domain, spelled)
	if err != nil || again.Hash() != plain.Hash() || again.Seated() {
		t.Fatalf("own seats spelled out: err=%v same hash=%v seated=%v", err, again.Hash() == plain.Hash(), again.Seated())
	}
	if f.committee.Hash() == plain.Hash() {
		t.Fatal("different committees, one hash")
	}
	if _, err := NewCommittee(domain, []Member{{Name: "x", ID: f.k0.ID(), Seat: f.seats[0]}}); err == nil {
		t.Fatal("NewCommittee accepted a member of another key's seat")
	}
}

func TestSeatEquivocation(t *testing.T) {
	f := newSeatedFixture(t, Domain{ChainID: 1337, Epoch: 1})
	a, b := testEffects(), testEffects()
	b.Recipient = fill20(9)
	txA, txB := fill32(1), fill32(2)
	// Two sidecar keys of one consensus key signing conflicting payments is
	// that seat's equivocation.
	ev := &Equivocation{First: f.k2a.Sign(txA, a, 1), Second: f.k2b.Sign(txB, b, 1)}
	if err := f.committee.VerifyEquivocation(ev); err != nil {
		t.Fatalf("two keys of one seat: %v", err)
	}
	ev = &Equivocation{First: f.k0.Sign(txA, a, 1), Second: f.k1.Sign(txB, b, 1)}
	if err := f.committee.VerifyEquivocation(ev); !errors.Is(err, ErrNotEquivocation) {
		t.Fatalf("two seats: %v", err)
	}
	ev = &Equivocation{First: f.k2a.Sign(txA, a, 1), Second: f.k2b.Sign(txA, a, 2)}
	if err := f.committee.VerifyEquivocation(ev); !errors.Is(err, ErrNotEquivocation) {
		t.Fatalf("one seat agreeing with itself: %v", err)
	}
}

// closeFixture returns committees of epochs 1 and 2 over the same keys, and a
// valid close of epoch 2 by signer 0 listing its own epoch-2 certificate and
// one carried from epoch 1 (signed there by signer 3).
func closeFixture(t *testing.T) (c1, c2 *Committee, s1, s2 []*Signer, keys []ed25519.PrivateKey, cl *Close) {
	t.Helper()
	c1, s1 = testCommittee(t, 4, Domain{ChainID: 1337, Epoch: 1})
	c2, s2 = testCommittee(t, 4, Domain{ChainID: 1337, Epoch: 2})
	keys = make([]ed25519.PrivateKey, 4)
	for i := range keys {
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = byte(i)
		keys[i] = ed25519.NewKeyFromSeed(seed)
	}
	a, b := testEffects(), testEffects()
	b.NonceSeq = 9
	cl = &Close{ChainID: 1337, Epoch: 2, Height: 4321, Entries: []CloseEntry{
		{Request: []byte("request a"), Cert: s2[0].Sign(fill32(1), a, 1), CertEpoch: 2},
		{Request: []byte("request b"), Cert: s1[3].Sign(fill32(2), b, 1), CertEpoch: 1},
	}}
	if err := SignClose(keys[0], cl); err != nil {
		t.Fatal(err)
	}
	return c1, c2, s1, s2, keys, cl
}

func TestVerifyClose(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(cl *Close, keys []ed25519.PrivateKey)
		want   error
	}{
		{"valid", func(*Close, []ed25519.PrivateKey) {}, nil},
		{"another chain", func(cl *Close, _ []ed25519.PrivateKey) { cl.ChainID = 4217 }, ErrCloseChain},
		{"lies about its epoch", func(cl *Close, _ []ed25519.PrivateKey) { cl.Epoch = 3 }, ErrCloseEpoch},
		{"lies about its signer", func(cl *Close, keys []ed25519.PrivateKey) {
			cl.Signer = ValidatorID(keys[1].Public().(ed25519.PublicKey))
		}, ErrCloseSignature},
		{"lies about its height", func(cl *Close, _ []ed25519.PrivateKey) { cl.Height-- }, ErrCloseSignature},
		{"an entry stripped", func(cl *Close, _ []ed25519.PrivateKey) { cl.Entries = cl.Entries[:1] }, ErrCloseSignature},
		{"an entry swapped", func(cl *Close, _ []ed25519.PrivateKey) { cl.Entries[0].Cert.TxHash = fill32(5) }, ErrCloseSignature},
		{"signed by a non-member", func(cl *Close, _ []ed25519.PrivateKey) {
			seed := make([]byte, ed25519.SeedSize)
			seed[0] = 99
			if err := SignClose(ed25519.NewKeyFromSeed(seed), cl); err != nil {
				t.Fatal(err)
			}
		}, ErrCloseSigner},
		{"signature tampered", func(cl *Close, _ []ed25519.PrivateKey) { cl.Signature[3] ^= 1 }, ErrCloseSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, c2, _, _, keys, cl := closeFixture(t)
			tc.mutate(cl, keys)
			if err := c2.VerifyClose(cl); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestCheckCloseEntry(t *testing.T) {
	c1, c2, s1, s2, keys, cl := closeFixture(t)
	of := func(e uint64) *Committee {
		switch e {
		case 1:
			return c1
		case 2:
			return c2
		}
		return nil
	}
	for i := range cl.Entries {
		if err := CheckCloseEntry(cl, i, of); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	eff := testEffects()
	bad := []struct {
		name  string
		entry CloseEntry
	}{
		{"closed epoch, another signer's certificate", CloseEntry{Cert: s2[1].Sign(fill32(3), eff, 1), CertEpoch: 2}},
		{"certificate of a later epoch", CloseEntry{Cert: s2[0].Sign(fill32(3), eff, 1), CertEpoch: 3}},
		{"certificate of an unknown epoch", CloseEntry{Cert: s1[0].Sign(fill32(3), eff, 1), CertEpoch: 0}},
		{"certificate claims the wrong epoch", CloseEntry{Cert: s1[2].Sign(fill32(3), eff, 1), CertEpoch: 2}},
		{"carried certificate signed for another epoch", CloseEntry{Cert: s2[2].Sign(fill32(3), eff, 1), CertEpoch: 1}},
	}
	for _, tc := range bad {
		c := *cl
		c.Entries = append([]CloseEntry{tc.entry}, cl.Entries...)
		if err := SignClose(keys[0], &c); err != nil {
			t.Fatal(err)
		}
		if err := c2.VerifyClose(&c); err != nil {
			t.Fatalf("%s: the close itself: %v", tc.name, err)
		}
		if err := CheckCloseEntry(&c, 0, of); !errors.Is(err, ErrCloseEntry) {
			t.Errorf("%s: %v", tc.name, err)
		}
		if err := CheckCloseEntry(&c, 1, of); err != nil {
			t.Errorf("%s: a good entry beside it: %v", tc.name, err)
		}
	}
}
