package p2p

import (
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/qc"
)

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestMeshDelivery: a tx, a certificate and a QC published on one
// validator reach all four; a light client on the QC's shard gets the QC
// and nothing from the validators-only topics.
func TestMeshDelivery(t *testing.T) {
	c := newCluster(t, clusterOpts{validators: 4, lights: 1, lightShards: []int{3}})
	ctx := testCtx(t, 30*time.Second)
	v0, light := c.validators[0], c.lights[0]

	req := testRequest(1)
	h := mustTxHash(t, req)
	eff := testEffects(1, 0x23) // recipient shard 3
	cert := c.f.cert(0, h, eff)
	q := c.f.qcFrom(t, h, eff, 0, 1, 2)

	if err := v0.PublishTx(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := v0.PublishCertificate(ctx, cert); err != nil {
		t.Fatal(err)
	}
	if err := v0.PublishQC(ctx, q); err != nil {
		t.Fatal(err)
	}

	txID, certID := txID(t, req), certID(t, cert)
	bullQCID, shardQCID := bulletinQCID(t, q), shardQCID(t, 3, q)
	testkit.Eventually(t, 20*time.Second, "delivery to all validators and the light client", func() bool {
		for _, v := range c.validators {
			if !v.txs.has(txID) || !v.bull.has(certID) || !v.bull.has(bullQCID) || !v.qcs.has(shardQCID) {
				return false
			}
		}
		return light.qcs.has(shardQCID)
	})

	for _, v := range c.validators {
		local := v == v0
		v.txs.count(func(d Delivery[*TxMessage]) bool {
			if d.Value.TxHash != h || d.Local != local || (!local && d.From == v.ID()) {
				t.Errorf("%s: tx delivery %+v", v.name, d)
			}
			return true
		})
		v.bull.count(func(d Delivery[*BulletinItem]) bool {
			switch {
			case d.Value.Cert != nil && d.Value.Cert.Signer != cert.Signer,
				d.Value.QC != nil && d.Value.QC.Hash != q.Hash:
				t.Errorf("%s: bulletin delivery %+v", v.name, d.Value)
			}
			return true
		})
		if st := v.Stats(); st.Tx.Delivered != 1 || st.Bulletin.Delivered != 2 || st.QC.Delivered != 1 {
			t.Errorf("%s: stats %+v", v.name, st)
		}
	}
	if got := light.qcs.count(nil); got != 1 {
		t.Errorf("light client got %d QCs", got)
	}
	if light.txs.count(nil) != 0 || light.bull.count(nil) != 0 {
		t.Error("light client received validators-only messages")
	}
	if got := light.JoinedTopics(); !slices.Equal(got, []string{QCTopic(testDomain.ChainID, testDomain.Epoch, 3)}) {
		t.Errorf("light client joined %v", got)
	}
	if err := light.PublishTx(ctx, req); !errors.Is(err, ErrNotCommitteeMember) {
		t.Errorf("light PublishTx = %v", err)
	}
	if err := light.PublishCertificate(ctx, cert); !errors.Is(err, ErrNotCommitteeMember) {
		t.Errorf("light PublishCertificate = %v", err)
	}

	// Peers: every member by name, the light client as a connected outsider,
	// scores once a snapshot has run.
	testkit.Eventually(t, 10*time.Second, "peer scores", func() bool {
		ps := v0.Peers()
		if len(ps) != 4 {
			return false
		}
		for i, p := range ps[:3] {
			if !p.Member || !p.Connected || p.Name != c.validators[i+1].name || !p.HasScore || p.Score < 0 {
				return false
			}
		}
		return !ps[3].Member && ps[3].ID == light.ID() && ps[3].Connected && ps[3].HasScore
	})
}

// TestOutsiderExcluded: a peer outside the committee running plain
// gossipsub (no filters) subscribes to every topic. It receives QC-shard
// messages but never a tx or bulletin message, and what it publishes on
// the validators-only topics is rejected by every validator.
func TestOutsiderExcluded(t *testing.T) {
	c := newCluster(t, clusterOpts{validators: 4})
	ctx := testCtx(t, 40*time.Second)
	d := testDomain

	// TCP only, dialed once: a single connection per validator, which
	// nobody would redial if it dropped (the outsider is no bootstrap peer).
	h, err := libp2p.New(
		libp2p.Identity(libp2pKey(t, seededKey(0xEE, 9))),
		libp2p.NoTransports,
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.DisableRelay(),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	psCtx, psCancel := context.WithCancel(context.Background())
	t.Cleanup(psCancel)
	// Flood publishing: a hostile peer pushes to every subscriber it knows,
	// not just to mesh peers (validators never accept it into theirs).
	raw, err := pubsub.NewGossipSub(psCtx, h,
		pubsub.WithFloodPublish(true),
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(newTopicSet(d, LocalConfig().QCShards).messageID))
	if err != nil {
		t.Fatal(err)
	}
	txTopic, bullTopic, qcTopic := TxTopic(d.ChainID, d.Epoch), BulletinTopic(d.ChainID, d.Epoch), QCTopic(d.ChainID, d.Epoch, 3)
	subs := make(map[string]*pubsub.Subscription)
	topics := make(map[string]*pubsub.Topic)
	for _, name := range []string{txTopic, bullTopic, qcTopic} {
		tp, err := raw.Join(name)
		if err != nil {
			t.Fatal(err)
		}
		sub, err := tp.Subscribe()
		if err != nil {
			t.Fatal(err)
		}
		topics[name], subs[name] = tp, sub
	}
	for _, v := range c.validators {
		if err := h.Connect(ctx, v.Host().AddrInfo()); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 20*time.Second, "subscriptions exchanged with the outsider", func() bool {
		for _, v := range c.validators {
			if !slices.Contains(raw.ListPeers(txTopic), v.ID()) || !slices.Contains(v.ListPeers(qcTopic), h.ID()) {
				return false
			}
		}
		return true
	})
	// The subscription filter kept the outsider out of the private topics'
	// peer sets, so flood publishing never sends it a private message.
	for _, v := range c.validators {
		if slices.Contains(v.ListPeers(txTopic), h.ID()) || slices.Contains(v.ListPeers(bullTopic), h.ID()) {
			t.Fatalf("%s tracks the outsider on a validators-only topic", v.name)
		}
	}

	v0 := c.validators[0]
	req := testRequest(5)
	txHash := mustTxHash(t, req)
	eff := testEffects(5, 0x13) // shard 3
	cert := c.f.cert(0, txHash, eff)
	q := c.f.qcFrom(t, txHash, eff, 0, 2, 3)
	for _, err := range []error{v0.PublishTx(ctx, req), v0.PublishCertificate(ctx, cert), v0.PublishQC(ctx, q)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	qctx, qcancel := context.WithTimeout(ctx, 20*time.Second)
	got, err := subs[qcTopic].Next(qctx)
	qcancel()
	if err != nil {
		t.Fatalf("outsider got no QC: %v", err)
	}
	if got.ID != shardQCID(t, 3, q) {
		t.Errorf("outsider got message %x on the QC shard", got.ID)
	}
	testkit.Eventually(t, 20*time.Second, "validators to receive tx and cert", func() bool {
		for _, v := range c.validators {
			if !v.txs.has(txID(t, req)) || !v.bull.has(certID(t, cert)) {
				return false
			}
		}
		return true
	})
	// The tx and the certificate were published before the QC the outsider
	// already holds; give stragglers a short bounded window anyway.
	for _, name := range []string{txTopic, bullTopic} {
		nctx, ncancel := context.WithTimeout(ctx, 300*time.Millisecond)
		m, err := subs[name].Next(nctx)
		ncancel()
		if err == nil {
			t.Errorf("outsider received %x on %s", m.ID, name)
		}
	}

	// Raw publishes on the validators-only topics: every validator drops
	// them before pubsub records their ids (the RPC inspector), so they are
	// neither validated nor delivered and cannot shadow a genuine copy.
	spam := testRequest(77)
	spamHash := mustTxHash(t, spam)
	spamCert := c.f.cert(1, spamHash, testEffects(77, 0x13))
	if err := topics[txTopic].Publish(ctx, marshal(t, spam)); err != nil {
		t.Fatal(err)
	}
	if err := topics[bullTopic].Publish(ctx, bulletinCert(t, spamCert)); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "validators to drop the outsider's messages", func() bool {
		for _, v := range c.validators {
			for _, k := range []string{"tx", "bulletin"} {
				if metricValue(t, v.reg, "allegro_p2p_outsider_messages_dropped_total", map[string]string{"topic": k}) < 1 {
					return false
				}
			}
		}
		return true
	})
	// The same bytes from a member are new to every validator: the
	// outsider's copy left no trace in pubsub's seen cache.
	if err := c.validators[2].PublishTx(ctx, spam); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "the member's copy of the outsider's tx delivered", func() bool {
		for _, v := range c.validators {
			if !v.txs.has(txID(t, spam)) {
				return false
			}
		}
		return true
	})
	for _, v := range c.validators {
		if v.bull.has(certID(t, spamCert)) {
			t.Errorf("%s delivered the outsider's certificate", v.name)
		}
		if got := metricValue(t, v.reg, "allegro_p2p_validations_total", map[string]string{"topic": "tx", "verdict": "reject", "stage": stageMembership}); got != 0 {
			t.Errorf("%s validated %v outsider messages; they must be dropped before validation", v.name, got)
		}
	}
}

// TestForgedQCCannotShadow: a peer on an open QC shard sends a forged QC
// for a transaction before the genuine QC exists. The genuine QC still
// reaches every validator and light client, and a second valid QC of the
// same transaction (another signer subset) is ignored as a duplicate object
// without penalty.
func TestForgedQCCannotShadow(t *testing.T) {
	c := newCluster(t, clusterOpts{validators: 4, lights: 2, lightShards: []int{3}})
	ctx := testCtx(t, 30*time.Second)
	attacker, watcher := c.lights[0], c.lights[1]

	h := mustTxHash(t, testRequest(21))
	eff := testEffects(21, 0x03)
	forged := badSignatureQC(t, c.f, h, eff)
	if err := attacker.PublishQC(ctx, forged); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "validators to reject the forgery", func() bool {
		for _, v := range c.validators {
			if metricValue(t, v.reg, "allegro_p2p_validations_total", map[string]string{"topic": "qc", "verdict": "reject", "stage": stageVerify}) < 1 {
				return false
			}
		}
		return true
	})

	genuine := c.f.qcFrom(t, h, eff, 0, 1, 2)
	if err := c.validators[0].PublishQC(ctx, genuine); err != nil {
		t.Fatal(err)
	}
	id := shardQCID(t, 3, genuine)
	testkit.Eventually(t, 20*time.Second, "the genuine QC at every validator and the watcher", func() bool {
		for _, v := range c.validators {
			if !v.qcs.has(id) {
				return false
			}
		}
		return watcher.qcs.has(id)
	})

	other := c.f.qcFrom(t, h, eff, 1, 2, 3)
	if err := c.validators[1].PublishQC(ctx, other); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "the second QC of the transaction ignored as a duplicate", func() bool {
		for _, v := range append(c.validators[2:], c.validators[0]) {
			for _, topic := range []string{"qc", "bulletin"} {
				if metricValue(t, v.reg, "allegro_p2p_validations_total", map[string]string{"topic": topic, "verdict": "ignore", "stage": stageDuplicate}) < 1 {
					return false
				}
			}
		}
		return true
	})
	for _, v := range c.validators {
		if got := v.qcs.count(func(d Delivery[*qc.QC]) bool { return !d.Local && d.Value.TxHash == h }); got > 1 {
			t.Errorf("%s delivered %d QCs of one transaction", v.name, got)
		}
		if s, ok := v.Score(c.validators[1].ID()); ok && s < 0 {
			t.Errorf("%s penalised the member that sent a duplicate QC: score %.1f", v.name, s)
		}
	}
}

