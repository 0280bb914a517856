package sidecar_test

import (
	"context"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// chainID is the chain of the in-memory test networks.
const chainID = devkit.ChainID

// TestPaymentThroughOneSidecar: a payment submitted to one sidecar yields a
// QC that every sidecar holds, and the submitter's stream receives it.
func TestPaymentThroughOneSidecar(t *testing.T) {
	cl := nodetest.New(t, 4, chainID, nodetest.Funded())
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)

	req := nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Recipient: nodetest.Address(nodetest.Bob), Amount: 10}.Request(t)
	q, certs := cl.StreamToQC(0, req)
	committee, _ := cl.Committee.Committee()
	if err := committee.VerifyQC(q); err != nil {
		t.Fatalf("stream QC does not verify: %v", err)
	}
	if certs < committee.Quorum() {
		t.Fatalf("stream delivered %d certificates before the QC, want at least %d", certs, committee.Quorum())
	}
	testkit.Eventually(t, 10*time.Second, "every sidecar holds the QC", func() bool {
		for _, n := range cl.Nodes {
			if _, ok := n.Sidecar.Board().QC(q.TxHash); !ok {
				return false
			}
		}
		return true
	})

	// Chained: Bob spends what he received, through another sidecar: his
	// whole balance and the 10 received, less the maximum fee.
	child := nodetest.Pay{Key: nodetest.Bob, ChainID: chainID, Recipient: nodetest.Address(nodetest.Carol), Amount: 100_000_010 - nodetest.MaxFee, Parent: q}.Request(t)
	q2, _ := cl.StreamToQC(2, child)
	if err := committee.VerifyQC(q2); err != nil {
		t.Fatal(err)
	}
}

// TestQuorumWithFailures: with one of four validators down QCs still form;
// with two down none does and nothing is signed twice; after a restart the
// pending payment completes.
func TestQuorumWithFailures(t *testing.T) {
	// A short gossip history: the restarted validator must catch up through
	// anti-entropy, not through gossipsub's IHAVE/IWANT window.
	gossip := pubsub.DefaultGossipSubParams()
	gossip.HeartbeatInterval = 100 * time.Millisecond
	window := time.Duration(gossip.HistoryLength) * gossip.HeartbeatInterval
	cl := nodetest.New(t, 4, chainID, nodetest.Funded(), nodetest.WithConfig(func(_ int, cfg *node.Config) {
		cfg.P2P.GossipSub = &gossip
	}))
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)

	cl.Stop(3)
	req := nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Recipient: nodetest.Address(nodetest.Bob), Amount: 10}.Request(t)
	q, _ := cl.StreamToQC(0, req)
	if len(q.Certs) != 3 {
		t.Fatalf("QC with %d certificates", len(q.Certs))
	}

	cl.Stop(2)
	pending := nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Nonce: 1, Recipient: nodetest.Address(nodetest.Carol), Amount: 10}.Request(t)
	submitted := time.Now()
	resp, err := cl.Client(0).SubmitFastPay(context.Background(), pending)
	if err != nil || resp.GetCert() == nil {
		t.Fatalf("submit with two validators down: %v %v", resp, err)
	}
	txHash, _ := p2p.TxHash(pending)
	testkit.Eventually(t, 10*time.Second, "validator 1 signs the pending payment", func() bool {
		st, ok := cl.Nodes[1].Sidecar.Board().Status(txHash)
		return ok && len(st.Certs) == 2
	})
	// No QC can form with two of four validators.
	for i := range 2 {
		if _, ok := cl.Nodes[i].Sidecar.Board().QC(txHash); ok {
			t.Fatal("QC formed with only two validators")
		}
	}
	// A conflicting payment for the same nonce is refused by both.
	conflict := nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Nonce: 1, Recipient: nodetest.Address(nodetest.Bob), Amount: 10}.Request(t)
	for i := range 2 {
		resp, err := cl.Client(i).SubmitFastPay(context.Background(), conflict)
		if err != nil || resp.GetReject().GetCode() != fastpayv1.RejectCode_EQUIVOCATION {
			t.Fatalf("validator %d on a conflicting payment: %v %v", i, resp, err)
		}
	}

	// A validator returns after the gossip history has moved on: it catches
	// up and the pending payment completes. (Waiting out a time window, not
	// an event.)
	if wait := time.Until(submitted.Add(3 * window)); wait > 0 {
		time.Sleep(wait)
	}
	cl.Start(2)
	testkit.Eventually(t, 30*time.Second, "the pending payment gets its QC after the restart", func() bool {
		_, ok := cl.Nodes[0].Sidecar.Board().QC(txHash)
		return ok
	})

	// Validator 3 was away for both payments, long after gossip could
	// repeat them: anti-entropy hands it the QCs formed without it.
	time.Sleep(3 * window)
	cl.Start(3)
	testkit.Eventually(t, 30*time.Second, "the returning validator learns both QCs", func() bool {
		_, first := cl.Nodes[3].Sidecar.Board().QC(q.TxHash)
		_, second := cl.Nodes[3].Sidecar.Board().QC(txHash)
		return first && second
	})
}
