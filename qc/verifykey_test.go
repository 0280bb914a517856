package qc

import (
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"runtime"
	"testing"
	"time"
)

// Every member verifies under ZIP215, alone or in a batch (SPEC §5). These
// tests hold the two paths to identical verdicts, on the ZIP215 vectors and
// on batches mixing valid and invalid signatures.

// zip215Message is what every ZIP215 vector signs.
var zip215Message = []byte("Zcash")

// loadZIP215Vectors reads testdata/zip215.json.gz: [public key, signature]
// pairs in hex, every one valid under ZIP215, covering small-order and
// non-canonical encodings of A and R.
func loadZIP215Vectors(t testing.TB) [][2][]byte {
	t.Helper()
	f, err := os.Open("testdata/zip215.json.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var raw [][2]string
	if err := json.NewDecoder(zr).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	if len(raw) < 100 {
		t.Fatalf("only %d ZIP215 vectors", len(raw))
	}
	out := make([][2][]byte, len(raw))
	for i, v := range raw {
		out[i] = [2][]byte{mustHex(t, v[0]), mustHex(t, v[1])}
	}
	return out
}

func entryFor(pub, msg, sig []byte) batchEntry {
	var id ValidatorID
	copy(id[:], pub)
	return batchEntry{key: newMemberKey(id), msg: msg, sig: sig}
}

func TestZIP215VectorsSingleAndBatch(t *testing.T) {
	vectors := loadZIP215Vectors(t)
	entries := make([]batchEntry, 0, len(vectors))
	stdlibRejects := 0
	for i, v := range vectors {
		e := entryFor(v[0], zip215Message, v[1])
		var id ValidatorID
		copy(id[:], v[0])
		if !e.key.verify(e.msg, e.sig) {
			t.Errorf("vector %d: precomputed key rejects %x", i, v[1])
		}
		if !verifyZIP215(id, e.msg, e.sig) {
			t.Errorf("vector %d: plain key rejects %x", i, v[1])
		}
		if ok, _ := verifyBatch([]batchEntry{e, e}); !ok {
			t.Errorf("vector %d: batch of two copies rejects", i)
		}
		if !ed25519.Verify(v[0], zip215Message, v[1]) {
			stdlibRejects++
		}
		entries = append(entries, e)
	}
	if ok, valid := verifyBatch(entries); !ok {
		t.Fatalf("batch of all %d vectors rejects: %v", len(entries), valid)
	}
	// The vectors exist because the cofactorless rule disagrees on them;
	// if the standard library accepted them all they would test nothing.
	if stdlibRejects == 0 {
		t.Fatal("crypto/ed25519 accepts every vector: the file is not the ZIP215 set")
	}
	t.Logf("%d vectors, %d of them rejected by crypto/ed25519", len(vectors), stdlibRejects)
}

// groupOrder is ℓ = 2^252 + 27742317777372353535851937790883648493, the
// order of the ed25519 base point.
func groupOrder() *big.Int {
	c, _ := new(big.Int).SetString("27742317777372353535851937790883648493", 10)
	return c.Add(c, new(big.Int).Lsh(big.NewInt(1), 252))
}

// addOrderToS returns sig with ℓ added to its little-endian S, a
// non-canonical encoding of the same scalar.
func addOrderToS(sig []byte) []byte {
	out := append([]byte(nil), sig...)
	le := out[32:]
	be := make([]byte, 32)
	for i := range le {
		be[31-i] = le[i]
	}
	s := new(big.Int).SetBytes(be)
	s.Add(s, groupOrder())
	b := s.FillBytes(make([]byte, 32))
	for i := range b {
		le[31-i] = b[i]
	}
	return out
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBatchAgreesWithSingle runs each case alone, and inside batches of
// valid signatures and of ZIP215 vectors, and requires the same verdict
// for it everywhere, with the batch valid exactly when all entries are.
func TestBatchAgreesWithSingle(t *testing.T) {
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	pub := key.Public().(ed25519.PublicKey)
	msg := []byte("certificate digest, 32 bytes....")
	sig := ed25519.Sign(key, msg)
	identity := mustHex(t, "0100000000000000000000000000000000000000000000000000000000000000")
	// A non-canonical encoding of the identity (y = p + 1).
	identityNonCanonical := mustHex(t, "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
	smallOrderSig := append(append([]byte(nil), identity...), make([]byte, 32)...) // R = identity, S = 0
	vectors := loadZIP215Vectors(t)

	cases := []struct {
		name string
		pub  []byte
		msg  []byte
		sig  []byte
		want bool
	}{
		{"valid", pub, msg, sig, true},
		{"other message", pub, []byte("another digest, 32 bytes........"), sig, false},
		{"flipped R bit", pub, msg, flip(sig, 3), false},
		{"flipped S bit", pub, msg, flip(sig, 40), false},
		{"S plus group order", pub, msg, addOrderToS(sig), false},
		{"top bits of S set", pub, msg, setByte(sig, 63, sig[63]|0xe0), false},
		{"small-order key, R identity, S zero", identity, msg, smallOrderSig, true},
		{"non-canonical small-order key", identityNonCanonical, msg, smallOrderSig, true},
		{"key not on the curve", mustHex(t, "0200000000000000000000000000000000000000000000000000000000000000"), msg, sig, false},
		{"short signature", pub, msg, sig[:63], false},
		{"ZIP215 vector", vectors[7][0], zip215Message, vectors[7][1], true},
		// The vectors' keys and R are small-order points: such a
		// signature verifies for every message, under ZIP215 by design.
		{"ZIP215 vector, other message", vectors[7][0], msg, vectors[7][1], true},
		{"ZIP215 vector, S changed", vectors[7][0], zip215Message, flip(vectors[7][1], 32), false},
		{"ZIP215 vector, S plus group order", vectors[9][0], zip215Message, addOrderToS(vectors[9][1]), false},
	}
	valid := entryFor(pub, msg, sig)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := entryFor(tc.pub, tc.msg, tc.sig)
			if got := e.key.verify(e.msg, e.sig); got != tc.want {
				t.Fatalf("single verification says %v, want %v", got, tc.want)
			}
			var id ValidatorID
			copy(id[:], tc.pub)
			if got := verifyZIP215(id, tc.msg, tc.sig); got != tc.want {
				t.Fatalf("plain-key verification says %v, want %v", got, tc.want)
			}
			batches := map[string][]batchEntry{
				"among valid":   {valid, e, valid},
				"first":         {e, valid},
				"among vectors": {entryFor(vectors[0][0], zip215Message, vectors[0][1]), e, entryFor(vectors[1][0], zip215Message, vectors[1][1])},
			}
			for name, batch := range batches {
				ok, verdicts := verifyBatch(batch)
				if ok != tc.want {
					t.Errorf("%s: batch says %v, want %v", name, ok, tc.want)
				}
				for i, v := range verdicts {
					if single := batch[i].key.verify(batch[i].msg, batch[i].sig); v != single {
						t.Errorf("%s: entry %d: batch verdict %v, single %v", name, i, v, single)
					}
				}
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	out := append([]byte(nil), b...)
	out[i] ^= 1
	return out
}

func setByte(b []byte, i int, v byte) []byte {
	out := append([]byte(nil), b...)
	out[i] = v
	return out
}

// FuzzBatchAgreesWithSingle mutates keys, messages and signatures around
// valid ones and ZIP215 vectors, and checks that a batch holding the input
// between two valid signatures gives every entry its single verdict, and
// that whatever crypto/ed25519 accepts ZIP215 accepts too (a light client
// verifying with the standard library is stricter, never looser).
func FuzzBatchAgreesWithSingle(f *testing.F) {
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	pub := key.Public().(ed25519.PublicKey)
	msg := []byte("certificate digest, 32 bytes....")
	f.Add([]byte(pub), msg, ed25519.Sign(key, msg))
	for _, v := range loadZIP215Vectors(f)[:16] {
		f.Add(v[0], zip215Message, v[1])
	}
	valid := entryFor(pub, msg, ed25519.Sign(key, msg))
	f.Fuzz(func(t *testing.T, pub, msg, sig []byte) {
		if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
			return
		}
		e := entryFor(pub, msg, sig)
		single := e.key.verify(msg, sig)
		if ed25519.Verify(pub, msg, sig) && !single {
			t.Fatalf("crypto/ed25519 accepts what ZIP215 rejects (pub %x sig %x)", pub, sig)
		}
		ok, verdicts := verifyBatch([]batchEntry{valid, e, valid})
		if ok != single || !verdicts[0] || verdicts[1] != single || !verdicts[2] {
			t.Fatalf("batch %v %v, single %v (pub %x sig %x)", ok, verdicts, single, pub, sig)
		}
	})
}

// Committees of one process that seat the same validator share its expanded
// key, and a key no committee holds any more leaves the table.
func TestCommitteesShareExpandedKeys(t *testing.T) {
	domain := Domain{ChainID: 42431}
	members := make([]Member, 4)
	for i := range members {
		pub, _, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		members[i] = Member{Name: fmt.Sprintf("m%d", i), ID: ValidatorID(pub)}
	}
	first, err := NewCommittee(domain, members)
	if err != nil {
		t.Fatal(err)
	}
	// The next epoch keeps m1..m3 and seats m0 elsewhere.
	second, err := NewCommittee(domain, members[1:])
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members[1:] {
		a, b := first.keys[first.index[m.ID]].expanded, second.keys[second.index[m.ID]].expanded
		if a == nil || a != b {
			t.Fatalf("%s: committees hold expanded keys %p and %p, want one shared key", m.Name, a, b)
		}
	}
	held := func(ids ...ValidatorID) int {
		expandedKeys.mu.Lock()
		defer expandedKeys.mu.Unlock()
		n := 0
		for _, id := range ids {
			if _, ok := expandedKeys.m[id]; ok {
				n++
			}
		}
		return n
	}
	if k := newMemberKey(notAPoint); k.expanded != nil {
		t.Fatal("a key that is not a curve point got an expanded key")
	}
	if held(notAPoint) != 0 {
		t.Fatal("the table holds an entry for a key that is not a point")
	}
	ids := []ValidatorID{members[0].ID, members[1].ID, members[2].ID, members[3].ID}
	if got := held(ids...); got != 4 {
		t.Fatalf("table holds %d of the 4 keys, want 4", got)
	}
	runtime.KeepAlive(first)
	first = nil
	deadline := time.Now().Add(10 * time.Second)
	for held(members[0].ID) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the key only the dropped committee held is still in the table")
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	if got := held(ids[1:]...); got != 3 {
		t.Fatalf("table holds %d of the 3 keys the live committee seats, want 3", got)
	}
	runtime.KeepAlive(second)
}

// notAPoint is no curve point's encoding: y = 2 gives an x² with no root.
var notAPoint = ValidatorID{2}

// sign must produce exactly crypto/ed25519's signatures: certificates signed
// before and after the switch of library, or by other implementations, hash
// and compare the same.
func TestSignMatchesStdlib(t *testing.T) {
	for i := range 64 {
		seed := make([]byte, ed25519.SeedSize)
		seed[0], seed[1] = byte(i), 0xA5
		key := ed25519.NewKeyFromSeed(seed)
		msg := make([]byte, i*7)
		for j := range msg {
			msg[j] = byte(i + j)
		}
		if got, want := sign(key, msg), ed25519.Sign(key, msg); !bytes.Equal(got, want) {
			t.Fatalf("key %d, %d-byte message: sign = %x, crypto/ed25519 = %x", i, len(msg), got, want)
		}
	}
}
