package qc

import (
	"fmt"
	"testing"
)

func BenchmarkCertificateSign(b *testing.B) {
	_, signers := testCommittee(b, 1, Domain{ChainID: 1337, Epoch: 1})
	effects := testEffects()
	txHash := fill32(1)
	for b.Loop() {
		signers[0].Sign(txHash, effects, 1)
	}
}

func BenchmarkCertificateVerify(b *testing.B) {
	committee, signers := testCommittee(b, 4, Domain{ChainID: 1337, Epoch: 1})
	cert := signers[0].Sign(fill32(1), testEffects(), 1)
	for b.Loop() {
		if err := committee.VerifyCertificate(&cert); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkQCVerify(b *testing.B) {
	for _, n := range []int{4, 7, 31, 100} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			committee, signers := testCommittee(b, n, Domain{ChainID: 1337, Epoch: 1})
			q := validQC(b, committee, signers, testEffects())
			b.ReportMetric(float64(len(q.Certs)), "sigs/op")
			for b.Loop() {
				if err := committee.VerifyQC(q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkHashes(b *testing.B) {
	in := TxHashInput{ChainID: 1337, TempoTx: make([]byte, 200), NonceSeq: 1}
	effects := testEffects()
	for b.Loop() {
		TxHash(in)
		effects.Hash()
	}
}

// BenchmarkBatchVerify is the cost of verifying a frame's worth of distinct
// certificates together, per signature, against one by one.
func BenchmarkBatchVerify(b *testing.B) {
	committee, signers := testCommittee(b, 4, Domain{ChainID: 1337, Epoch: 1})
	for _, size := range []int{1, 4, 16, 64} {
		certs := make([]Certificate, size)
		for i := range certs {
			certs[i] = signers[i%len(signers)].Sign(fill32(byte(i)), testEffects(), 1)
		}
		b.Run(fmt.Sprintf("batch/sigs=%d", size), func(b *testing.B) {
			for b.Loop() {
				batch := NewVerifier(committee, 1).NewBatch()
				for i := range certs {
					if err := batch.AddCertificate(&certs[i]); err != nil {
						b.Fatal(err)
					}
				}
				if err := batch.Verify(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size)/1000, "µs/sig")
		})
		b.Run(fmt.Sprintf("single/sigs=%d", size), func(b *testing.B) {
			for b.Loop() {
				for i := range certs {
					if err := committee.VerifyCertificate(&certs[i]); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size)/1000, "µs/sig")
		})
	}
}
