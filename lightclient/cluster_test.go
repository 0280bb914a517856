package lightclient_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/lightclient"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// These tests run four real sidecars (nodetest) and a light client
// bootstrapped from their addresses.

const chainID = 1337

var (
	alice = nodetest.Key("alice")
	bob   = nodetest.Address(nodetest.Key("bob"))
	// carol is on another QC shard than bob; dave on bob's shard.
	carol = addressWhere("carol", func(a common.Address) bool { return shard(a) != shard(bob) })
	dave  = addressWhere("dave", func(a common.Address) bool { return shard(a) == shard(bob) && a != bob })
)

func shard(a common.Address) int { return p2p.QCShard(a, p2p.DefaultQCShards) }

// addressWhere returns the first deterministic test address named
// name, name-1, name-2, ... that satisfies ok.
func addressWhere(name string, ok func(common.Address) bool) common.Address {
	for i := 0; ; i++ {
		n := name
		if i > 0 {
			n = fmt.Sprintf("%s-%d", name, i)
		}
		if a := nodetest.Address(nodetest.Key(n)); ok(a) {
			return a
		}
	}
}

func startCluster(t *testing.T) (*nodetest.Cluster, *qc.Committee) {
	t.Helper()
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
	return cl, committee
}

func bootstrapOf(cl *nodetest.Cluster) []peer.AddrInfo {
	var out []peer.AddrInfo
	for _, n := range cl.Nodes {
		out = append(out, n.Sidecar.Mesh().Host().AddrInfo())
	}
	return out
}

