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

// rawPeer is a hostile libp2p peer running plain gossipsub on one of the
// committee's topics: no filters, flood publishing to every subscriber.
type rawPeer struct {
	h     host.Host
	topic *pubsub.Topic
}

func newRawPeer(t *testing.T, key ed25519.PrivateKey, topicName string) *rawPeer {
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
	topic, err := ps.Join(topicName)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topic.Subscribe(); err != nil {
		t.Fatal(err)
	}
	return &rawPeer{h: h, topic: topic}
}

// attackFrom starts validators 0–2 of cl, connects a raw peer holding
// member 3's key (the Byzantine member) to validators 1 and 2 on topic, and
// waits until each side sees the other there. It returns the attacker and
// the two validators.
func attackFrom(t *testing.T, cl *nodetest.Cluster, topic string) (*rawPeer, []*node.Node) {
	t.Helper()
	for i := range 3 {
		cl.Start(i)
	}
	cl.WaitMesh(20 * time.Second)
	attacker := newRawPeer(t, cl.Keys[3], topic)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	targets := cl.Nodes[1:3]
	for _, n := range targets {
		if err := attacker.h.Connect(ctx, n.Sidecar.Mesh().Host().AddrInfo()); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 20*time.Second, "the attacker and validators 1 and 2 see each other on "+topic, func() bool {
		for _, n := range targets {
			if !slices.Contains(attacker.topic.ListPeers(), n.Sidecar.Mesh().ID()) || !slices.Contains(n.Sidecar.Mesh().ListPeers(topic), attacker.h.ID()) {
				return false
			}
		}
		return true
	})
	return attacker, targets
}

// waitPenalised waits until every target scores the attacker below the
// standing every member starts with.
func waitPenalised(t *testing.T, attacker *rawPeer, targets []*node.Node) {
	t.Helper()
	bonus := p2p.DefaultScoreConfig().CommitteeBonus
	testkit.Eventually(t, 10*time.Second, "the attacker's score to drop", func() bool {
		for _, n := range targets {
			if s, ok := n.Sidecar.Mesh().Score(attacker.h.ID()); !ok || s >= bonus {
				return false
			}
		}
		return true
	})
}

