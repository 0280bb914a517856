package sidecar_test

import (
	"context"
	"testing"
	"time"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/p2p"
)

// TestSignedAloneSurvivesRestart: a validator signs a payment while the
// other three are down, then every validator restarts. Nobody resubmits:
// the validator announces what it signed again from its durable store, the
// QC forms, and the sender's next nonce is accepted everywhere.
func TestSignedAloneSurvivesRestart(t *testing.T) {
	cl := nodetest.New(t, 4, chainID, nodetest.Funded())
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)
	for i := 1; i < 4; i++ {
		cl.Stop(i)
	}
	req := nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Recipient: nodetest.Address(nodetest.Bob), Amount: 10}.Request(t)
	resp, err := cl.Client(0).SubmitFastPay(context.Background(), req)
	if err != nil || resp.GetCert() == nil {
		t.Fatalf("submit with three validators down: %v %v", resp, err)
	}
	txHash, err := p2p.TxHash(req)
	if err != nil {
		t.Fatal(err)
	}
	cl.Stop(0)
	cl.StartAll()
	testkit.Eventually(t, 30*time.Second, "the QC at every validator after the restart", func() bool {
		for _, n := range cl.Nodes {
			if _, ok := n.Sidecar.Board().QC(txHash); !ok {
				return false
			}
		}
		return true
	})
	next := nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Nonce: 1, Recipient: nodetest.Address(nodetest.Carol), Amount: 5}.Request(t)
	q, _ := cl.StreamToQC(2, next)
	if len(q.Certs) < 3 {
		t.Fatalf("next nonce QC with %d certificates", len(q.Certs))
	}
}

// TestAnnouncementOutlivesClient: the client's request context ends right
// after submitting (it disconnected); the transaction is still announced
// and certified.
func TestAnnouncementOutlivesClient(t *testing.T) {
	cl := nodetest.New(t, 4, chainID, nodetest.Funded())
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)
	req := nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Recipient: nodetest.Address(nodetest.Bob), Amount: 10}.Request(t)
	ctx, cancel := context.WithCancel(context.Background())
	// The sidecar decides with the chain state it has; what it does with
	// the mesh must not depend on the caller any more.
	cancel()
	if _, err := cl.Nodes[0].Sidecar.Submit(ctx, req); err != nil {
		t.Fatalf("submit: %v", err)
	}
	txHash, _ := p2p.TxHash(req)
	testkit.Eventually(t, 3*time.Second, "the QC at every validator", func() bool {
		for _, n := range cl.Nodes {
			if _, ok := n.Sidecar.Board().QC(txHash); !ok {
				return false
			}
		}
		return true
	})
	if st, _ := cl.Nodes[0].Sidecar.Board().Status(txHash); st.Stage < fastpayv1.TxLifecycleUpdate_CERTIFIED {
		t.Errorf("stage %v at the entry sidecar", st.Stage)
	}
}
