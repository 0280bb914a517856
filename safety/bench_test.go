package safety

import (
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/qc"
)

// largeHistory builds a safe history of n payments certified by a
// committee of seven (every validator signs, QCs of five), as a long e2e
// run produces.
func largeHistory(b *testing.B, n int) (*History, *Run) {
	b.Helper()
	domain := testDomain
	info := CommitteeInfo{ChainID: domain.ChainID, Epoch: domain.Epoch}
	var signers []*qc.Signer
	for i := range 7 {
		name := fmt.Sprintf("v%d", i)
		s := qc.NewSigner(testKey(name), name, domain)
		signers = append(signers, s)
		info.Members = append(info.Members, MemberInfo{Name: name, ID: s.ID(), Honest: true})
	}
	h := NewHistory(info, DefaultToken)
	c, err := h.QCommittee()
	if err != nil {
		b.Fatal(err)
	}
	run := &Run{Phases: []Phase{{Name: "baseline", Start: time.UnixMilli(0), End: time.UnixMilli(int64(n) * 10)}}}
	h.InitialBalances = map[qc.Address]*big.Int{}
	t0 := time.UnixMilli(1_800_000_000_000)
	for i := range n {
		sender := testAddr(fmt.Sprint("load-", i%64))
		h.InitialBalances[sender] = big.NewInt(1_000_000)
		tx := txHash(fmt.Sprint("load#", i))
		e := effects(sender, testAddr(fmt.Sprint("load-", (i+1)%64)), 1, uint64(i/64))
		var certs []qc.Certificate
		for _, s := range signers {
			cert := s.Sign(tx, e, uint64(i))
			certs = append(certs, cert)
			for _, src := range signers {
				h.AddCertificate(src.Name(), cert)
			}
		}
		q := buildQC(b, c, certs)
		for _, s := range signers {
			h.AddQC(s.Name(), q)
			h.AddStatus(tx, NodeStatus{Node: s.Name(), Stage: "FINALIZED", QCHash: q.Hash, QCUnixMillis: uint64(i)})
		}
		sent := t0.Add(time.Duration(i) * time.Millisecond)
		run.Payments = append(run.Payments, Payment{Name: fmt.Sprint("load#", i), TxHash: tx, Sender: sender, SubmittedTo: "v0",
			QuorumSide: true, Phase: "baseline", Sent: sent, QCAt: sent.Add(20 * time.Millisecond), Outcome: OutcomeCertified})
	}
	return h, run
}

// BenchmarkCheck checks a 1,000-payment, seven-validator history.
func BenchmarkCheck(b *testing.B) {
	h, run := largeHistory(b, 1000)
	b.ResetTimer()
	for b.Loop() {
		if r := Check(h, run); !r.OK() {
			b.Fatalf("violations: %v", kinds(r))
		}
	}
}
