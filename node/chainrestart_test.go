package node_test

import (
	"context"
	"net"
	"testing"
	"time"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo/devchain"
)

// TestChainRestart: the chain node stops mid-run and comes back on the same
// state and port. Payments certified before and during the outage all
// settle afterwards; none is lost.
func TestChainRestart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dc, client := startDevChain(t, devchain.Config{BlockPeriod: 300 * time.Millisecond, LoadAccounts: 8, DataDir: t.TempDir(), HTTPPort: port})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := devCluster(t, client, func(cfg *node.Config) { cfg.Sidecar.RetryUnavailable = 200 * time.Millisecond })

	senders := devchain.LoadAccounts(8)
	recipient := devchain.DemoAccounts()[2].Address
	var certified []qc.Hash
	lastReject := map[int]string{}
	pay := func(i int, nonce uint64) (qc.Hash, bool) {
		req := nodetest.Pay{Key: senders[i].Key, ChainID: devchain.DefaultChainID, Nonce: nonce, Recipient: recipient, Amount: devchain.Dollar}.Request(t)
		h, _ := p2p.TxHash(req)
		resp, err := cl.Client(i%4).SubmitFastPay(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if r := resp.GetReject(); r != nil {
			lastReject[i] = r.String()
		}
		return h, resp.GetCert() != nil
	}
	// Before the outage: every sender pays once (their state is now read).
	for i := range senders {
		h, ok := pay(i, 0)
		if !ok {
			t.Fatalf("sender %d not certified before the outage", i)
		}
		certified = append(certified, h)
	}
	for _, h := range certified {
		waitQC(t, cl, h)
	}

	if err := dc.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// During the outage: sidecars certify within the view they have; what
	// they cannot decide now is retried, never signed blindly.
	outage := 0
	certifiedInOutage := map[int]bool{}
	for i := range senders {
		h, ok := pay(i, 1)
		if ok {
			outage++
			certifiedInOutage[i] = true
			certified = append(certified, h)
		}
	}
	t.Logf("%d of %d payments certified during the chain outage", outage, len(senders))

	if err := dc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// After the chain returns: the senders refused during the outage pay
	// again, as a wallet would, until certified (the same signed request, so
	// a repeat is idempotent), and everything settles.
	for i := range senders {
		if certifiedInOutage[i] {
			continue // already certified; it may even have settled by now
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			h, ok := pay(i, 1)
			if ok {
				if !contains(certified, h) {
					certified = append(certified, h)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("sender %d not certified 30 s after the chain returned; last reject: %s", i, lastReject[i])
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if len(certified) != 2*len(senders) {
		t.Fatalf("%d payments certified, want %d", len(certified), 2*len(senders))
	}
	for _, h := range certified {
		waitQC(t, cl, h)
		nodetest.Eventually(t, 60*time.Second, "settled "+h.String(), func() bool {
			st, ok := cl.Nodes[0].Sidecar.Board().Status(h)
			return ok && st.Stage >= fastpayv1.TxLifecycleUpdate_FINALIZED
		})
	}
}

func waitQC(t *testing.T, cl *nodetest.Cluster, h qc.Hash) {
	t.Helper()
	nodetest.Eventually(t, 30*time.Second, "QC for "+h.String(), func() bool {
		_, ok := cl.Nodes[0].Sidecar.Board().QC(h)
		return ok
	})
}

func contains(hs []qc.Hash, h qc.Hash) bool {
	for _, x := range hs {
		if x == h {
			return true
		}
	}
	return false
}
