package node_test

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo/devchain"
	"github.com/allegro-mesh/allegro/tempo/devkit"
	"github.com/allegro-mesh/allegro/validator"
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
	dc, client := nodetest.DevChain(t, devchain.Config{BlockPeriod: 300 * time.Millisecond, LoadAccounts: 8, DataDir: t.TempDir(), HTTPPort: port})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := devCluster(t, client, func(cfg *node.Config) { cfg.Sidecar.RetryUnavailable = 200 * time.Millisecond })

	senders := devkit.LoadAccounts(8)
	recipient := devkit.DemoAccounts()[2].Address
	var certified []qc.Hash
	lastReject := map[int]string{}
	pay := func(i int, nonce uint64) (qc.Hash, bool) {
		req := nodetest.Pay{Key: senders[i].Key, ChainID: devchain.DefaultChainID, Nonce: nonce, Recipient: recipient, Amount: devkit.Dollar}.Request(t)
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
		testkit.Eventually(t, 60*time.Second, "settled "+h.String(), func() bool {
			st, ok := cl.Nodes[0].Sidecar.Board().Status(h)
			return ok && st.Stage >= fastpayv1.TxLifecycleUpdate_FINALIZED
		})
	}
}

func waitQC(t *testing.T, cl *nodetest.Cluster, h qc.Hash) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, "QC for "+h.String(), func() bool {
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

// TestChainResetRefused: a validator's state belongs to the chain it first
// ran against. When an in-memory development chain is restarted from
// scratch behind the same URL, a running sidecar stops reading from it and
// answers submissions with a reason naming the reset, and a restarted
// sidecar refuses to start, saying what to do.
func TestChainResetRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dc, err := devchain.New(devchain.Config{BlockPeriod: 200 * time.Millisecond, LoadAccounts: -1, HTTPPort: port})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := dc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dc.Stop(context.Background()) })

	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	committee := &committee.File{ChainID: devchain.DefaultChainID, Epoch: 1, QCShards: 16, TestNetwork: true,
		Members: []committee.Member{{Name: "v0", PublicKey: hex.EncodeToString(key.Public().(ed25519.PublicKey))}}}
	cfg := node.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.P2P = p2p.LocalConfig()
	cfg.API.ListenAddr = "127.0.0.1:0"
	cfg.Chain.URL = dc.WSEndpoint()
	cfg.Chain.BackoffMin, cfg.Chain.BackoffMax = 20*time.Millisecond, 200*time.Millisecond
	cfg.Sidecar.DoppelgangerWindow = 0
	build := func() *node.Node {
		n, err := node.New(cfg, node.WithIdentity("v0", key), node.WithCommittee(committee), node.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	n := build()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	alice, bob := devkit.DemoAccounts()[0], devkit.DemoAccounts()[1]
	pay := func(n *node.Node) error {
		req := nodetest.Pay{Key: alice.Key, ChainID: devchain.DefaultChainID, Recipient: bob.Address, Amount: devkit.Dollar}.Request(t)
		_, err := n.Sidecar.Submit(ctx, req)
		return err
	}
	if err := pay(n); err != nil {
		t.Fatalf("first payment: %v", err)
	}

	// The chain restarts from scratch on the same port.
	if err := dc.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var last error
	testkit.Eventually(t, 30*time.Second, "the running sidecar to refuse the reset chain with a reason", func() bool {
		last = pay(n)
		return validator.RejectCodeOf(last) == fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE && strings.Contains(last.Error(), "genesis")
	})
	t.Logf("running sidecar: %v", last)
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer stopCancel()
	if err := n.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}

	err = build().Start(ctx)
	if err == nil || !strings.Contains(err.Error(), cfg.DataDir) || !strings.Contains(err.Error(), "move") || strings.Contains(err.Error(), "OnStart hook") {
		t.Fatalf("start against a reset chain: %v", err)
	}
	t.Logf("restarted sidecar: %v", err)
}
