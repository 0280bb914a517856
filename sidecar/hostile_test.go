package sidecar_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"google.golang.org/protobuf/proto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
)

// rawPeer is a hostile libp2p peer running plain gossipsub on the
// committee's tx topic: no filters, flood publishing to every subscriber.
type rawPeer struct {
	h     host.Host
	topic *pubsub.Topic
}

func newRawPeer(t *testing.T, key ed25519.PrivateKey, txTopic string) *rawPeer {
	t.Helper()
	priv, err := crypto.UnmarshalEd25519PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(libp2p.Identity(priv), libp2p.NoTransports, libp2p.Transport(tcp.NewTCPTransport),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// Its own ids are its business; they only need to tell its messages
	// apart.
	msgID := func(m *pb.Message) string { h := sha256.Sum256(m.GetData()); return string(h[:]) }
	ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithFloodPublish(true),
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign), pubsub.WithNoAuthor(), pubsub.WithMessageIdFn(msgID))
	if err != nil {
		t.Fatal(err)
	}
	topic, err := ps.Join(txTopic)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topic.Subscribe(); err != nil {
		t.Fatal(err)
	}
	return &rawPeer{h: h, topic: topic}
}

// txSeen is how many tx-topic messages a node has validated, dropped as an
// outsider's, or dropped as duplicates.
func txSeen(n *node.Node) uint64 {
	st := n.Sidecar.Mesh().Stats().Tx
	return st.Accepted + st.Ignored + st.Rejected + st.Duplicates + st.Outsider
}

// TestGossipIDCensorship: a peer outside the committee and a Byzantine
// member each get a signed payment before the mesh does and send it on the
// tx topic with an invalid parent QC attached. Pubsub marks a message id as
// seen before validating it, so with an id derived from tx_hash alone the
// genuine copy from the entry sidecar was dropped as a duplicate and no QC
// formed. The payment must still get its QC in normal time.
func TestGossipIDCensorship(t *testing.T) {
	chain := nodetest.Funded()
	cl := nodetest.New(t, 4, chainID, chain, nodetest.WithConfig(func(_ int, cfg *node.Config) {
		// Only gossip may deliver the payment within the deadline below.
		cfg.Sidecar.ReannounceInterval = time.Minute
		cfg.Sidecar.ReannounceMaxInterval = time.Minute
	}))
	// Validator 3's key belongs to the attacker: the honest three are the
	// quorum, so every one of them must sign.
	for i := range 3 {
		cl.Start(i)
	}
	cl.WaitMesh(20 * time.Second)
	txTopic := p2p.TxTopic(cl.Committee.ChainID, cl.Committee.Epoch)
	outsiderKey := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	attackers := map[string]*rawPeer{
		"outsider":         newRawPeer(t, outsiderKey, txTopic),
		"byzantine member": newRawPeer(t, cl.Keys[3], txTopic),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for name, a := range attackers {
		for _, n := range cl.Nodes[1:3] {
			if err := a.h.Connect(ctx, n.Sidecar.Mesh().Host().AddrInfo()); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
	}
	member := attackers["byzantine member"]
	testkit.Eventually(t, 20*time.Second, "the attackers see the validators on the tx topic", func() bool {
		for _, a := range attackers {
			for _, n := range cl.Nodes[1:3] {
				if !slices.Contains(a.topic.ListPeers(), n.Sidecar.Mesh().ID()) {
					return false
				}
			}
		}
		for _, n := range cl.Nodes[1:3] {
			if !slices.Contains(n.Sidecar.Mesh().ListPeers(txTopic), member.h.ID()) {
				return false
			}
		}
		return true
	})

	// A forged QC: a valid QC's shape with one signature corrupted.
	var committee []*qc.Signer
	cf, err := cl.Committee.Committee()
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range cl.Keys {
		committee = append(committee, qc.NewSigner(k, cl.Committee.Members[i].Name, cf.Domain()))
	}
	for round, pay := range []nodetest.Pay{
		{Key: nodetest.Alice, ChainID: chainID, Recipient: nodetest.Address(nodetest.Bob), Amount: 10},
		{Key: nodetest.Bob, ChainID: chainID, Recipient: nodetest.Address(nodetest.Carol), Amount: 7},
	} {
		genuine := pay.Request(t)
		txHash, err := p2p.TxHash(genuine)
		if err != nil {
			t.Fatal(err)
		}
		p, err := cl.Nodes[0].Sidecar.Validator().Decode(genuine)
		if err != nil {
			t.Fatal(err)
		}
		var certs []qc.Certificate
		for _, s := range committee[:3] {
			certs = append(certs, s.Sign(txHash, p.Effects, 1))
		}
		certs[1].Signature[5] ^= 0x40
		forged := &qc.QC{TxHash: txHash, EffectsHash: p.Effects.Hash(), Certs: certs, Threshold: uint32(cf.Quorum())}
		forged.Hash = qc.ComputeQCHash(forged.TxHash, forged.EffectsHash, forged.Threshold, forged.Certs)
		poisoned := proto.Clone(genuine).(*fastpayv1.SubmitFastPayRequest)
		poisoned.ParentQcs = []*fastpayv1.QuorumCertificate{fastpayv1.NewQuorumCertificate(forged)}
		data, err := proto.Marshal(poisoned)
		if err != nil {
			t.Fatal(err)
		}
		before := []uint64{txSeen(cl.Nodes[1]), txSeen(cl.Nodes[2])}
		for _, a := range attackers {
			if err := a.topic.Publish(ctx, data); err != nil {
				t.Fatal(err)
			}
		}
		testkit.Eventually(t, 20*time.Second, "validators 1 and 2 handle both poisoned copies", func() bool {

			return txSeen(cl.Nodes[1]) >= before[0]+2 && txSeen(cl.Nodes[2]) >= before[1]+2
		})

		start := time.Now()
		q := cl.PayToQC(0, genuine, 5*time.Second)
		t.Logf("round %d: QC in %s with %d certificates", round, time.Since(start).Round(time.Millisecond), len(q.Certs))
		if q.TxHash != txHash {
			t.Fatalf("QC for %s, want %s", q.TxHash, txHash)
		}
	}
	for _, n := range cl.Nodes[1:3] {
		st := n.Sidecar.Mesh().Stats().Tx
		if st.Outsider < 2 {
			t.Errorf("%d outsider messages dropped before pubsub, want 2", st.Outsider)
		}
		if st.Rejected < 2 {
			t.Errorf("%d tx messages rejected, want the member's 2 poisoned copies", st.Rejected)
		}
	}
	// A forged parent QC is provably invalid: the member that sent it is
	// penalised below the standing every member starts with.
	bonus := p2p.DefaultScoreConfig().CommitteeBonus
	testkit.Eventually(t, 10*time.Second, "the Byzantine member's score to drop", func() bool {
		for _, n := range cl.Nodes[1:3] {
			if s, ok := n.Sidecar.Mesh().Score(member.h.ID()); !ok || s >= bonus {
				return false
			}
		}
		return true
	})
}
