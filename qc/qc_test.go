package qc

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
)

func fill32(b byte) (h Hash) {
	for i := range h {
		h[i] = b
	}
	return h
}

func fill20(b byte) (a Address) {
	for i := range a {
		a[i] = b
	}
	return a
}

// TestReferenceGoldenVectors pins byte-exactness with the reference
// implementation's published golden values (its hashing module's test).
func TestReferenceGoldenVectors(t *testing.T) {
	parent := fill32(0x11)
	txHash := TxHash(TxHashInput{
		ChainID:      1337,
		TempoTx:      []byte("tempo:transfer:alice:bob:10"),
		NonceKey:     NonceKey(fill32(0x5b)),
		NonceSeq:     7,
		Expiry:       Expiry{Kind: ExpiryMaxBlockHeight, Value: 99},
		ParentQCHash: &parent,
	})
	effects := Effects{
		Sender: fill20(0x01), Recipient: fill20(0x02), Amount: 10, Asset: fill20(0x03),
		NonceKey: NonceKey(fill32(0x5b)), NonceSeq: 7,
	}
	effectsHash := effects.Hash()
	domain := Domain{ChainID: 1337, Epoch: 42}

	wantHex(t, "tx_hash", txHash[:], "80f0bddcad91b05df8b0f96fe3b42fea9a5b5d358a61664616ec17289d80d8df")
	wantHex(t, "effects_hash", effectsHash[:], "7ff26a3ecef7a937adaa2f13bcbb2dc349b1daaa63b5ede4b18f20d130f8859e")
	wantHex(t, "cert preimage", CertPreimage(domain, txHash, effectsHash),
		"74656d706f2e666173747061792e636572742e707265696d6167652e76310000001574656d706f2e666173747061792e636572742e763100010000000000000539000000000000002a80f0bddcad91b05df8b0f96fe3b42fea9a5b5d358a61664616ec17289d80d8df7ff26a3ecef7a937adaa2f13bcbb2dc349b1daaa63b5ede4b18f20d130f8859e")
	digest := CertDigest(domain, txHash, effectsHash)
	wantHex(t, "cert digest", digest[:], "02bf6c27eb0c808a9fbda3cad277eab0634e6050a068054b878eeccc3e712313")

	var sigA, sigB [SignatureSize]byte
	for i := range sigA {
		sigA[i], sigB[i] = 0xaa, 0xbb
	}
	certA := Certificate{Signer: ValidatorID(fill32(0x0a)), TxHash: txHash, EffectsHash: effectsHash, Signature: sigA, CreatedUnixMillis: 1000}
	certB := Certificate{Signer: ValidatorID(fill32(0x0b)), TxHash: txHash, EffectsHash: effectsHash, Signature: sigB, CreatedUnixMillis: 1001}
	h1 := ComputeQCHash(txHash, effectsHash, 2, []Certificate{certB, certA})
	h2 := ComputeQCHash(txHash, effectsHash, 2, []Certificate{certA, certB})
	wantHex(t, "qc_hash", h1[:], "fee9c0774bd5e57638e46c265bba36430f22e76ce9fa203a5eba6972a7809737")
	if h1 != h2 {
		t.Fatal("qc_hash depends on certificate order")
	}
}

func wantHex(t *testing.T, what string, got []byte, want string) {
	t.Helper()
	if hex.EncodeToString(got) != want {
		t.Errorf("%s:\n got %x\nwant %s", what, got, want)
	}
}

func TestQuorumFor(t *testing.T) {
	for n, want := range map[int]int{1: 1, 2: 2, 3: 3, 4: 3, 5: 4, 7: 5, 10: 7, 31: 21, 100: 67} {
		if got := QuorumFor(n); got != want {
			t.Errorf("QuorumFor(%d) = %d, want %d", n, got, want)
		}
	}
}

