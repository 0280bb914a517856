package sidecar_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/bulletin"
	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/sidecar"
)

// byzantineCluster starts four validators, validator byz in mode.
func byzantineCluster(t *testing.T, byz int, mode string) (*nodetest.Cluster, *qc.Committee) {
	t.Helper()
	cl := nodetest.New(t, 4, chainID, nodetest.Funded(), nodetest.WithConfig(func(i int, cfg *node.Config) {
		if i == byz {
			cfg.Byzantine.Mode = mode
		}
	}))
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)
	committee, err := cl.Committee.Committee()
	if err != nil {
		t.Fatal(err)
	}
	return cl, committee
}

func validatorID(key ed25519.PrivateKey) qc.ValidatorID {
	var id qc.ValidatorID
	copy(id[:], key.Public().(ed25519.PublicKey))
	return id
}

// boardQCs returns every QC a board holds for the transactions it has
// certificates for, plus those of extra (which may have none).
func boardQCs(t *testing.T, b *bulletin.Board, extra ...qc.Hash) []*qc.QC {
	t.Helper()
	seen := map[qc.Hash]bool{}
	var out []*qc.QC
	consider := func(h qc.Hash) {
		if seen[h] {
			return
		}
		seen[h] = true
		if q, ok := b.QC(h); ok {
			out = append(out, q)
		}
	}
	cursor := ""
	for range 1_000 {
		page, err := b.Query(bulletin.Query{Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for i := range page.Certs {
			consider(page.Certs[i].TxHash)
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	for _, h := range extra {
		consider(h)
	}
	return out
}

// checkQCSafety checks every QC on every board: it verifies, no signer
// appears twice in it, and no contention key has QCs for two transactions.
func checkQCSafety(t *testing.T, cl *nodetest.Cluster, committee *qc.Committee, extra ...qc.Hash) int {
	t.Helper()
	byKey := map[qc.ContentionKey]qc.Hash{}
	total := 0
	for i, n := range cl.Nodes {
		for _, q := range boardQCs(t, n.Sidecar.Board(), extra...) {
			total++
			signers := map[qc.ValidatorID]bool{}
			for _, c := range q.Certs {
				if signers[c.Signer] {
					t.Fatalf("node %d: QC for tx %s counts signer %s twice", i, q.TxHash, c.Signer)
				}
				signers[c.Signer] = true
			}
			key := q.Effects().ContentionKey()
			if prev, ok := byKey[key]; ok && prev != q.TxHash {
				t.Fatalf("node %d: QCs for two transactions (%s and %s) of contention key %s", i, prev, q.TxHash, key)
			}
			byKey[key] = q.TxHash
		}
	}
	return total
}

// TestByzantineInvalidSignatures: a validator whose certificates carry bad
// signatures cannot stop three honest ones from certifying; its
// certificates never enter an honest QC, and honest peers score it below
// zero.
func TestByzantineInvalidSignatures(t *testing.T) {
	const byz = 3
	cl, committee := byzantineCluster(t, byz, sidecar.ByzantineInvalidSignatures)
	byzID := validatorID(cl.Keys[byz])
	byzPeer, err := p2p.PeerIDFromValidatorID(byzID)
	if err != nil {
		t.Fatal(err)
	}

	// Enough payments for the penalty (100 × invalid²) to outweigh the
	// committee bonus (2,500): more than five invalid messages.
	const payments = 8
	var txs []qc.Hash
	for n := range payments {
		req := nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Nonce: uint64(n), Recipient: nodetest.Address(nodetest.Bob), Amount: 1}.Request(t)
		q, _ := cl.StreamToQC(n%byz, req)
		if err := committee.VerifyQC(q); err != nil {
			t.Fatalf("payment %d: QC does not verify: %v", n, err)
		}
		txs = append(txs, q.TxHash)
	}

	// The mode is active: the Byzantine node's own board holds corrupted
	// certificates of its own.
	corrupted := 0
	for _, h := range txs {
		st, _ := cl.Nodes[byz].Sidecar.Board().Status(h)
		for i := range st.Certs {
			if st.Certs[i].Signer == byzID && committee.VerifyCertificate(&st.Certs[i]) != nil {
				corrupted++
			}
		}
	}
	if corrupted == 0 {
		t.Fatal("the Byzantine validator published no corrupted certificate")
	}

	testkit.Eventually(t, 10*time.Second, "every honest node holds every QC", func() bool {
		for i := range byz {
			for _, h := range txs {
				if _, ok := cl.Nodes[i].Sidecar.Board().QC(h); !ok {
					return false
				}
			}
		}
		return true
	})
	for i := range byz {
		for _, q := range boardQCs(t, cl.Nodes[i].Sidecar.Board(), txs...) {
			if err := committee.VerifyQC(q); err != nil {
				t.Fatalf("honest node %d holds an invalid QC: %v", i, err)
			}
			for j := range q.Certs {
				if q.Certs[j].Signer == byzID && committee.VerifyCertificate(&q.Certs[j]) != nil {
					t.Fatalf("honest node %d: QC for %s carries the Byzantine signer's bad certificate", i, q.TxHash)
				}
			}
		}
	}
	checkQCSafety(t, cl, committee, txs...)

	testkit.Eventually(t, 15*time.Second, "every honest node scores the Byzantine peer below zero", func() bool {
		for i := range byz {
			if s, ok := cl.Nodes[i].Sidecar.Mesh().Score(byzPeer); !ok || s >= 0 {
				return false
			}
		}
		return true
	})
	for i := range byz {
		s, _ := cl.Nodes[i].Sidecar.Mesh().Score(byzPeer)
		t.Logf("node %d scores the Byzantine peer %.0f", i, s)
	}
}

// conflictingTxHash is the tx hash of req re-hashed with expiry + 1, as the
// equivocating validator signs it.
func conflictingTxHash(t *testing.T, p nodetest.Pay) qc.Hash {
	t.Helper()
	in, err := p.Request(t).GetTx().TxHashInput()
	if err != nil {
		t.Fatal(err)
	}
	in.Expiry.Value++
	return qc.TxHash(in)
}

// TestByzantineEquivocation: a validator that signs conflicting
// certificates for every key cannot stop the honest ones, is exposed by
// verifiable evidence on every honest board and on the HTTP API, and is
// never counted twice; no key gets two certified transactions.
func TestByzantineEquivocation(t *testing.T) {
	const byz = 2
	cl, committee := byzantineCluster(t, byz, sidecar.ByzantineEquivocate)
	byzID := validatorID(cl.Keys[byz])

	const payments = 4
	keys := map[qc.ContentionKey]bool{}
	var extra []qc.Hash
	for n := range payments {
		pay := nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Nonce: uint64(n), Recipient: nodetest.Address(nodetest.Carol), Amount: 2}
		// Every entry, the Byzantine one included.
		q, _ := cl.StreamToQC(n%len(cl.Nodes), pay.Request(t))
		if err := committee.VerifyQC(q); err != nil {
			t.Fatalf("payment %d: QC does not verify: %v", n, err)
		}
		keys[q.Effects().ContentionKey()] = true
		extra = append(extra, q.TxHash, conflictingTxHash(t, pay))
	}

	evidenceKeys := func(ev []qc.Equivocation) map[qc.ContentionKey]bool {
		got := map[qc.ContentionKey]bool{}
		for i := range ev {
			if ev[i].Signer() == byzID {
				got[ev[i].Key()] = true
			}
		}
		return got
	}
	testkit.Eventually(t, 10*time.Second, "every honest board has evidence for every payment", func() bool {
		for i, n := range cl.Nodes {
			if i == byz {
				continue
			}
			got := evidenceKeys(n.Sidecar.Board().Evidence())
			for k := range keys {
				if !got[k] {
					return false
				}
			}
		}
		return true
	})
	for i, n := range cl.Nodes {
		if i == byz {
			continue
		}
		for _, ev := range n.Sidecar.Board().Evidence() {
			if ev.Signer() != byzID {
				t.Fatalf("node %d holds evidence against honest validator %s", i, ev.Signer())
			}
			if err := committee.VerifyEquivocation(&ev); err != nil {
				t.Fatalf("node %d: evidence does not verify: %v", i, err)
			}
		}
	}

	// The same evidence over HTTP, verifiable by anyone with the committee.
	honest := (byz + 1) % len(cl.Nodes)
	api := fetchEvidence(t, "http://"+cl.Nodes[honest].API.Addr().String()+"/api/v1/evidence")
	if len(api.Evidence) == 0 {
		t.Fatal("GET /api/v1/evidence returned no evidence")
	}
	apiKeys := map[qc.ContentionKey]bool{}
	for i, je := range api.Evidence {
		first, err := je.First.ToCertificate("first")
		if err != nil {
			t.Fatal(err)
		}
		second, err := je.Second.ToCertificate("second")
		if err != nil {
			t.Fatal(err)
		}
		ev := qc.Equivocation{First: first, Second: second}
		if err := committee.VerifyEquivocation(&ev); err != nil {
			t.Fatalf("HTTP evidence %d does not verify: %v", i, err)
		}
		if ev.Signer() != byzID {
			t.Fatalf("HTTP evidence %d names %s, not the Byzantine validator", i, ev.Signer())
		}
		apiKeys[ev.Key()] = true
	}
	for k := range keys {
		if !apiKeys[k] {
			t.Fatalf("HTTP evidence lacks contention key %s", k)
		}
	}

	// Every board holds every QC; none counts a signer twice, and no key
	// has two certified transactions (the conflicting tx hashes included).
	testkit.Eventually(t, 10*time.Second, "every node holds every QC", func() bool {
		for _, n := range cl.Nodes {
			for i := 0; i < len(extra); i += 2 {
				if _, ok := n.Sidecar.Board().QC(extra[i]); !ok {
					return false
				}
			}
		}
		return true
	})
	if total := checkQCSafety(t, cl, committee, extra...); total != payments*len(cl.Nodes) {
		t.Fatalf("%d QCs on the boards, want %d (one per payment and node)", total, payments*len(cl.Nodes))
	}
}

func fetchEvidence(t *testing.T, url string) apiserver.EvidenceResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	var out apiserver.EvidenceResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestByzantineModeRefused: a Byzantine mode needs a committee marked as a
// test network, and an unknown mode is refused by name.
func TestByzantineModeRefused(t *testing.T) {
	cl := nodetest.New(t, 4, chainID, nodetest.Funded())
	production := *cl.Committee
	production.TestNetwork = false

	build := func(f *committee.File, mode string) error {
		cfg := node.DefaultConfig()
		cfg.DataDir = t.TempDir()
		cfg.P2P = p2p.LocalConfig()
		cfg.API.ListenAddr = "127.0.0.1:0"
		cfg.Byzantine.Mode = mode
		n, err := node.New(cfg, node.WithIdentity(f.Members[0].Name, cl.Keys[0]), node.WithCommittee(f), node.WithChain(cl.Chain),
			node.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			return err
		}
		// Construction opened the store and the host; a start and stop
		// releases them.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Start(ctx); err != nil {
			t.Fatalf("start: %v", err)
		}
		if err := n.Stop(ctx); err != nil {
			t.Fatalf("stop: %v", err)
		}
		return nil
	}

	for _, mode := range []string{sidecar.ByzantineEquivocate, sidecar.ByzantineInvalidSignatures} {
		err := build(&production, mode)
		want := fmt.Sprintf(`byzantine.mode: %q is only allowed on a test network`, mode)
		if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("mode %q without test_network: got error %v, want %q", mode, err, want)
		}
	}
	if err := build(&production, "lie-a-little"); err == nil || !strings.HasPrefix(err.Error(), `byzantine.mode: "lie-a-little" is unknown`) {
		t.Fatalf("unknown mode: got error %v", err)
	}
	if err := build(&production, ""); err != nil {
		t.Fatalf("honest node on a production committee: %v", err)
	}
	if err := build(cl.Committee, sidecar.ByzantineEquivocate); err != nil {
		t.Fatalf("Byzantine node on a test network: %v", err)
	}
}
