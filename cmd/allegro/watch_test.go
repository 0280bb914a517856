package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/libp2p/go-libp2p/core/peer"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/client"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// watchPay submits a payment to a sidecar's stream and returns its QC.
func watchPay(t *testing.T, client fastpayv1.FastPaySidecarClient, req *fastpayv1.SubmitFastPayRequest) *qc.QC {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := client.SubmitFastPayStream(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			t.Fatal("stream ended without a QC")
		}
		if err != nil {
			t.Fatal(err)
		}
		switch e := ev.Event.(type) {
		case *fastpayv1.SubmitFastPayEvent_Reject:
			t.Fatalf("rejected: %s", e.Reject)
		case *fastpayv1.SubmitFastPayEvent_Qc:
			q, err := e.Qc.ToQC()
			if err != nil {
				t.Fatal(err)
			}
			return q
		}
	}
}

// TestWatchCommand: `allegro watch --count 1` against an in-process
// cluster prints the payment to the watched address and exits; --json
// prints it as a JSON object.
func TestWatchCommand(t *testing.T) {
	const chainID = 1337
	alice, bob := nodetest.Key("alice"), nodetest.Address(nodetest.Key("bob"))
	chain := tempo.NewMemChain()
	chain.SetBalance(devkit.TokenAddress, nodetest.Address(alice), big.NewInt(100_000_000))
	chain.SetHead(10)
	cl := nodetest.New(t, 4, chainID, chain)
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)
	committee, err := cl.Committee.Committee()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "committee.toml")
	if err := cl.Committee.Write(path); err != nil {
		t.Fatal(err)
	}
	base := []string{"watch", "--committee", path, "--count", "1", "--log-level", "error"}
	for _, n := range cl.Nodes {
		info := n.Sidecar.Mesh().Host().AddrInfo()
		for _, a := range info.Addrs {
			base = append(base, "--bootstrap", fmt.Sprintf("%s/p2p/%s", a, info.ID))
		}
	}
	// outsiders returns the non-committee peers every sidecar sees on the
	// shard of recipient (the watcher's light client, once subscribed).
	outsiders := func(recipient common.Address) map[peer.ID]bool {
		topic := p2p.QCTopic(chainID, 1, p2p.QCShard(recipient, cl.Committee.QCShards))
		var inAll map[peer.ID]bool
		for _, n := range cl.Nodes {
			here := make(map[peer.ID]bool)
			for _, p := range n.Sidecar.Mesh().ListPeers(topic) {
				if id, err := p2p.ValidatorIDFromPeerID(p); err != nil || !committee.Contains(id) {
					if inAll == nil || inAll[p] {
						here[p] = true
					}
				}
			}
			inAll = here
		}
		return inAll
	}

	// watch starts the command for recipient, waits until its light client
	// is subscribed, pays recipient and returns the output and the
	// transaction. Each call watches another recipient: a watcher may also
	// learn a recent QC through gossip, which must not be the previous
	// call's.
	seen := map[peer.ID]bool{}
	watch := func(recipient common.Address, nonce, amount uint64, extra ...string) (string, qc.Hash) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var out, errOut bytes.Buffer
		done := make(chan int, 1)
		args := append(append([]string(nil), base...), "--address", recipient.Hex())
		go func() { done <- app.Run(ctx, append(args, extra...), &out, &errOut) }()
		testkit.Eventually(t, 20*time.Second, "the watcher's light client subscribes to the recipient's shard", func() bool {
			fresh := false
			for p := range outsiders(recipient) {
				if !seen[p] {
					seen[p], fresh = true, true
				}
			}
			return fresh
		})
		q := watchPay(t, cl.Client(int(nonce)%len(cl.Nodes)), nodetest.Pay{Key: alice, ChainID: chainID, Nonce: nonce, Recipient: recipient, Amount: amount}.Request(t))
		timer := time.NewTimer(30 * time.Second)
		defer timer.Stop()
		select {
		case code := <-done:
			if code != 0 {
				t.Fatalf("watch exited %d: %s", code, errOut.String())
			}
		case <-timer.C:
			t.Fatalf("watch did not exit after the payment; output so far: %q", out.String())
		}
		return out.String(), q.TxHash
	}

	out, tx := watch(bob, 0, 12_345_678)
	t.Logf("text: %s", out)
	line := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z from=(0x[0-9a-fA-F]{40}) to=(0x[0-9a-fA-F]{40}) amount=\$12\.345678 tx=(0x[0-9a-f]{64}) qc=(0x[0-9a-f]{64}) signers=(v\d(,v\d)+)\n$`)
	m := line.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("output %q", out)
	}
	if m[1] != nodetest.Address(alice).Hex() || m[2] != bob.Hex() || m[3] != tx.Hex() || len(strings.Split(m[5], ",")) < committee.Quorum() {
		t.Fatalf("output %q: want from %s to %s tx %s", out, nodetest.Address(alice).Hex(), bob.Hex(), tx.Hex())
	}

	carol := nodetest.Address(nodetest.Key("carol"))
	out, tx = watch(carol, 1, 10, "--json", "--with-qc")
	t.Logf("json: %s", out)
	var got watchJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil || strings.Count(out, "\n") != 1 {
		t.Fatalf("json output %q: %v", out, err)
	}
	if got.TxHash != tx.Hex() || got.Amount != "0.000010" || got.AmountUnits != 10 || got.To != carol.Hex() ||
		got.NonceSeq != 1 || len(got.Signers) < committee.Quorum() || len(got.QCHash) != 66 {
		t.Fatalf("json %+v", got)
	}
	// --with-qc: the accepted QC, re-verifiable against the committee.
	raw, err := hex.DecodeString(got.QCProtoHex)
	if err != nil {
		t.Fatalf("qc_proto_hex %q: %v", got.QCProtoHex, err)
	}
	q, err := client.UnmarshalQC(raw, committee)
	if err != nil || q.TxHash != tx || q.Hash.Hex() != got.QCHash {
		t.Fatalf("qc_proto_hex: %v (QC %+v)", err, q)
	}
}

func TestWatchUsage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "committee.toml")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"watch", "--committee", path}, "--address"},
		{[]string{"watch", "--address", "0x0000000000000000000000000000000000000001"}, "--committee"},
		{[]string{"watch", "--address", "0x01", "--committee", path}, ""}, // the flag package reports it on stderr
		{[]string{"watch", "--address", "0x0000000000000000000000000000000000000001", "--committee", path}, "committee.toml"},
	}
	for _, tc := range cases {
		out, code := runCLI(t, tc.args...)
		if code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d, output %q (want %q)", tc.args, code, out, tc.want)
		}
	}
}
