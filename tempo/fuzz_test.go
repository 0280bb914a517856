package tempo

import (
	"bytes"
	"errors"
	"testing"

	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
)

// seedTempo adds every valid and malformed vector to the corpus.
func seedTempo(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(hexutil.MustDecode(v.Raw))
	}
	for _, v := range loadMalformed(f) {
		f.Add(hexutil.MustDecode(v.Raw))
	}
}

// checkDecodeError: every failure wraps one sentinel and says something.
func checkDecodeError(t *testing.T, err error) {
	if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
		t.Fatalf("error wraps no sentinel: %v", err)
	}
	if len(err.Error()) <= len(ErrMalformed.Error())+2 {
		t.Fatalf("error without detail: %q", err)
	}
}

// canonicalOf is raw with a secp256k1 v of 0/1 raised to 27/28, the one
// difference between an accepted input and its canonical encoding.
func canonicalOf(raw []byte, d *DecodedTx) []byte {
	c := bytes.Clone(raw)
	if d.SigType == SigSecp256k1 && c[len(c)-1] <= 1 {
		c[len(c)-1] += 27
	}
	return c
}

// FuzzDecodeTempoTx: DecodeTempoTx never panics; whatever it accepts
// re-encodes to the input (up to v normalisation) and hashes consistently.
func FuzzDecodeTempoTx(f *testing.F) {
	seedTempo(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		d, err := DecodeTempoTx(raw)
		if err != nil {
			checkDecodeError(t, err)
			return
		}
		var tx TempoTx
		if err := tx.UnmarshalBinary(raw); err != nil {
			t.Fatalf("DecodeTempoTx accepted what UnmarshalBinary refuses: %v", err)
		}
		enc, err := tx.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary of an accepted tx: %v", err)
		}
		if !bytes.Equal(enc, canonicalOf(raw, d)) {
			t.Fatalf("re-encoding differs from input:\n in %x\nout %x", raw, enc)
		}
		if d.TxHash != crypto.Keccak256Hash(enc) || d.SigningHash != tx.SigningHash() {
			t.Fatal("hash mismatch")
		}
		for _, c := range d.Calls {
			_, _ = ParseTIP20Call(c) // must not panic
		}
		_, _ = d.SinglePayment() // must not panic
	})
}

// FuzzUnmarshalTempoTx exercises the structural decoder without the
// signature check, which random mutations almost never pass: whatever it
// accepts must re-encode to the input (up to v normalisation).
func FuzzUnmarshalTempoTx(f *testing.F) {
	seedTempo(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		var tx TempoTx
		if err := tx.UnmarshalBinary(raw); err != nil {
			checkDecodeError(t, err)
			return
		}
		enc, err := tx.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary of an accepted tx: %v", err)
		}
		want := bytes.Clone(raw)
		if len(tx.Signature) == secp256k1SigLen && want[len(want)-1] <= 1 {
			want[len(want)-1] += 27
		}
		if !bytes.Equal(enc, want) {
			t.Fatalf("re-encoding differs from input:\n in %x\nout %x", raw, enc)
		}
		var again TempoTx
		if err := again.UnmarshalBinary(enc); err != nil {
			t.Fatalf("canonical encoding refused: %v", err)
		}
	})
}

// FuzzDecodeEVMTx: DecodeEVMTx never panics; what it accepts is canonical.
func FuzzDecodeEVMTx(f *testing.F) {
	for _, tx := range evmTxs(f, fixedKey(f, "evm")) {
		b, err := tx.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seedTempo(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		d, err := DecodeEVMTx(raw)
		if err != nil {
			checkDecodeError(t, err)
			return
		}
		if !bytes.Equal(d.Raw, raw) || d.TxHash != crypto.Keccak256Hash(raw) || d.ChainID == 0 || len(d.Calls) != 1 {
			t.Fatalf("inconsistent result %+v", d)
		}
		_, _ = d.SinglePayment() // must not panic
	})
}
