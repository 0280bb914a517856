package qc

import (
	"crypto/ed25519"
	"encoding/hex"
	"math/big"
	"testing"
)

// The committee's precomputed-key path must accept exactly what
// crypto/ed25519.Verify accepts, or a light client using the standard
// library could reject a QC the mesh certified (or the reverse).

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

func TestMemberKeyAgreesWithStdlib(t *testing.T) {
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	pub := key.Public().(ed25519.PublicKey)
	msg := []byte("certificate digest, 32 bytes....")
	sig := ed25519.Sign(key, msg)
	identity := mustHex(t, "0100000000000000000000000000000000000000000000000000000000000000")
	// A non-canonical encoding of the identity (y = p + 1).
	identityNonCanonical := mustHex(t, "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
	smallOrderSig := append(append([]byte(nil), identity...), make([]byte, 32)...) // R = identity, S = 0

	cases := []struct {
		name   string
		pub    []byte
		msg    []byte
		sig    []byte
		stdlib bool // what crypto/ed25519 says, asserted too
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
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var id ValidatorID
			copy(id[:], tc.pub)
			got := newMemberKey(id).verify(tc.msg, tc.sig)
			std := ed25519.Verify(tc.pub, tc.msg, tc.sig)
			if std != tc.stdlib {
				t.Fatalf("fixture: crypto/ed25519 says %v, case expects %v", std, tc.stdlib)
			}
			if got != std {
				t.Fatalf("precomputed key says %v, crypto/ed25519 says %v", got, std)
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

// FuzzMemberKeyAgreesWithStdlib mutates keys, digests and signatures around
// valid ones and checks both verifiers agree on every input.
func FuzzMemberKeyAgreesWithStdlib(f *testing.F) {
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	msg := []byte("certificate digest, 32 bytes....")
	f.Add([]byte(key.Public().(ed25519.PublicKey)), msg, ed25519.Sign(key, msg))
	f.Add(mustHex(f, "0100000000000000000000000000000000000000000000000000000000000000"), msg,
		mustHex(f, "01000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"))
	f.Fuzz(func(t *testing.T, pub, msg, sig []byte) {
		if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
			return
		}
		var id ValidatorID
		copy(id[:], pub)
		if got, std := newMemberKey(id).verify(msg, sig), ed25519.Verify(pub, msg, sig); got != std {
			t.Fatalf("precomputed key says %v, crypto/ed25519 says %v (pub %x sig %x)", got, std, pub, sig)
		}
	})
}