// testCommittee returns n deterministic signers and their committee.
func testCommittee(t testing.TB, n int, domain Domain) (*Committee, []*Signer) {
	t.Helper()
	signers := make([]*Signer, n)
	members := make([]Member, n)
	for i := range n {
		seed := make([]byte, ed25519.SeedSize)
		seed[0], seed[1] = byte(i), byte(i>>8)
		signers[i] = NewSigner(ed25519.NewKeyFromSeed(seed), fmt.Sprintf("v%d", i), domain)
		members[i] = Member{Name: signers[i].Name(), ID: signers[i].ID()}
	}
	c, err := NewCommittee(domain, members)
	if err != nil {
		t.Fatal(err)
	}
	return c, signers
}

func testEffects() Effects {
	return Effects{Sender: fill20(1), Recipient: fill20(2), Amount: 10_000_000, Asset: fill20(0x20), NonceSeq: 3}
}

func validQC(t testing.TB, c *Committee, signers []*Signer, effects Effects) *QC {
	t.Helper()
	txHash := TxHash(TxHashInput{ChainID: c.Domain().ChainID, TempoTx: []byte{1, 2, 3}, NonceSeq: effects.NonceSeq})
	a := NewAssembler(c, txHash, effects.Hash())
	for _, s := range signers {
		if a.Ready() {
			break
		}
		if _, err := a.Add(s.Sign(txHash, effects, 1700000000000)); err != nil {
			t.Fatal(err)
		}
	}
	q, err := a.Build()
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// signerOf returns the signer in set with id (same seeds give the same keys
// across domains).
func signerOf(set []*Signer, id ValidatorID) *Signer {
	for _, s := range set {
		if s.ID() == id {
			return s
		}
	}
	panic("no signer with id " + id.Hex())
}

func TestVerifyQC(t *testing.T) {
	domain := Domain{ChainID: 1337, Epoch: 1}
	committee, signers := testCommittee(t, 4, domain)
	_, foreignEpoch := testCommittee(t, 4, Domain{ChainID: 1337, Epoch: 2})
	_, foreignChain := testCommittee(t, 4, Domain{ChainID: 4217, Epoch: 1})
	_, outsiders := testCommittee(t, 8, domain) // signers 4..7 are not members
	rehash := func(q *QC) { q.Hash = ComputeQCHash(q.TxHash, q.EffectsHash, q.Threshold, q.Certs) }
	other := testEffects()
	other.Recipient = fill20(9)

	cases := []struct {
		name   string
		mutate func(q *QC)
		want   error
	}{
		{"valid", func(*QC) {}, nil},
		{"all four signers", func(q *QC) {
			for _, s := range signers {
				if !slices.ContainsFunc(q.Certs, func(c Certificate) bool { return c.Signer == s.ID() }) {
					q.Certs = append(q.Certs, s.Sign(q.TxHash, q.Effects(), 1))
				}
			}
			rehash(q)
		}, nil},
		{"below quorum", func(q *QC) { q.Certs = q.Certs[:2]; rehash(q) }, ErrBelowQuorum},
		{"duplicate signer", func(q *QC) { q.Certs[2] = q.Certs[0]; rehash(q) }, ErrDuplicateSigner},
		{"duplicate signer with fresh timestamp", func(q *QC) {
			q.Certs[2] = signerOf(signers, q.Certs[0].Signer).Sign(q.TxHash, q.Effects(), 99)
			rehash(q)
		}, ErrDuplicateSigner},
		{"below quorum, threshold lowered to match", func(q *QC) { q.Threshold = 2; q.Certs = q.Certs[:2]; rehash(q) }, ErrBelowQuorum},
		{"another epoch", func(q *QC) { q.Epoch = 9 }, ErrWrongEpoch},
		{"epoch not carried", func(q *QC) { q.Epoch = 0 }, nil},
		{"carried threshold is not trusted", func(q *QC) { q.Threshold = 99; rehash(q) }, nil},
		{"foreign epoch certificate", func(q *QC) {
			q.Certs[1] = signerOf(foreignEpoch, q.Certs[1].Signer).Sign(q.TxHash, q.Effects(), 1)
			rehash(q)
		}, ErrBadSignature},
		{"wrong chain certificate", func(q *QC) {
			q.Certs[1] = signerOf(foreignChain, q.Certs[1].Signer).Sign(q.TxHash, q.Effects(), 1)
			rehash(q)
		}, ErrBadSignature},
		{"non-member signer", func(q *QC) {
			q.Certs[1] = outsiders[5].Sign(q.TxHash, q.Effects(), 1)
			rehash(q)
		}, ErrUnknownSigner},
		{"mixed effects", func(q *QC) {
			q.Certs[1] = signerOf(signers, q.Certs[1].Signer).Sign(q.TxHash, other, 1)
			rehash(q)
		}, ErrHashMismatch},
		{"mixed tx", func(q *QC) {
			q.Certs[1] = signerOf(signers, q.Certs[1].Signer).Sign(fill32(7), q.Effects(), 1)
			rehash(q)
		}, ErrHashMismatch},
		{"effects summary tampered", func(q *QC) { q.Certs[0].Effects.Amount++; rehash(q) }, ErrEffectsMismatch},
		{"signature tampered", func(q *QC) { q.Certs[0].Signature[5] ^= 1; rehash(q) }, ErrBadSignature},
		{"qc hash wrong", func(q *QC) { q.Hash[0] ^= 1 }, ErrQCHashMismatch},
		{"timestamp changed after hashing", func(q *QC) { q.Certs[0].CreatedUnixMillis++ }, ErrQCHashMismatch},
		{"more certificates than members", func(q *QC) {
			q.Certs = append(q.Certs, q.Certs...)
			rehash(q)
		}, ErrDuplicateSigner},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The same verdict from the committee, from a fresh Verifier and
			// from one that already verified every certificate of the valid
			// QC (its memo must never excuse a changed certificate).
			warm := NewVerifier(committee, 16)
			if err := warm.VerifyQC(validQC(t, committee, signers, testEffects())); err != nil {
				t.Fatalf("warm-up: %v", err)
			}
			verifiers := []struct {
				name   string
				verify func(*QC) error
			}{
				{"committee", committee.VerifyQC},
				{"fresh verifier", NewVerifier(committee, 16).VerifyQC},
				{"warm verifier", warm.VerifyQC},
			}
			for _, v := range verifiers {
				q := validQC(t, committee, signers, testEffects())
				tc.mutate(q)
				err := v.verify(q)
				if tc.want == nil {
					if err != nil {
						t.Fatalf("%s: VerifyQC: %v", v.name, err)
					}
					continue
				}
				if !errors.Is(err, tc.want) {
					t.Fatalf("%s: VerifyQC error = %v, want %v", v.name, err, tc.want)
				}
			}
		})
	}
}