// committeeSigners returns cl's committee and a signer for each member.
func committeeSigners(t *testing.T, cl *nodetest.Cluster) (*qc.Committee, []*qc.Signer) {
	t.Helper()
	cf, err := cl.Committee.Committee()
	if err != nil {
		t.Fatal(err)
	}
	signers := make([]*qc.Signer, len(cl.Keys))
	for i, k := range cl.Keys {
		signers[i] = qc.NewSigner(k, cl.Committee.Members[i].Name, cf.Domain())
	}
	return cf, signers
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
		// Each attacker sends the poisoned request in a tx frame naming the
		// Byzantine member as publisher (frames are unsigned).
		data, err := p2p.EncodeTxFrame(p2p.FrameHeader{Publisher: validatorID(cl.Keys[3]), Seq: uint64(round + 1)}, poisoned)
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
			t.Errorf("%d tx frames rejected, want the member's 2 poisoned copies", st.Rejected)
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

// TestHostileFrames: a Byzantine member sends the validators bulletin
// frames that are garbage, oversized, carry one bad signature among valid
// objects, or name a non-member as publisher. Each is rejected, the member
// is penalised, and none of the valid objects inside is stored. The same
// valid objects in a well-formed frame are then accepted: the bad frames
// shadowed nothing.
func TestHostileFrames(t *testing.T) {
	cl := nodetest.New(t, 4, chainID, nodetest.Funded())
	attacker, targets := attackFrom(t, cl, p2p.BulletinTopic(cl.Committee.ChainID, cl.Committee.Epoch))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cf, signers := committeeSigners(t, cl)
	self := signers[3].ID()
	effects := func(seq uint64) qc.Effects {
		e := qc.Effects{Amount: 1_000 + seq, NonceSeq: seq}
		e.Sender[0], e.Recipient[0] = 0xaa, 0xbb
		return e
	}
	// The valid objects: the attacker's own certificate for one transaction
	// and a quorum QC (validators 0–2) for another.
	certTx, qcTx := sha256.Sum256([]byte("hostile-cert")), sha256.Sum256([]byte("hostile-qc"))
	ownCert := signers[3].Sign(certTx, effects(1), 1)
	a := qc.NewAssembler(cf, qcTx, effects(2).Hash())
	for _, s := range signers[:3] {
		if _, err := a.Add(s.Sign(qcTx, effects(2), 1)); err != nil {
			t.Fatal(err)
		}
	}
	validQC, err := a.Build()
	if err != nil {
		t.Fatal(err)
	}
	badCert := signers[3].Sign(sha256.Sum256([]byte("hostile-bad")), effects(3), 1)
	badCert.Signature[7] ^= 0x10
	outsider := validatorID(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	otherMember := signers[0].Sign(certTx, effects(1), 1)

	frame := func(publisher qc.ValidatorID, seq uint64, certs []qc.Certificate, qcs ...*qc.QC) []byte {
		data, err := p2p.EncodeBulletinFrame(p2p.FrameHeader{Publisher: publisher, Seq: seq}, certs, qcs, nil)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	hostile := []struct {
		name string
		data []byte
	}{
		{"garbage", []byte("\xff\x01 not a frame at all")},
		{"oversized", append(frame(self, 1, []qc.Certificate{ownCert}, validQC), make([]byte, p2p.MaxFrameSize)...)},
		{"one bad signature among valid objects", frame(self, 2, []qc.Certificate{ownCert, badCert}, validQC)},
		{"non-member publisher", frame(outsider, 3, nil, validQC)},
		{"another member's certificate", frame(self, 4, []qc.Certificate{otherMember}, validQC)},
	}
	rejected := func(n *node.Node) uint64 { return n.Sidecar.Mesh().Stats().Bulletin.Rejected }
	stored := func(n *node.Node) bool {
		_, certKnown := n.Sidecar.Board().Status(certTx)
		_, qcKnown := n.Sidecar.Board().QC(qcTx)
		return certKnown || qcKnown
	}
	for _, h := range hostile {
		before := []uint64{rejected(targets[0]), rejected(targets[1])}
		if err := attacker.topic.Publish(ctx, h.data); err != nil {
			t.Fatalf("%s: %v", h.name, err)
		}
		testkit.Eventually(t, 20*time.Second, h.name+": validators 1 and 2 reject the frame", func() bool {
			return rejected(targets[0]) > before[0] && rejected(targets[1]) > before[1]
		})
		for i, n := range targets {
			if stored(n) {
				t.Fatalf("%s: validator %d stored an object of a rejected frame", h.name, i+1)
			}
		}
	}
	waitPenalised(t, attacker, targets)

	// The same valid objects in a well-formed frame are accepted.
	if err := attacker.topic.Publish(ctx, frame(self, 5, []qc.Certificate{ownCert}, validQC)); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "validators 1 and 2 store the valid frame's objects", func() bool {
		for _, n := range targets {
			st, ok := n.Sidecar.Board().Status(certTx)
			if _, hasQC := n.Sidecar.Board().QC(qcTx); !ok || len(st.Certs) != 1 || !hasQC {
				return false
			}
		}
		return true
	})
}

// TestHostileTxFrame: a Byzantine member sends a tx frame holding a valid
// transaction that carries a valid parent QC, and a transaction carrying a
// forged parent QC. The frame is rejected whole: the valid transaction's
// parent QC is not learned and the transaction is not signed. The valid
// transaction alone in a well-formed frame is then accepted, parent
// included.
func TestHostileTxFrame(t *testing.T) {
	cl := nodetest.New(t, 4, chainID, nodetest.Funded(), nodetest.WithConfig(func(_ int, cfg *node.Config) {
		// Only the attacker's frames may bring the transaction here.
		cfg.Sidecar.ReannounceInterval = time.Minute
		cfg.Sidecar.ReannounceMaxInterval = time.Minute
	}))
	attacker, targets := attackFrom(t, cl, p2p.TxTopic(cl.Committee.ChainID, cl.Committee.Epoch))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cf, signers := committeeSigners(t, cl)
	// certify builds a QC of validators 0–2 for req; corrupt spoils one
	// signature.
	certify := func(req *fastpayv1.SubmitFastPayRequest, corrupt bool) *qc.QC {
		p, err := cl.Nodes[0].Sidecar.Validator().Decode(req)
		if err != nil {
			t.Fatal(err)
		}
		var certs []qc.Certificate
		for _, s := range signers[:3] {
			certs = append(certs, s.Sign(p.TxHash, p.Effects, 1))
		}
		if corrupt {
			certs[1].Signature[5] ^= 0x40
		}
		q := &qc.QC{TxHash: p.TxHash, EffectsHash: p.Effects.Hash(), Certs: certs, Threshold: uint32(cf.Quorum())}
		q.Hash = qc.ComputeQCHash(q.TxHash, q.EffectsHash, q.Threshold, q.Certs)
		return q
	}
	parent := certify(nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Recipient: nodetest.Address(nodetest.Bob), Amount: 10}.Request(t), false)
	forgedParent := certify(nodetest.Pay{Key: nodetest.Carol, ChainID: chainID, Recipient: nodetest.Address(nodetest.Alice), Amount: 5}.Request(t), true)
	valid := nodetest.Pay{Key: nodetest.Bob, ChainID: chainID, Recipient: nodetest.Address(nodetest.Carol), Amount: 7, Parent: parent}.Request(t)
	poisoned := nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Nonce: 1, Recipient: nodetest.Address(nodetest.Carol), Amount: 3, Parent: forgedParent}.Request(t)
	validHash, err := p2p.TxHash(valid)
	if err != nil {
		t.Fatal(err)
	}
	frame := func(seq uint64, reqs ...*fastpayv1.SubmitFastPayRequest) []byte {
		data, err := p2p.EncodeTxFrame(p2p.FrameHeader{Publisher: validatorID(cl.Keys[3]), Seq: seq}, reqs...)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	rejected := func(n *node.Node) uint64 { return n.Sidecar.Mesh().Stats().Tx.Rejected }
	before := []uint64{rejected(targets[0]), rejected(targets[1])}
	if err := attacker.topic.Publish(ctx, frame(1, valid, poisoned)); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "validators 1 and 2 reject the frame", func() bool {
		return rejected(targets[0]) > before[0] && rejected(targets[1]) > before[1]
	})
	for i, n := range targets {
		if n.Sidecar.Validator().KnowsQC(parent.Hash) {
			t.Errorf("validator %d learned the parent QC of a rejected frame", i+1)
		}
		if _, known := n.Sidecar.Board().Status(validHash); known {
			t.Errorf("validator %d holds a transaction of a rejected frame", i+1)
		}
	}
	waitPenalised(t, attacker, targets)

	if err := attacker.topic.Publish(ctx, frame(2, valid)); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "validators 1 and 2 learn the parent and sign the valid transaction", func() bool {
		for _, n := range targets {
			st, ok := n.Sidecar.Board().Status(validHash)
			if !n.Sidecar.Validator().KnowsQC(parent.Hash) || !ok || len(st.Certs) == 0 {
				return false
			}
		}
		return true
	})
}