func startClient(t *testing.T, cl *nodetest.Cluster, committee *qc.Committee, watch ...common.Address) *lightclient.Client {
	t.Helper()
	cfg := lightclient.DefaultConfig()
	cfg.Committee = committee
	cfg.QCShards = cl.Committee.QCShards
	cfg.Bootstrap = bootstrapOf(cl)
	cfg.Watch = watch
	// Loopback tuning: fast redials and score snapshots every 200 ms.
	cfg.P2P = p2p.LocalConfig()
	lc, err := lightclient.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := lc.Stop(ctx); err != nil {
			t.Errorf("stop light client: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := lc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return lc
}

// waitSubscribed waits until every sidecar sees p subscribed to QC shard
// s, so a QC published from then on reaches it.
func waitSubscribed(t *testing.T, cl *nodetest.Cluster, p peer.ID, s int) {
	t.Helper()
	topic := p2p.QCTopic(cl.Committee.ChainID, cl.Committee.Epoch, s)
	testkit.Eventually(t, 20*time.Second, fmt.Sprintf("sidecars see %s on QC shard %d", p, s), func() bool {
		for _, n := range cl.Nodes {
			if !slices.Contains(n.Sidecar.Mesh().ListPeers(topic), p) {
				return false
			}
		}
		return true
	})
}

// pay submits a payment from alice to node i's stream and returns its QC.
func pay(t *testing.T, cl *nodetest.Cluster, i int, nonce uint64, to common.Address, amount uint64) *qc.QC {
	t.Helper()
	req := nodetest.Pay{Key: alice, ChainID: chainID, Nonce: nonce, Recipient: to, Amount: amount}.Request(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := cl.Client(i).SubmitFastPayStream(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
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
			t.Fatalf("payment rejected: %s", e.Reject)
		case *fastpayv1.SubmitFastPayEvent_Qc:
			q, err := e.Qc.ToQC()
			if err != nil {
				t.Fatal(err)
			}
			return q
		}
	}
}

// nextPayment waits (bounded) for the light client's next payment.
func nextPayment(t *testing.T, lc *lightclient.Client, timeout time.Duration) lightclient.Payment {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case p, ok := <-lc.Payments():
		if !ok {
			t.Fatal("payments channel closed")
		}
		return p
	case <-timer.C:
		t.Fatalf("no payment within %s (stats %+v)", timeout, lc.Stats())
	}
	panic("unreachable")
}

func noPayment(t *testing.T, lc *lightclient.Client) {
	t.Helper()
	select {
	case p := <-lc.Payments():
		t.Fatalf("unexpected payment %+v", p)
	default:
	}
}

// TestLightClientFollowsWatchedAddress: a light client watching Bob reports
// Alice's payment to Bob with a QC that verifies; payments to Carol
// (another shard) never reach it and payments to Dave (Bob's shard) reach it
// but are not reported; it joins only Bob's QC shard, then Carol's when
// told to watch her.
func TestLightClientFollowsWatchedAddress(t *testing.T) {
	cl, committee := startCluster(t)
	lc := startClient(t, cl, committee, bob)
	waitSubscribed(t, cl, lc.ID(), shard(bob))

	q := pay(t, cl, 0, 0, bob, 10)
	p := nextPayment(t, lc, 20*time.Second)
	// The QC may differ from the stream's (another sidecar may assemble it
	// from another quorum of certificates); the transaction is the same.
	if p.TxHash != q.TxHash || p.QCHash != p.QC.Hash || p.QC.TxHash != q.TxHash || p.From != nodetest.Address(alice) || p.To != bob ||
		p.Amount != 10 || p.Asset != devkit.TokenAddress || p.NonceSeq != 0 || p.ReceivedAt.IsZero() {
		t.Fatalf("payment %+v, tx %s", p, q.TxHash)
	}
	if err := committee.VerifyQC(p.QC); err != nil {
		t.Fatalf("reported QC does not verify: %v", err)
	}
	if len(p.Signers) < committee.Quorum() {
		t.Fatalf("signers %v", p.Signers)
	}

	// Only Bob's QC shard: no tx or bulletin topic, and the sidecars do not
	// count the light client on them.
	bobTopic := p2p.QCTopic(chainID, 1, shard(bob))
	if got := lc.Mesh().JoinedTopics(); !slices.Equal(got, []string{bobTopic}) {
		t.Fatalf("joined %v, want only %s", got, bobTopic)
	}
	for _, n := range cl.Nodes {
		for _, topic := range []string{p2p.TxTopic(chainID, 1), p2p.BulletinTopic(chainID, 1)} {
			if slices.Contains(n.Sidecar.Mesh().ListPeers(topic), lc.ID()) {
				t.Fatalf("a sidecar lists the light client on %s", topic)
			}
		}
	}

	// Carol is on another shard: her QC never reaches the client.
	carolsFirst := pay(t, cl, 1, 1, carol, 20)
	// Dave shares Bob's shard: his QC arrives, verifies and is not reported.
	pay(t, cl, 2, 2, dave, 30)
	testkit.Eventually(t, 20*time.Second, "the light client sees Dave's QC", func() bool { return lc.Stats().Unwatched >= 1 })
	q = pay(t, cl, 3, 3, bob, 40)
	if p := nextPayment(t, lc, 20*time.Second); p.TxHash != q.TxHash || p.To != bob {
		t.Fatalf("after Carol's and Dave's payments got %+v, want Bob's %s", p, q.TxHash)
	}
	noPayment(t, lc)

	// Watching Carol at runtime joins her shard.
	if err := lc.Watch(carol); err != nil {
		t.Fatal(err)
	}
	if got := lc.Mesh().JoinedTopics(); len(got) != 2 || !slices.Contains(got, p2p.QCTopic(chainID, 1, shard(carol))) {
		t.Fatalf("joined %v after watching Carol", got)
	}
	waitSubscribed(t, cl, lc.ID(), shard(carol))
	q = pay(t, cl, 0, 4, carol, 50)
	p = nextPayment(t, lc, 20*time.Second)
	reported := uint64(3)
	if p.TxHash == carolsFirst.TxHash {
		// Joining a shard, a client may also learn its last seconds of QCs
		// through gossip (validators announce recent messages to peers
		// outside their mesh): Carol's earlier payment, reported once.
		reported++
		p = nextPayment(t, lc, 20*time.Second)
	}
	if p.TxHash != q.TxHash || p.To != carol || p.Amount != 50 {
		t.Fatalf("Carol's payment: %+v", p)
	}
	for _, topic := range lc.Mesh().JoinedTopics() {
		if info, err := p2p.ParseTopic(topic); err != nil || info.Kind != p2p.KindQC {
			t.Fatalf("joined non-QC topic %s", topic)
		}
	}
	// LateVerified 0: every QC went through the client's own validator stage.
	if st := lc.Stats(); st.Reported != reported || st.Conflicts != 0 || st.Rejected != 0 || st.Dropped != 0 || st.LateVerified != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// forgery helpers: the test holds the committee's keys, so it can sign as
// any validator.

func signers(cl *nodetest.Cluster, committee *qc.Committee) []*qc.Signer {
	var out []*qc.Signer
	for i, k := range cl.Keys {
		out = append(out, qc.NewSigner(k, cl.Committee.Members[i].Name, committee.Domain()))
	}
	return out
}

func bobEffects(nonce, amount uint64) qc.Effects {
	return qc.Effects{
		Sender: qc.Address(nodetest.Address(alice)), Recipient: qc.Address(bob), Amount: amount,
		Asset: qc.Address(devkit.TokenAddress), NonceSeq: nonce,
	}
}

func buildQC(t *testing.T, committee *qc.Committee, ss []*qc.Signer, tx qc.Hash, eff qc.Effects, who ...int) *qc.QC {
	t.Helper()
	a := qc.NewAssembler(committee, tx, eff.Hash())
	for _, i := range who {
		if _, err := a.Add(ss[i].Sign(tx, eff, uint64(time.Now().UnixMilli()))); err != nil {
			t.Fatal(err)
		}
	}
	q, err := a.Build()
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// TestForgedQCsFromOutsider: another non-committee peer on Bob's shard
// forwards frames naming a committee member as their publisher (frames are
// unsigned, so it can): one with a tampered signature and one with a
// below-quorum QC paying Bob. The light client reports neither and scores
// the peer below zero (so do the validators). A valid QC in a frame naming
// the outsider itself as publisher is refused too (only members publish
// frames); the same QC in a frame naming a member is reported (the path
// works, objects authenticate themselves), and two valid but conflicting
// QCs (a safety violation simulated with the committee's keys) yield one
// payment and a Conflict.
func TestForgedQCsFromOutsider(t *testing.T) {
	cl, committee := startCluster(t)
	lc := startClient(t, cl, committee, bob)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The outsider: a non-committee mesh on Bob's shard, connected to the
	// light client and the sidecars. Its own publishes skip validation, so
	// forgeries leave it as they are.
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	forger, err := p2p.New(p2p.LocalConfig(), key, committee, append(bootstrapOf(cl), lc.AddrInfo()), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = forger.Stop(sctx)
	})
	if err := forger.JoinQCShards([]int{shard(bob)}); err != nil {
		t.Fatal(err)
	}
	if err := forger.Start(ctx); err != nil {
		t.Fatal(err)
	}
	bobTopic := p2p.QCTopic(chainID, 1, shard(bob))
	testkit.Eventually(t, 20*time.Second, "the outsider and the light client see each other on Bob's shard", func() bool {
		return slices.Contains(forger.ListPeers(bobTopic), lc.ID()) && slices.Contains(lc.Mesh().ListPeers(bobTopic), forger.ID())
	})
	waitSubscribed(t, cl, forger.ID(), shard(bob))

	ss := signers(cl, committee)
	badSig := buildQC(t, committee, ss, sha256.Sum256([]byte("forged-1")), bobEffects(100, 1_000_000), 0, 1, 2)
	badSig.Certs[2].Signature[11] ^= 0x01
	badSig.Hash = qc.ComputeQCHash(badSig.TxHash, badSig.EffectsHash, badSig.Threshold, badSig.Certs)
	below := buildQC(t, committee, ss, sha256.Sum256([]byte("forged-2")), bobEffects(101, 2_000_000), 0, 1, 2)
	below.Certs = below.Certs[:committee.Quorum()-1]
	below.Hash = qc.ComputeQCHash(below.TxHash, below.EffectsHash, below.Threshold, below.Certs)
	// forward sends qcs in one frame naming publisher.
	seq := uint64(0)
	forward := func(publisher qc.ValidatorID, qcs ...*qc.QC) {
		t.Helper()
		seq++
		data, err := p2p.EncodeQCFrame(p2p.FrameHeader{Publisher: publisher, Seq: seq}, qcs...)
		if err != nil {
			t.Fatal(err)
		}
		if err := forger.PublishRawFrame(ctx, bobTopic, data); err != nil {
			t.Fatal(err)
		}
	}
	member := ss[0].ID()
	for _, q := range []*qc.QC{badSig, below} {
		if err := committee.VerifyQC(q); err == nil {
			t.Fatal("forgery verifies")
		}
		forward(member, q)
	}
	testkit.Eventually(t, 20*time.Second, "the light client rejects both forgeries and scores the outsider below zero", func() bool {
		s, ok := lc.Score(forger.ID())
		return lc.Mesh().Stats().QC.Rejected >= 2 && ok && s < 0
	})
	testkit.Eventually(t, 20*time.Second, "the validators score the outsider below zero", func() bool {
		for _, n := range cl.Nodes {
			if s, ok := n.Sidecar.Mesh().Score(forger.ID()); !ok || s >= 0 {
				return false
			}
		}
		return true
	})
	s, _ := lc.Score(forger.ID())
	t.Logf("light client scores the outsider %.1f", s)
	noPayment(t, lc)

	// A valid QC forwarded by the same outsider is reported: the forgeries
	// were refused on content, not lost.
	valid := buildQC(t, committee, ss, sha256.Sum256([]byte("valid")), bobEffects(102, 3_000_000), 1, 2, 3)
	forgerID, err := p2p.ValidatorIDFromPeerID(forger.ID())
	if err != nil {
		t.Fatal(err)
	}
	rejected := lc.Mesh().Stats().QC.Rejected
	forward(forgerID, valid)
	testkit.Eventually(t, 20*time.Second, "the light client rejects a frame published by a non-member", func() bool {
		return lc.Mesh().Stats().QC.Rejected > rejected
	})
	noPayment(t, lc)
	forward(member, valid)
	if p := nextPayment(t, lc, 20*time.Second); p.TxHash != valid.TxHash {
		t.Fatalf("got %+v, want the valid QC %s", p, valid.TxHash)
	} else if err := committee.VerifyQC(p.QC); err != nil {
		t.Fatal(err)
	}

	// Two valid QCs for one contention key (alice, 0, 103): more than f
	// validators equivocated. One is reported, the other is a Conflict.
	c1 := buildQC(t, committee, ss, sha256.Sum256([]byte("double-1")), bobEffects(103, 4_000_000), 0, 1, 2)
	c2 := buildQC(t, committee, ss, sha256.Sum256([]byte("double-2")), bobEffects(103, 5_000_000), 1, 2, 3)
	forward(member, c1)
	forward(member, c2)
	testkit.Eventually(t, 20*time.Second, "the conflict is detected", func() bool { return len(lc.Conflicts()) == 1 })
	cf := lc.Conflicts()[0]
	p := nextPayment(t, lc, 5*time.Second)
	if p.TxHash != cf.First.TxHash || cf.Second.TxHash == cf.First.TxHash ||
		!slices.Contains([]qc.Hash{c1.TxHash, c2.TxHash}, cf.Second.TxHash) || !slices.Contains([]qc.Hash{c1.TxHash, c2.TxHash}, p.TxHash) {
		t.Fatalf("payment %s, conflict %s then %s", p.TxHash, cf.First.TxHash, cf.Second.TxHash)
	}
	if cf.Key.NonceSeq != 103 || len(cf.Equivocators) != 2 {
		t.Fatalf("conflict key %s, equivocators %v", cf.Key, cf.Equivocators)
	}
	noPayment(t, lc)
	if st := lc.Stats(); st.Reported != 2 || st.Conflicts != 1 {
		t.Fatalf("stats %+v", st)
	}
	var names []string
	for _, m := range cf.Equivocators {
		names = append(names, m.Name)
	}
	if got := strings.Join(names, ","); !strings.Contains(got, "v1") || !strings.Contains(got, "v2") {
		t.Fatalf("equivocators %s", got)
	}
}
