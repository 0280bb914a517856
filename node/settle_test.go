package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/chain"
	"github.com/allegro-mesh/allegro/tempo/devchain"
	"github.com/allegro-mesh/allegro/tempo/devkit"
	"github.com/allegro-mesh/allegro/validator"
)

// devCluster runs a 4-validator mesh reading chain through its JSON-RPC
// client, with settlement resending quickly.
func devCluster(t *testing.T, client *chain.Client, configure func(*node.Config)) *nodetest.Cluster {
	t.Helper()
	cl := nodetest.New(t, 4, devchain.DefaultChainID, client, nodetest.WithConfig(func(_ int, cfg *node.Config) {
		cfg.Settlement.ResendInterval = time.Second
		if configure != nil {
			configure(cfg)
		}
	}))
	cl.Committee.FeeModel = tempo.FeeModelNative // the dev chain pays gas natively
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)
	return cl
}

func tokenBalance(t *testing.T, c *chain.Client, who common.Address) uint64 {
	t.Helper()
	view, err := c.Latest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, err := view.BalanceOf(context.Background(), devkit.TokenAddress, who)
	if err != nil {
		t.Fatal(err)
	}
	return b.Uint64()
}

func waitStage(t *testing.T, cl *nodetest.Cluster, txHash qc.Hash, stage fastpayv1.TxLifecycleUpdate_Stage) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, "stage "+stage.String(), func() bool {
		st, ok := cl.Nodes[0].Sidecar.Board().Status(txHash)
		return ok && st.Stage >= stage
	})
}

// TestSettlementOnDevChain: certified payments settle on chain in
// dependency order, balances move, and overlay entries disappear. The
// child's QC forms before the parent's is on any board.
func TestSettlementOnDevChain(t *testing.T) {
	_, client := nodetest.DevChain(t, devchain.Config{BlockPeriod: 300 * time.Millisecond, LoadAccounts: -1})
	cl := devCluster(t, client, nil)
	demo := devkit.DemoAccounts()
	alice, bob, carol := demo[0], demo[1], demo[2]
	committee, _ := cl.Committee.Committee()

	// The parent's QC is made off the mesh from the validators' own keys,
	// so it reaches them only inside the child's request.
	parentReq := nodetest.Pay{Key: alice.Key, ChainID: devchain.DefaultChainID, Recipient: bob.Address, Amount: 10 * devkit.Dollar}.Request(t)
	p, err := validator.Decode(parentReq, committee.Domain(), 8)
	if err != nil {
		t.Fatal(err)
	}
	asm := qc.NewAssembler(committee, p.TxHash, p.Effects.Hash())
	for i, key := range cl.Keys[:committee.Quorum()] {
		if _, err := asm.Add(qc.NewSigner(key, cl.Committee.Members[i].Name, committee.Domain()).Sign(p.TxHash, p.Effects, uint64(time.Now().UnixMilli()))); err != nil {
			t.Fatal(err)
		}
	}
	parentQC, _ := asm.Build()

	childReq := nodetest.Pay{Key: bob.Key, ChainID: devchain.DefaultChainID, Recipient: carol.Address, Amount: 10 * devkit.Dollar, Parent: parentQC}.Request(t)
	childQC, _ := cl.StreamToQC(1, childReq)
	if _, onBoard := cl.Nodes[0].Sidecar.Board().QC(parentQC.TxHash); onBoard {
		t.Fatal("the parent's QC reached a board before the child's formed")
	}
	// The child must not be sent while its parent is not included: Bob has
	// only 5 on chain, so it would revert.
	for range 3 {
		time.Sleep(300 * time.Millisecond) // three block periods pass
		if st, _ := cl.Nodes[0].Sidecar.Board().Status(childQC.TxHash); st.Stage >= fastpayv1.TxLifecycleUpdate_QUEUED_ONCHAIN {
			t.Fatal("child sent before its parent was included")
		}
	}

	// Now the parent transaction reaches the mesh; validators certify it
	// and settlement sends both, in order.
	resp, err := cl.Client(0).SubmitFastPay(context.Background(), parentReq)
	if err != nil || resp.GetCert() == nil {
		t.Fatalf("parent submission: %v %v", resp, err)
	}
	waitStage(t, cl, p.TxHash, fastpayv1.TxLifecycleUpdate_FINALIZED)
	waitStage(t, cl, childQC.TxHash, fastpayv1.TxLifecycleUpdate_FINALIZED)
	pst, _ := cl.Nodes[0].Sidecar.Board().Status(p.TxHash)
	cst, _ := cl.Nodes[0].Sidecar.Board().Status(childQC.TxHash)
	if cst.BlockHeight < pst.BlockHeight {
		t.Fatalf("child included at %d before parent at %d", cst.BlockHeight, pst.BlockHeight)
	}
	if a, b, c := tokenBalance(t, client, alice.Address), tokenBalance(t, client, bob.Address), tokenBalance(t, client, carol.Address); a != 5*devkit.Dollar || b != 5*devkit.Dollar || c != 15*devkit.Dollar {
		t.Fatalf("balances alice %d bob %d carol %d, want 5/5/15 dollars", a, b, c)
	}
	// Overlay entries disappear once the chain shows the payments.
	testkit.Eventually(t, 20*time.Second, "overlay cleared on every validator", func() bool {
		for _, n := range cl.Nodes {
			for _, acct := range []common.Address{alice.Address, bob.Address, carol.Address} {
				o := n.Sidecar.Validator().OverlayOf(qc.Address(acct))
				if len(o.Debits)+len(o.Credits) > 0 {
					return false
				}
			}
		}
		return true
	})
}