// TestEquivocationForwarded: a Byzantine member shows its two conflicting
// certificates to one validator only. That validator forwards the pair on
// the bulletin, so every honest validator holds the evidence.
func TestEquivocationForwarded(t *testing.T) {
	cl := nodetest.New(t, 4, chainID, nodetest.Funded())
	for i := range 3 {
		cl.Start(i)
	}
	cl.WaitMesh(20 * time.Second)
	bulletinTopic := p2p.BulletinTopic(cl.Committee.ChainID, cl.Committee.Epoch)
	attacker := newRawPeer(t, cl.Keys[3], bulletinTopic)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	witness := cl.Nodes[1]
	if err := attacker.h.Connect(ctx, witness.Sidecar.Mesh().Host().AddrInfo()); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "the attacker and validator 1 see each other on the bulletin", func() bool {
		return slices.Contains(attacker.topic.ListPeers(), witness.Sidecar.Mesh().ID()) &&
			slices.Contains(witness.Sidecar.Mesh().ListPeers(bulletinTopic), attacker.h.ID())
	})
	cf, err := cl.Committee.Committee()
	if err != nil {
		t.Fatal(err)
	}
	signer := qc.NewSigner(cl.Keys[3], cl.Committee.Members[3].Name, cf.Domain())
	e1 := qc.Effects{Amount: 5, NonceSeq: 9}
	e1.Sender[0], e1.Recipient[0] = 0xaa, 0xbb
	e2 := e1
	e2.Recipient[0] = 0xcc
	first := signer.Sign(sha256.Sum256([]byte("equivocation-1")), e1, 1)
	second := signer.Sign(sha256.Sum256([]byte("equivocation-2")), e2, 1)
	for seq, c := range []qc.Certificate{first, second} {
		data, err := p2p.EncodeBulletinFrame(p2p.FrameHeader{Publisher: signer.ID(), Seq: uint64(seq + 1)}, []qc.Certificate{c}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := attacker.topic.Publish(ctx, data); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 20*time.Second, "every honest validator holds the evidence", func() bool {
		for _, i := range []int{0, 1, 2} {
			ev := cl.Nodes[i].Sidecar.Board().Evidence()
			if len(ev) != 1 || ev[0].Signer() != signer.ID() {
				return false
			}
		}
		return true
	})
	if err := cf.VerifyEquivocation(&cl.Nodes[0].Sidecar.Board().Evidence()[0]); err != nil {
		t.Fatalf("forwarded evidence does not verify: %v", err)
	}
}