// TestForgedQCPenalised: forged QCs (below quorum, bad signature) published
// by a light client on its shard are rejected by every validator and the
// publisher's score drops below zero there.
func TestForgedQCPenalised(t *testing.T) {
	c := newCluster(t, clusterOpts{validators: 4, lights: 1, lightShards: []int{3}})
	ctx := testCtx(t, 30*time.Second)
	light := c.lights[0]

	h1, h2 := mustTxHash(t, testRequest(11)), mustTxHash(t, testRequest(12))
	eff1, eff2 := testEffects(11, 0x03), testEffects(12, 0x33)
	forged := []*qc.QC{belowQuorumQC(c.f, h1, eff1), badSignatureQC(t, c.f, h2, eff2)}
	for _, q := range forged {
		if err := c.f.committee.VerifyQC(q); err == nil {
			t.Fatal("forgery verifies")
		}
		// Local publishes are trusted, so the forgery leaves the node.
		if err := light.PublishQC(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 20*time.Second, "validators to reject both forgeries and score the sender below zero", func() bool {
		for _, v := range c.validators {
			if metricValue(t, v.reg, "allegro_p2p_validations_total", map[string]string{"topic": "qc", "verdict": "reject", "stage": stageVerify}) < 2 {
				return false
			}
			if s, ok := v.Score(light.ID()); !ok || s >= 0 {
				return false
			}
		}
		return true
	})
	for _, v := range c.validators {
		if v.qcs.count(nil) != 0 {
			t.Errorf("%s delivered a forged QC", v.name)
		}
		if got := metricValue(t, v.reg, "allegro_p2p_rejected_total", map[string]string{"topic": "qc", "reason": pubsub.RejectValidationFailed}); got < 2 {
			t.Errorf("%s: tracer counted %v rejections", v.name, got)
		}
		s, _ := v.Score(light.ID())
		t.Logf("%s scores the light client %.1f", v.name, s)
	}
}

// TestValidatorPanicCounted: a panicking stateful validator is recovered,
// counted as Reject and the message is not delivered.
func TestValidatorPanicCounted(t *testing.T) {
	c := newCluster(t, clusterOpts{validators: 4})
	ctx := testCtx(t, 30*time.Second)
	for _, v := range c.validators[1:] {
		v.RegisterTxValidator(func(context.Context, peer.ID, *TxMessage) (Verdict, error) {
			panic("stateful validator bug")
		})
	}
	req := testRequest(21)
	if err := c.validators[0].PublishTx(ctx, req); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "panics to be counted", func() bool {
		for _, v := range c.validators[1:] {
			if metricValue(t, v.reg, "allegro_p2p_validator_panics_total", map[string]string{"topic": "tx"}) < 1 ||
				metricValue(t, v.reg, "allegro_p2p_validations_total", map[string]string{"topic": "tx", "verdict": "reject", "stage": stagePanic}) < 1 {
				return false
			}
		}
		return true
	})
	for _, v := range c.validators[1:] {
		if v.txs.count(nil) != 0 {
			t.Errorf("%s delivered a message its validator panicked on", v.name)
		}
	}
}