func TestAssembler(t *testing.T) {
	domain := Domain{ChainID: 1337, Epoch: 1}
	committee, signers := testCommittee(t, 7, domain)
	effects := testEffects()
	txHash := fill32(0x42)
	a := NewAssembler(committee, txHash, effects.Hash())

	first := signers[0].Sign(txHash, effects, 1)
	if ok, err := a.Add(first); !ok || err != nil {
		t.Fatalf("first Add = %v, %v", ok, err)
	}
	// The same signer again, even with another timestamp, is not counted.
	if ok, err := a.Add(signers[0].Sign(txHash, effects, 2)); ok || err != nil {
		t.Fatalf("duplicate Add = %v, %v", ok, err)
	}
	// Mismatched effects and bad signatures are refused.
	other := effects
	other.Amount++
	if _, err := a.Add(signers[1].Sign(txHash, other, 1)); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("mismatched effects: %v", err)
	}
	bad := signers[1].Sign(txHash, effects, 1)
	bad.Signature[0] ^= 0xff
	if _, err := a.Add(bad); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("bad signature: %v", err)
	}
	if _, err := a.Build(); !errors.Is(err, ErrBelowQuorum) {
		t.Fatalf("Build below quorum: %v", err)
	}
	for _, s := range signers[1:6] { // 6 of 7 signers, quorum is 5
		if _, err := a.Add(s.Sign(txHash, effects, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if a.Count() != 6 || !a.Ready() {
		t.Fatalf("count %d ready %v", a.Count(), a.Ready())
	}
	q, err := a.Build()
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Certs) != 5 || q.Threshold != 5 {
		t.Fatalf("QC has %d certs threshold %d, want exactly the quorum 5", len(q.Certs), q.Threshold)
	}
	if err := committee.VerifyQC(q); err != nil {
		t.Fatal(err)
	}
	// Deterministic: another assembler with the same certificates in another
	// order builds the same QC.
	b := NewAssembler(committee, txHash, effects.Hash())
	for i := 5; i >= 0; i-- {
		if _, err := b.AddVerified(a.certs[a.signers[signers[i].ID()]]); err != nil {
			t.Fatal(err)
		}
	}
	q2, _ := b.Build()
	if q2.Hash != q.Hash {
		t.Fatal("assemblers with the same certificates built different QCs")
	}
}

func TestNewCommitteeRejectsDuplicates(t *testing.T) {
	id := ValidatorID(fill32(1))
	if _, err := NewCommittee(Domain{}, []Member{{Name: "a", ID: id}, {Name: "b", ID: id}}); err == nil {
		t.Fatal("duplicate ids accepted")
	}
	if _, err := NewCommittee(Domain{}, nil); err == nil {
		t.Fatal("empty committee accepted")
	}
}

func TestCommitteeHashIndependentOfOrder(t *testing.T) {
	d := Domain{ChainID: 1, Epoch: 1}
	a := Member{Name: "a", ID: ValidatorID(fill32(1))}
	b := Member{Name: "b", ID: ValidatorID(fill32(2))}
	c1, _ := NewCommittee(d, []Member{a, b})
	c2, _ := NewCommittee(d, []Member{b, a})
	c3, _ := NewCommittee(Domain{ChainID: 1, Epoch: 2}, []Member{a, b})
	if c1.Hash() != c2.Hash() {
		t.Fatal("committee hash depends on member order")
	}
	if c1.Hash() == c3.Hash() {
		t.Fatal("committee hash ignores the epoch")
	}
}

func TestVerifyEquivocation(t *testing.T) {
	d := Domain{ChainID: 1337, Epoch: 1}
	committee, signers := testCommittee(t, 4, d)
	e1 := testEffects()
	e2 := e1
	e2.Recipient = fill20(7)
	s := signers[1]
	valid := Equivocation{First: s.Sign(fill32(1), e1, 1), Second: s.Sign(fill32(2), e2, 2)}
	if err := committee.VerifyEquivocation(&valid); err != nil {
		t.Fatal(err)
	}
	sameTx := Equivocation{First: s.Sign(fill32(1), e1, 1), Second: s.Sign(fill32(1), e1, 5)}
	otherSigner := Equivocation{First: s.Sign(fill32(1), e1, 1), Second: signers[2].Sign(fill32(2), e2, 2)}
	e3 := e1
	e3.NonceSeq++
	otherKey := Equivocation{First: s.Sign(fill32(1), e1, 1), Second: s.Sign(fill32(2), e3, 2)}
	for name, e := range map[string]Equivocation{"same tx": sameTx, "other signer": otherSigner, "other key": otherKey} {
		if err := committee.VerifyEquivocation(&e); !errors.Is(err, ErrNotEquivocation) {
			t.Errorf("%s: %v", name, err)
		}
	}
	forged := valid
	forged.Second.Signature[0] ^= 1
	if err := committee.VerifyEquivocation(&forged); !errors.Is(err, ErrBadSignature) {
		t.Errorf("forged: %v", err)
	}
}

func TestVerifierRemember(t *testing.T) {
	committee, signers := testCommittee(t, 4, Domain{ChainID: 1337, Epoch: 1})
	q := validQC(t, committee, signers, testEffects())
	forged := q.Certs[0]
	forged.Signature[0] ^= 1

	v := NewVerifier(committee, 16)
	if err := v.VerifyCertificate(&forged); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged certificate: %v, want ErrBadSignature", err)
	}
	// Remember is a promise by the caller (its own certificates); the memo
	// then skips the signature check, but never membership or effects.
	v.Remember(&forged)
	if err := v.VerifyCertificate(&forged); err != nil {
		t.Fatalf("remembered certificate: %v", err)
	}
	tampered := forged
	tampered.Effects.Amount++
	if err := v.VerifyCertificate(&tampered); !errors.Is(err, ErrEffectsMismatch) {
		t.Fatalf("remembered certificate with other effects: %v, want ErrEffectsMismatch", err)
	}
	if err := committee.VerifyCertificate(&forged); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("the committee itself must not share the memo: %v", err)
	}
}

