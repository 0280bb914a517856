package sidecar_test

import (
	"context"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/p2p"
)

// mockCluster is four validators on a libp2p mock network, started and
// meshed.
func mockCluster(t *testing.T, latency time.Duration) *nodetest.Cluster {
	t.Helper()
	cl := nodetest.New(t, 4, chainID, nodetest.Funded(), nodetest.WithMockNet(latency), nodetest.WithConfig(func(_ int, cfg *node.Config) {
		// Reconnect quickly after a heal; announce again quickly.
		cfg.P2P.ReconnectBackoffMax = 500 * time.Millisecond
		cfg.Sidecar.ReannounceInterval = 500 * time.Millisecond
	}))
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)
	return cl
}

// TestPartitionWithoutQuorum: split into two halves, neither holding a
// quorum. A payment submitted to one half is signed there but certified
// nowhere while the partition lasts; after healing, it completes without
// being submitted again.
func TestPartitionWithoutQuorum(t *testing.T) {
	cl := mockCluster(t, 0)
	cl.Partition([]int{0, 1}, []int{2, 3})
	testkit.Eventually(t, 10*time.Second, "the halves disconnected", func() bool {
		return !cl.Connected(0, 2) && !cl.Connected(0, 3) && !cl.Connected(1, 2) && !cl.Connected(1, 3)
	})

	req := nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Recipient: nodetest.Address(nodetest.Bob), Amount: 10}.Request(t)
	resp, err := cl.Client(0).SubmitFastPay(context.Background(), req)
	if err != nil || resp.GetCert() == nil {
		t.Fatalf("submit during the partition: %v %v", resp, err)
	}
	txHash, _ := p2p.TxHash(req)
	testkit.Eventually(t, 10*time.Second, "validator 1 signs it too", func() bool {
		st, ok := cl.Nodes[1].Sidecar.Board().Status(txHash)
		return ok && len(st.Certs) == 2
	})
	// Two of four signatures: no QC anywhere, and the other half never saw
	// the payment.
	for i := range 4 {
		if cl.HasQC(i, txHash) {
			t.Fatalf("validator %d holds a QC during the partition", i)
		}
	}
	for _, i := range []int{2, 3} {
		if _, seen := cl.Nodes[i].Sidecar.Board().Status(txHash); seen {
			t.Fatalf("validator %d saw the payment across the partition", i)
		}
	}

	cl.Heal()
	testkit.Eventually(t, 30*time.Second, "the QC at every validator after healing", func() bool {
		for i := range 4 {
			if !cl.HasQC(i, txHash) {
				return false
			}
		}
		return true
	})
}

// TestMinorityIsolated: one validator cut off from the other three. The
// three keep certifying; once the link returns, the isolated one learns the
// QCs that formed without it.
func TestMinorityIsolated(t *testing.T) {
	cl := mockCluster(t, 0)
	cl.Partition([]int{0, 1, 2}, []int{3})
	testkit.Eventually(t, 10*time.Second, "validator 3 disconnected", func() bool {
		return !cl.Connected(3, 0) && !cl.Connected(3, 1) && !cl.Connected(3, 2)
	})
	q := cl.PayToQC(0, nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Recipient: nodetest.Address(nodetest.Bob), Amount: 10}.Request(t), 10*time.Second)
	if len(q.Certs) != 3 {
		t.Fatalf("QC with %d certificates, want the three connected validators'", len(q.Certs))
	}
	if cl.HasQC(3, q.TxHash) {
		t.Fatal("the isolated validator holds the QC")
	}
	cl.Heal()
	testkit.Eventually(t, 30*time.Second, "the isolated validator learns the QC", func() bool { return cl.HasQC(3, q.TxHash) })
}

// TestLinkLatency: with 40 ms on every link a QC cannot form in less than
// one round trip from the entry to the other validators and back.
func TestLinkLatency(t *testing.T) {
	const oneWay = 40 * time.Millisecond
	cl := mockCluster(t, oneWay)
	start := time.Now()
	cl.PayToQC(0, nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Recipient: nodetest.Address(nodetest.Bob), Amount: 10}.Request(t), 20*time.Second)
	if took := time.Since(start); took < 2*oneWay {
		t.Fatalf("QC after %s, faster than the %s round trip the links impose", took, 2*oneWay)
	}
	// A slower link to one validator: the QC still forms through the others.
	cl.SetLatency(0, 3, time.Second)
	start = time.Now()
	q := cl.PayToQC(0, nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Nonce: 1, Recipient: nodetest.Address(nodetest.Bob), Amount: 10}.Request(t), 20*time.Second)
	for _, c := range q.Certs {
		if c.Signer == cl.Nodes[3].Sidecar.Validator().Signer().ID() && time.Since(start) < 2*time.Second {
			t.Fatalf("validator 3's certificate is in a QC formed after %s, faster than its 2 s round trip", time.Since(start))
		}
	}
}

// TestLosingTransactionNoLongerAwaited: a validator cut off from the rest
// signs one payment while the other three certify a conflicting one for
// the same nonce. Once it learns that QC, its own transaction can never
// gather a quorum, so it stops waiting for it (announcing it again, and
// counting it in flight for the pacing gate) at once, not at its expiry.
func TestLosingTransactionNoLongerAwaited(t *testing.T) {
	cl := mockCluster(t, 0)
	cl.Partition([]int{0}, []int{1, 2, 3})
	testkit.Eventually(t, 10*time.Second, "validator 0 disconnected", func() bool {
		return !cl.Connected(0, 1) && !cl.Connected(0, 2) && !cl.Connected(0, 3)
	})

	losing := nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Recipient: nodetest.Address(nodetest.Bob), Amount: 10}.Request(t)
	if resp, err := cl.Client(0).SubmitFastPay(context.Background(), losing); err != nil || resp.GetCert() == nil {
		t.Fatalf("submit to the isolated validator: %v %v", resp, err)
	}
	if n := cl.Nodes[0].Sidecar.AwaitingQC(); n != 1 {
		t.Fatalf("the isolated validator awaits %d QCs after signing, want 1", n)
	}
	winning := nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Recipient: nodetest.Address(nodetest.Bob), Amount: 11}.Request(t)
	q := cl.PayToQC(1, winning, 20*time.Second)

	cl.Heal()
	testkit.Eventually(t, 30*time.Second, "the isolated validator learns the winning QC", func() bool {
		return cl.HasQC(0, q.TxHash)
	})
	testkit.Eventually(t, 5*time.Second, "the isolated validator no longer awaits its own transaction", func() bool {
		return cl.Nodes[0].Sidecar.AwaitingQC() == 0
	})
	losingHash, _ := p2p.TxHash(losing)
	if cl.HasQC(0, losingHash) {
		t.Fatal("the losing transaction has a QC")
	}
}