// TestBootstrapReconnect: a dropped bootstrap peer is redialed.
func TestBootstrapReconnect(t *testing.T) {
	c := newCluster(t, clusterOpts{validators: 2})
	v0, v1 := c.validators[0], c.validators[1]
	for round := range 3 {
		if err := v0.Host().LibP2P().Network().ClosePeer(v1.ID()); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 15*time.Second, "reconnection", func() bool {
			return v0.Host().Connected(v1.ID()) && v1.Host().Connected(v0.ID())
		})
		t.Logf("round %d reconnected", round)
	}
	if got := metricValue(t, v0.reg, "allegro_p2p_bootstrap_dials_total", map[string]string{"result": "ok"}) +
		metricValue(t, v1.reg, "allegro_p2p_bootstrap_dials_total", map[string]string{"result": "ok"}); got < 3 {
		t.Errorf("only %v successful redials", got)
	}
}

// TestMeshLifecycle: publishing needs Start; Stop is idempotent and final.
func TestMeshLifecycle(t *testing.T) {
	f := newFixture(t, 4)
	n := newNode(t, LocalConfig(), "val-0", f.keys[0], f.committee)
	ctx := testCtx(t, 10*time.Second)

	// Constructor errors: a registry already holding a mesh's metrics, a bad
	// config (named), a non-ed25519 key. A failed New leaves the registry
	// as it was.
	if _, err := New(LocalConfig(), libp2pKey(t, f.keys[1]), f.committee, nil, n.reg, nil); err == nil {
		t.Error("second mesh on one registry accepted")
	}
	bad := LocalConfig()
	bad.QCShards = 0
	if _, err := New(bad, libp2pKey(t, f.keys[1]), f.committee, nil, nil, nil); err == nil || !strings.Contains(err.Error(), "qc_shards") {
		t.Errorf("bad config: %v", err)
	}
	secp, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if _, err := New(LocalConfig(), secp, f.committee, nil, reg, nil); err == nil {
		t.Error("secp256k1 identity accepted")
	}
	if fams, _ := reg.Gather(); len(fams) != 0 {
		t.Errorf("failed New left %d metric families registered", len(fams))
	}
	if err := n.PublishTx(ctx, testRequest(1)); !errors.Is(err, ErrNotStarted) {
		t.Errorf("publish before start = %v", err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx); err == nil {
		t.Error("second Start succeeded")
	}
	if got := len(n.JoinedTopics()); got != 2+n.cfg.QCShards {
		t.Errorf("validator joined %d topics", got)
	}
	if err := n.JoinQCShards([]int{n.cfg.QCShards}); err == nil {
		t.Error("out-of-range shard accepted")
	}
	// Oversized payloads are refused before anything is sent.
	big := testRequest(2)
	big.Tx.TempoTx.Data = make([]byte, MaxTxMessageSize)
	if err := n.PublishTx(ctx, big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized publish = %v", err)
	}
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(ctx); err != nil {
		t.Errorf("second Stop = %v", err)
	}
	if err := n.PublishQC(ctx, &qc.QC{Certs: []qc.Certificate{{}}}); !errors.Is(err, ErrStopped) {
		t.Errorf("publish after stop = %v", err)
	}
	if err := n.Start(ctx); !errors.Is(err, ErrStopped) {
		t.Errorf("start after stop = %v", err)
	}
}