// mapMemo is a SignatureMemo that forgets nothing and counts lookups.
type mapMemo struct {
	mu      sync.Mutex
	keys    map[[32]byte]bool
	lookups int
}

func (m *mapMemo) Add(k [32]byte) { m.mu.Lock(); m.keys[k] = true; m.mu.Unlock() }

func (m *mapMemo) Contains(k [32]byte) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lookups++
	return m.keys[k]
}

// A Verifier given its own memo records there exactly the signatures that
// verified, and a QC whose certificates it holds is checked against it.
func TestVerifierWithMemo(t *testing.T) {
	committee, signers := testCommittee(t, 4, Domain{ChainID: 1337, Epoch: 1})
	q := validQC(t, committee, signers, testEffects())
	memo := &mapMemo{keys: make(map[[32]byte]bool)}
	v := NewVerifierWithMemo(committee, memo)
	forged := q.Certs[0]
	forged.Signature[0] ^= 1
	if err := v.VerifyCertificate(&forged); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged certificate: %v, want ErrBadSignature", err)
	}
	if len(memo.keys) != 0 {
		t.Fatalf("a failed signature was remembered: %d keys", len(memo.keys))
	}
	for i := range q.Certs {
		if err := v.VerifyCertificate(&q.Certs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if len(memo.keys) != len(q.Certs) {
		t.Fatalf("%d keys remembered, want %d", len(memo.keys), len(q.Certs))
	}
	before := memo.lookups
	if err := v.VerifyQC(q); err != nil {
		t.Fatal(err)
	}
	if memo.lookups-before != len(q.Certs) {
		t.Errorf("VerifyQC looked up %d signatures in the memo, want %d", memo.lookups-before, len(q.Certs))
	}
}

// TestVerifierMemoBindsEverything: a verified certificate is remembered
// by everything its signature binds, so changing any of it (with the rest
// kept consistent) is verified afresh and fails.
func TestVerifierMemoBindsEverything(t *testing.T) {
	committee, signers := testCommittee(t, 4, Domain{ChainID: 1337, Epoch: 1})
	q := validQC(t, committee, signers, testEffects())
	v := NewVerifier(committee, 16)
	if err := v.VerifyQC(q); err != nil {
		t.Fatal(err)
	}
	other := testEffects()
	other.Amount++
	for name, mutate := range map[string]func(c *Certificate){
		"signature": func(c *Certificate) { c.Signature[5] ^= 1 },
		"signer":    func(c *Certificate) { c.Signer, c.SignerName = q.Certs[1].Signer, q.Certs[1].SignerName },
		"tx hash":   func(c *Certificate) { c.TxHash[0] ^= 1 },
		"effects":   func(c *Certificate) { c.Effects, c.EffectsHash = other, other.Hash() },
	} {
		c := q.Certs[0]
		mutate(&c)
		if err := v.VerifyCertificate(&c); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s changed after the memo: %v, want ErrBadSignature", name, err)
		}
	}
	if err := v.VerifyCertificate(&q.Certs[0]); err != nil {
		t.Fatalf("the remembered certificate itself: %v", err)
	}
}

