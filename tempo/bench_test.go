package tempo

import (
	"testing"

	"github.com/ethereum/go-ethereum/common/hexutil"
)

func vectorRaw(b *testing.B, name string) []byte {
	for _, v := range loadVectors(b) {
		if v.Name == name {
			return hexutil.MustDecode(v.Raw)
		}
	}
	b.Fatalf("no vector %s", name)
	return nil
}

// BenchmarkDecodeTempoTxRecover: strict 0x76 decode plus secp256k1 sender
// recovery, the cost of admitting one Tempo payment.
func BenchmarkDecodeTempoTxRecover(b *testing.B) {
	raw := vectorRaw(b, "secp256k1_transfer_mainnet")
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := DecodeTempoTx(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeTempoTxSponsored: two secp256k1 recoveries (sender, fee payer).
func BenchmarkDecodeTempoTxSponsored(b *testing.B) {
	raw := vectorRaw(b, "secp256k1_sponsored_fee_token_set")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeTempoTx(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeTempoTxP256: P-256 verification instead of recovery.
func BenchmarkDecodeTempoTxP256(b *testing.B) {
	raw := vectorRaw(b, "p256_transfer_prehash_false")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeTempoTx(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeEVMTx: EIP-1559 decode, canonical check and recovery.
func BenchmarkDecodeEVMTx(b *testing.B) {
	raw, err := evmTxs(b, fixedKey(b, "evm"))["1559"].MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := DecodeEVMTx(raw); err != nil {
			b.Fatal(err)
		}
	}
}
