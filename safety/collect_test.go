package safety_test

import (
	"bytes"
	"context"
	"io"
	"math/big"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"google.golang.org/protobuf/proto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/bulletin"
	"github.com/allegro-mesh/allegro/client"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/safety"
	"github.com/allegro-mesh/allegro/sidecar"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devchain"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// submitted is one payment sent through a sidecar's stream.
type submitted struct {
	p  safety.Payment
	qc *qc.QC
}

// pay submits req to sidecar i and records the payment as the e2e driver
// would: the entry sidecar's answer, and the QC if it arrives.
func pay(t *testing.T, cl *nodetest.Cluster, i int, name string, req *fastpayv1.SubmitFastPayRequest, conflicting bool) submitted {
	t.Helper()
	txHash, err := p2p.TxHash(req)
	if err != nil {
		t.Fatal(err)
	}
	chainTx, err := client.ChainTxHash(req)
	if err != nil {
		t.Fatal(err)
	}
	p := safety.Payment{Name: name, TxHash: txHash, ChainTx: qc.Hash(chainTx), Conflicting: conflicting, SubmittedTo: cl.Committee.Members[i].Name,
		QuorumSide: true, Phase: "baseline", Sent: time.Now()}
	if intent := req.GetTx().GetOverlay().GetPayment(); intent != nil {
		p.Sender, _ = intent.GetSender().ToAddress("sender")
	}
	if ph := req.GetTx().GetParentQcHash(); len(ph) == 32 && len(req.GetParentQcs()) > 0 {
		p.ParentTx, _ = qc.HashFromBytes(req.GetParentQcs()[0].GetTxHash())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := cl.Client(i).SubmitFastPayStream(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var got *qc.QC
	for got == nil {
		ev, err := stream.Recv()
		if err == io.EOF || ctx.Err() != nil {
			break
		}
		if err != nil {
			p.Outcome = "error:" + err.Error()
			break
		}
		switch e := ev.Event.(type) {
		case *fastpayv1.SubmitFastPayEvent_Reject:
			p.Outcome = "rejected:" + e.Reject.GetCode().String()
		case *fastpayv1.SubmitFastPayEvent_Cert:
			if p.Outcome == "" {
				p.Outcome = safety.OutcomeCertified
			}
		case *fastpayv1.SubmitFastPayEvent_Qc:
			if got, err = e.Qc.ToQC(); err != nil {
				t.Fatal(err)
			}
			p.QCAt = time.Now()
		}
		if p.RejectCode() != "" {
			break
		}
	}
	return submitted{p: p, qc: got}
}

// deadURL returns the URL of a loopback port that answers nothing: it
// accepts and closes every connection for the rest of the test. The port
// stays bound, so no other process (another package's tests run beside
// these) can take it and answer in its place.
func deadURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return "http://" + l.Addr().String()
}

// boardCerts pages through a board directly.
func boardCerts(t *testing.T, b *bulletin.Board) int {
	t.Helper()
	n, cursor := 0, ""
	for range 1000 {
		page, err := b.Query(bulletin.Query{Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		n += len(page.Certs)
		if page.NextCursor == "" {
			return n
		}
		cursor = page.NextCursor
	}
	t.Fatal("board paging did not end")
	return 0
}

func sidecars(cl *nodetest.Cluster, byz int) []safety.Sidecar {
	var out []safety.Sidecar
	for i, n := range cl.Nodes {
		out = append(out, safety.Sidecar{Name: cl.Committee.Members[i].Name, APIURL: "http://" + n.API.Addr().String(), Honest: i != byz})
	}
	return out
}

// TestCollectAndCheckDevChain runs four real sidecars (v3 equivocating on
// purpose) on a real dev chain, pays (plain, chained and a double spend),
// waits for settlement, and collects through the real HTTP API with tiny
// pages: the history passes Check with the run, shows the Byzantine
// double-signs as detected, and survives a JSON round trip.
func TestCollectAndCheckDevChain(t *testing.T) {
	dc, client := nodetest.DevChain(t, devchain.Config{BlockPeriod: 300 * time.Millisecond, LoadAccounts: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const byz = 3
	cl := nodetest.New(t, 4, devchain.DefaultChainID, client, nodetest.WithConfig(func(i int, cfg *node.Config) {
		cfg.Settlement.ResendInterval = time.Second
		if i == byz {
			cfg.Byzantine.Mode = sidecar.ByzantineEquivocate
		}
	}))
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)
	committeeFile := filepath.Join(t.TempDir(), "committee.toml")
	if err := cl.Committee.Write(committeeFile); err != nil {
		t.Fatal(err)
	}

	demo := devkit.DemoAccounts()
	alice, bob, carol := demo[0], demo[1], demo[2]
	accounts := []qc.Address{qc.Address(alice.Address), qc.Address(bob.Address), qc.Address(carol.Address)}
	initial, err := safety.Balances(ctx, dc.HTTPEndpoint(), qc.Address(devkit.TokenAddress), accounts)
	if err != nil {
		t.Fatal(err)
	}
	if initial[accounts[0]].Cmp(new(big.Int).SetUint64(devkit.AliceTokens)) != 0 {
		t.Fatalf("alice's initial balance %s, want %d", initial[accounts[0]], devkit.AliceTokens)
	}
	native, err := safety.Balances(ctx, dc.HTTPEndpoint(), safety.NativeToken, accounts)
	if err != nil {
		t.Fatal(err)
	}
	if native[accounts[1]].Cmp(devkit.GenesisEther) != 0 {
		t.Fatalf("bob's native balance %s, want %s", native[accounts[1]], devkit.GenesisEther)
	}

	chainID := uint64(devchain.DefaultChainID)
	var run safety.Run
	start := time.Now()
	p1 := pay(t, cl, 0, "alice->bob", nodetest.Pay{Key: alice.Key, ChainID: chainID, Recipient: bob.Address, Amount: 7 * devkit.Dollar}.Request(t), false)
	if p1.qc == nil {
		t.Fatalf("first payment got no QC: %+v", p1.p)
	}
	p2 := pay(t, cl, 1, "chain:bob->carol", nodetest.Pay{Key: bob.Key, ChainID: chainID, Recipient: carol.Address, Amount: 9 * devkit.Dollar, Parent: p1.qc}.Request(t), false)
	// carol double-spends nonce 0 through two sidecars.
	dsA := pay(t, cl, 2, "ds:carol->alice", nodetest.Pay{Key: carol.Key, ChainID: chainID, Recipient: alice.Address, Amount: devkit.Dollar}.Request(t), true)
	dsB := pay(t, cl, 0, "ds:carol->bob", nodetest.Pay{Key: carol.Key, ChainID: chainID, Recipient: bob.Address, Amount: devkit.Dollar}.Request(t), true)
	all := []submitted{p1, p2, dsA, dsB}
	var certified []qc.Hash
	var lightQCs [][]byte
	for _, s := range all {
		// The cluster's committee has Tempo's fee rule: the fee is paid in
		// the transferred token (the dev chain has no fee manager).
		s.p.Fee = &safety.PaymentFee{Payer: s.p.Sender, Token: qc.Address(devkit.TokenAddress), Max: new(big.Int).SetUint64(nodetest.MaxFee)}
		run.Payments = append(run.Payments, s.p)
		if s.qc != nil {
			certified = append(certified, s.qc.TxHash)
			raw, err := proto.Marshal(fastpayv1.NewQuorumCertificate(s.qc))
			if err != nil {
				t.Fatal(err)
			}
			lightQCs = append(lightQCs, raw)
		}
	}
	if p2.qc == nil || (dsA.qc != nil && dsB.qc != nil) {
		t.Fatalf("chained QC %v (%s), double-spend QCs %v (%s) %v (%s)", p2.qc != nil, p2.p.Outcome, dsA.qc != nil, dsA.p.Outcome, dsB.qc != nil, dsB.p.Outcome)
	}
	run.Phases = []safety.Phase{{Name: "baseline", Start: start, End: time.Now()}}

	testkit.Eventually(t, 60*time.Second, "every certified payment finalized on every honest sidecar", func() bool {
		for i, n := range cl.Nodes {
			for _, tx := range certified {
				if st, ok := n.Sidecar.Board().Status(tx); i != byz && (!ok || st.Stage < fastpayv1.TxLifecycleUpdate_FINALIZED) {
					return false
				}
			}
		}
		return true
	})

	var txs, chainTxs []qc.Hash
	for _, p := range run.Payments {
		txs = append(txs, p.TxHash)
		chainTxs = append(chainTxs, p.ChainTx)
	}
	cfg := safety.CollectConfig{
		Sidecars:        append(sidecars(cl, byz), safety.Sidecar{Name: "ghost", APIURL: deadURL(t), Honest: true}),
		CommitteeFile:   committeeFile,
		ChainRPC:        dc.HTTPEndpoint(),
		LightClientQCs:  map[string][][]byte{"lc-test": lightQCs},
		InitialBalances: initial,
		// Not needed by the Tempo rule here (fees come from the token);
		// collected to check they are kept.
		InitialFeeBalances: map[qc.Address]map[qc.Address]*big.Int{safety.NativeToken: native},
		TxHashes:           txs,
		ChainTxs:           chainTxs,
		PageSize:           2, // many pages: the cursor is followed
		RequestTimeout:     5 * time.Second,
	}
	h, err := safety.Collect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}

	// What was gathered.
	for _, s := range h.Sources {
		if wantReachable := s.Name != "ghost"; s.Reachable != wantReachable {
			t.Errorf("source %s reachable = %v (errors %v)", s.Name, s.Reachable, s.Errors)
		}
		if s.Kind == safety.SourceSidecar && s.Reachable && (s.Pages < 2 || s.ErrorCount > 0 || s.ID == (qc.ValidatorID{})) {
			t.Errorf("source %s: %d pages, errors %v, id %s", s.Name, s.Pages, s.Errors, s.ID)
		}
	}
	for i, n := range cl.Nodes {
		name := cl.Committee.Members[i].Name
		got := 0
		for _, r := range h.Certificates {
			if slices.Contains(r.SeenBy, name) {
				got++
			}
		}
		if want := boardCerts(t, n.Sidecar.Board()); got < want {
			t.Errorf("%s: collected %d certificates, its board holds %d", name, got, want)
		}
	}
	for _, tx := range certified {
		// Sidecars may hold different QCs for one transaction (different
		// quorums of its four certificates); together all four hold one.
		var holders []string
		for _, r := range h.QCs {
			if r.QC.TxHash == tx {
				for _, s := range r.SeenBy {
					if !slices.Contains(holders, s) {
						holders = append(holders, s)
					}
				}
			}
		}
		if len(holders) != 4 {
			t.Errorf("QCs of %s seen by %v, want all four sidecars", tx, holders)
		}
	}
	if len(h.Evidence) == 0 {
		t.Error("no equivocation evidence collected from the equivocating validator")
	}
	if n := h.ChainNonces[accounts[0]]; n != 1 {
		t.Errorf("alice's chain nonce %d, want 1", n)
	}
	// On chain are exactly the certified payments' transactions (the
	// double spend's loser never got there).
	for _, s := range all {
		if _, onChain := h.ChainIncluded[s.p.ChainTx]; onChain != (s.qc != nil) {
			t.Errorf("%s: on chain %v, certified %v", s.p.Name, onChain, s.qc != nil)
		}
	}
	if h.Committee.SettlementMargin != 10*time.Second || len(h.InitialFeeBalances[safety.NativeToken]) != 3 {
		t.Errorf("margin %s, native balances %v", h.Committee.SettlementMargin, h.InitialFeeBalances)
	}

	for _, hh := range []*safety.History{h, roundTrip(t, h)} {
		r := safety.Check(hh, &run)
		var text bytes.Buffer
		if err := r.WriteText(&text); err != nil {
			t.Fatal(err)
		}
		if !r.OK() {
			t.Fatalf("a healthy run fails the check:\n%s", text.String())
		}
		if len(r.Byzantine) == 0 || len(r.Byzantine[0].DetectedBy) == 0 || r.Byzantine[0].Validator != cl.Committee.Members[byz].Name {
			t.Errorf("Byzantine findings %+v", r.Byzantine)
		}
		if r.Fees.Counted != len(certified) || r.Fees.NoTerms != 0 {
			t.Errorf("fee stats %+v, want %d counted", r.Fees, len(certified))
		}
		if r.Payments.Settled != len(certified) || r.Payments.WithQC != len(certified) || r.LightClients[0].Verified != len(lightQCs) {
			t.Errorf("settled %d, with QC %d, light client verified %d; want %d, %d, %d", r.Payments.Settled, r.Payments.WithQC,
				r.LightClients[0].Verified, len(certified), len(certified), len(lightQCs))
		}
		if t.Failed() {
			t.Logf("report:\n%s", text.String())
		}
	}
}

// TestCollectInvalidSignatures: a validator publishing corrupted
// signatures keeps them on its own board only; Collect gathers them and
// Check attributes them to it without a violation.
func TestCollectInvalidSignatures(t *testing.T) {
	memChain := tempo.NewMemChain()
	demo := devkit.DemoAccounts()
	for _, a := range demo {
		memChain.SetBalance(common.Address(qc.Address(devkit.TokenAddress)), a.Address, big.NewInt(100_000_000))
	}
	memChain.SetHead(10)
	const byz = 0
	cl := nodetest.New(t, 4, 1337, memChain, nodetest.WithConfig(func(i int, cfg *node.Config) {
		if i == byz {
			cfg.Byzantine.Mode = sidecar.ByzantineInvalidSignatures
		}
	}))
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)
	committeeFile := filepath.Join(t.TempDir(), "committee.toml")
	if err := cl.Committee.Write(committeeFile); err != nil {
		t.Fatal(err)
	}
	var certified []qc.Hash
	for i := range 3 {
		s := pay(t, cl, 1+i, "p", nodetest.Pay{Key: demo[0].Key, ChainID: 1337, Nonce: uint64(i), Recipient: demo[1].Address, Amount: 5}.Request(t), false)
		if s.qc == nil {
			t.Fatalf("payment %d: no QC (%s)", i, s.p.Outcome)
		}
		certified = append(certified, s.qc.TxHash)
	}
	testkit.Eventually(t, 20*time.Second, "the Byzantine board holds every QC", func() bool {
		for _, tx := range certified {
			if _, ok := cl.Nodes[byz].Sidecar.Board().QC(tx); !ok {
				return false
			}
		}
		return true
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, err := safety.Collect(ctx, safety.CollectConfig{Sidecars: sidecars(cl, byz), CommitteeFile: committeeFile})
	if err != nil {
		t.Fatal(err)
	}
	r := safety.Check(h, nil)
	var text bytes.Buffer
	_ = r.WriteText(&text)
	byzName := cl.Committee.Members[byz].Name
	if !r.OK() || r.Certificates.InvalidBySigner[byzName] < len(certified) || r.QCs.Certified != len(certified) {
		t.Fatalf("OK %v, invalid by signer %v, certified %d:\n%s", r.OK(), r.Certificates.InvalidBySigner, r.QCs.Certified, text.String())
	}
	// Corrupted certificates stay on the Byzantine board.
	byzID := validatorIDOf(t, h, byzName)
	invalid := 0
	for _, c := range h.Certificates {
		if c.Cert.Signer != byzID || !slices.Equal(c.SeenBy, []string{byzName}) {
			continue
		}
		invalid++
	}
	if invalid < len(certified) {
		t.Fatalf("%d certificates of %s seen only on its own board, want at least %d", invalid, byzName, len(certified))
	}
}

func validatorIDOf(t *testing.T, h *safety.History, name string) qc.ValidatorID {
	t.Helper()
	for _, m := range h.Committee.Members {
		if m.Name == name {
			return m.ID
		}
	}
	t.Fatalf("no member %s", name)
	return qc.ValidatorID{}
}

func roundTrip(t *testing.T, h *safety.History) *safety.History {
	t.Helper()
	path := filepath.Join(t.TempDir(), "history.json")
	if err := h.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	back, err := safety.ReadHistoryFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return back
}