// TestBatch checks that a frame's batch accepts only when every signature
// verifies, remembers its certificates only then, and rejects outsiders
// and bad effects before any signature work.
func TestBatch(t *testing.T) {
	committee, signers := testCommittee(t, 4, Domain{ChainID: 1337, Epoch: 1})
	q := validQC(t, committee, signers, testEffects())
	frameMsg := []byte("frame digest")
	frameSig := ed25519.Sign(signers[1].key, frameMsg)
	_, outsiders := testCommittee(t, 5, Domain{ChainID: 1337, Epoch: 1})
	outsider := outsiders[4]

	cases := []struct {
		name    string
		fill    func(b *Batch) error // returns the first Add error
		wantAdd error
		wantVer error
	}{
		{"all valid", func(b *Batch) error {
			if err := b.AddQC(q); err != nil {
				return err
			}
			return b.AddMemberSignature(signers[1].ID(), frameMsg, frameSig)
		}, nil, nil},
		{"one bad certificate among valid ones", func(b *Batch) error {
			bad := q.Certs[1]
			bad.Signature[3] ^= 1
			for _, c := range []*Certificate{&q.Certs[0], &bad, &q.Certs[2]} {
				if err := b.AddCertificate(c); err != nil {
					return err
				}
			}
			return nil
		}, nil, ErrBadSignature},
		{"frame signature by another member", func(b *Batch) error {
			if err := b.AddQC(q); err != nil {
				return err
			}
			return b.AddMemberSignature(signers[2].ID(), frameMsg, frameSig)
		}, nil, ErrBadSignature},
		{"outsider's certificate", func(b *Batch) error {
			c := outsider.Sign(q.TxHash, testEffects(), 1)
			return b.AddCertificate(&c)
		}, ErrUnknownSigner, nil},
		{"outsider's frame signature", func(b *Batch) error {
			return b.AddMemberSignature(outsider.ID(), frameMsg, ed25519.Sign(outsider.key, frameMsg))
		}, ErrUnknownSigner, nil},
		{"effects not matching", func(b *Batch) error {
			c := q.Certs[0]
			c.Effects.Amount++
			return b.AddCertificate(&c)
		}, ErrEffectsMismatch, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := NewVerifier(committee, 64)
			b := v.NewBatch()
			err := tc.fill(b)
			if !errors.Is(err, tc.wantAdd) {
				t.Fatalf("add: %v, want %v", err, tc.wantAdd)
			}
			if err != nil {
				return
			}
			if err := b.Verify(); !errors.Is(err, tc.wantVer) {
				t.Fatalf("verify: %v, want %v", err, tc.wantVer)
			}
			// Certificates are remembered only from a batch that verified.
			again := v.NewBatch()
			if err := again.AddQC(q); err != nil {
				t.Fatal(err)
			}
			wantQueued := 0
			if tc.wantVer != nil {
				wantQueued = len(q.Certs)
			}
			if again.Len() != wantQueued {
				t.Fatalf("afterwards %d signatures queued again, want %d", again.Len(), wantQueued)
			}
		})
	}
}

func TestBatchQueuesEachSignatureOnce(t *testing.T) {
	committee, signers := testCommittee(t, 4, Domain{ChainID: 1337, Epoch: 1})
	q := validQC(t, committee, signers, testEffects())
	b := NewVerifier(committee, 64).NewBatch()
	for range 3 {
		if err := b.AddQC(q); err != nil {
			t.Fatal(err)
		}
	}
	if b.Len() != len(q.Certs) {
		t.Fatalf("%d signatures queued for %d distinct certificates", b.Len(), len(q.Certs))
	}
	if err := b.Verify(); err != nil {
		t.Fatal(err)
	}
}
