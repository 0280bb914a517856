package node_test

import (
	"context"
	"io"
	"math/big"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	pubsub "github.com/libp2p/go-libp2p-pubsub"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

const chainID = 1337

var (
	alice = nodetest.Key("alice")
	bob   = nodetest.Key("bob")
	carol = nodetest.Key("carol")
)

func fundedChain() *tempo.MemChain {
	c := tempo.NewMemChain()
	for _, k := range []common.Address{nodetest.Address(alice), nodetest.Address(bob), nodetest.Address(carol)} {
		c.SetBalance(devkit.TokenAddress, k, big.NewInt(100_000_000))
	}
	c.SetHead(10)
	return c
}

// streamToQC submits req through node i's stream and returns the QC and the
// certificates the stream delivered before it.
func streamToQC(t *testing.T, client fastpayv1.FastPaySidecarClient, req *fastpayv1.SubmitFastPayRequest) (*qc.QC, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return streamToQCCtx(t, ctx, client, req)
}

// streamToQCCtx is streamToQC bounded by ctx.
func streamToQCCtx(t *testing.T, ctx context.Context, client fastpayv1.FastPaySidecarClient, req *fastpayv1.SubmitFastPayRequest) (*qc.QC, int) {
	t.Helper()
	stream, err := client.SubmitFastPayStream(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	certs := 0
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			t.Fatal("stream ended without a QC")
		}
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		switch e := ev.Event.(type) {
		case *fastpayv1.SubmitFastPayEvent_Reject:
			t.Fatalf("rejected: %s", e.Reject)
		case *fastpayv1.SubmitFastPayEvent_Cert:
			certs++
		case *fastpayv1.SubmitFastPayEvent_Qc:
			q, err := e.Qc.ToQC()
			if err != nil {
				t.Fatal(err)
			}
			return q, certs
		}
	}
}

// TestPaymentThroughOneSidecar: a payment submitted to one sidecar yields a
// QC that every sidecar holds, and the submitter's stream receives it.
func TestPaymentThroughOneSidecar(t *testing.T) {
	cl := nodetest.New(t, 4, chainID, fundedChain())
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)

	req := nodetest.Pay{Key: alice, ChainID: chainID, Recipient: nodetest.Address(bob), Amount: 10}.Request(t)
	q, certs := streamToQC(t, cl.Client(0), req)
	committee, _ := cl.Committee.Committee()
	if err := committee.VerifyQC(q); err != nil {
		t.Fatalf("stream QC does not verify: %v", err)
	}
	if certs < committee.Quorum() {
		t.Fatalf("stream delivered %d certificates before the QC, want at least %d", certs, committee.Quorum())
	}
	nodetest.Eventually(t, 10*time.Second, "every sidecar holds the QC", func() bool {
		for _, n := range cl.Nodes {
			if _, ok := n.Sidecar.Board().QC(q.TxHash); !ok {
				return false
			}
		}
		return true
	})

	// Chained: Bob spends what he received, through another sidecar: his
	// whole balance and the 10 received, less the maximum fee.
	child := nodetest.Pay{Key: bob, ChainID: chainID, Recipient: nodetest.Address(carol), Amount: 100_000_010 - nodetest.MaxFee, Parent: q}.Request(t)
	q2, _ := streamToQC(t, cl.Client(2), child)
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
	cl := nodetest.New(t, 4, chainID, fundedChain(), nodetest.WithConfig(func(_ int, cfg *node.Config) {
		cfg.P2P.GossipSub = &gossip
	}))
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)

	cl.Stop(3)
	req := nodetest.Pay{Key: alice, ChainID: chainID, Recipient: nodetest.Address(bob), Amount: 10}.Request(t)
	q, _ := streamToQC(t, cl.Client(0), req)
	if len(q.Certs) != 3 {
		t.Fatalf("QC with %d certificates", len(q.Certs))
	}

	cl.Stop(2)
	pending := nodetest.Pay{Key: alice, ChainID: chainID, Nonce: 1, Recipient: nodetest.Address(carol), Amount: 10}.Request(t)
	submitted := time.Now()
	resp, err := cl.Client(0).SubmitFastPay(context.Background(), pending)
	if err != nil || resp.GetCert() == nil {
		t.Fatalf("submit with two validators down: %v %v", resp, err)
	}
	txHash, _ := p2p.TxHash(pending)
	nodetest.Eventually(t, 10*time.Second, "validator 1 signs the pending payment", func() bool {
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
	conflict := nodetest.Pay{Key: alice, ChainID: chainID, Nonce: 1, Recipient: nodetest.Address(bob), Amount: 10}.Request(t)
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
	nodetest.Eventually(t, 30*time.Second, "the pending payment gets its QC after the restart", func() bool {
		_, ok := cl.Nodes[0].Sidecar.Board().QC(txHash)
		return ok
	})

	// Validator 3 was away for both payments, long after gossip could
	// repeat them: anti-entropy hands it the QCs formed without it.
	time.Sleep(3 * window)
	cl.Start(3)
	nodetest.Eventually(t, 30*time.Second, "the returning validator learns both QCs", func() bool {
		_, first := cl.Nodes[3].Sidecar.Board().QC(q.TxHash)
		_, second := cl.Nodes[3].Sidecar.Board().QC(txHash)
		return first && second
	})
}
