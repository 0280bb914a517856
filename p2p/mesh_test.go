package p2p

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
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
// validator reach all four, each object once; a light client on the QC's
// shard gets the QC and nothing from the validators-only topics.
func TestMeshDelivery(t *testing.T) {
	c := newCluster(t, clusterOpts{validators: 4, lights: 1, lightShards: []int{3}})
	ctx := testCtx(t, 30*time.Second)
	v0, light := c.validators[0], c.lights[0]
	txTopic := TxTopic(testDomain.ChainID, testDomain.Epoch)
	tap := tapTopic(t, c.validators[1], txTopic)

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

	tx, ct, qk := txKey(h), certKey(&cert), qcKey(h)
	testkit.Eventually(t, 20*time.Second, "delivery to all validators and the light client", func() bool {
		for _, v := range c.validators {
			if !v.txs.has(tx) || !v.bull.has(ct) || !v.bull.has(qk) || !v.qcs.has(qk) {
				return false
			}
		}
		return light.qcs.has(qk)
	})

	publisher := c.f.signers[0].ID()
	txFrameIDs := map[string]bool{}
	for _, v := range c.validators {
		local := v == v0
		v.txs.count(func(d Delivery[*TxMessage]) bool {
			txFrameIDs[d.ID] = true
			if d.Value.TxHash != h || d.Local != local || (!local && d.From == v.ID()) || d.Publisher != publisher || d.ID == "" {
				t.Errorf("%s: tx delivery %+v", v.name, d)
			}
			return true
		})
		v.bull.count(func(d Delivery[*BulletinItem]) bool {
			switch {
			case d.Value.Cert != nil && d.Value.Cert.Signer != cert.Signer,
				d.Value.QC != nil && d.Value.QC.Hash != q.Hash,
				d.Publisher != publisher:
				t.Errorf("%s: bulletin delivery %+v", v.name, d.Value)
			}
			return true
		})
		if st := v.Stats(); st.Tx.Delivered != 1 || st.Bulletin.Delivered != 2 || st.QC.Delivered != 1 {
			t.Errorf("%s: stats %+v", v.name, st)
		}
		if !local {
			if st := v.Stats().Tx; st.Accepted != 1 || st.ObjectsReceived != 1 || st.ObjectsNew != 1 {
				t.Errorf("%s: tx stats %+v", v.name, st)
			}
		}
	}
	// One frame carried the tx: every validator names it by the same id,
	// the id of the frame's bytes.
	testkit.Eventually(t, 10*time.Second, "the tap to see the tx frame", func() bool { return len(tap.snapshot()) == 1 })
	wantID := c.validators[1].MessageID(txTopic, tap.snapshot()[0])
	if len(txFrameIDs) != 1 || !txFrameIDs[wantID] || wantID != frameID(txTopic, tap.snapshot()[0]) {
		t.Errorf("the tx was delivered with frame ids %x, want only %x", slices.Collect(maps.Keys(txFrameIDs)), wantID)
	}
	// A frame's counters move when its publish returns, which can be after
	// a peer delivered it.
	testkit.Eventually(t, 10*time.Second, "the publisher's counters", func() bool {
		st := v0.Stats()
		return st.Tx.ObjectsPublished == 1 && st.Bulletin.ObjectsPublished == 2 && st.QC.ObjectsPublished == 1
	})
	if got := light.qcs.count(nil); got != 1 {
		t.Errorf("light client got %d QCs", got)
	}
	if light.txs.count(nil) != 0 || light.bull.count(nil) != 0 {
		t.Error("light client received validators-only objects")
	}
	if got := light.JoinedTopics(); !slices.Equal(got, []string{QCTopic(testDomain.ChainID, testDomain.Epoch, 3)}) {
		t.Errorf("light client joined %v", got)
	}
	// A light client publishes nothing: every frame names its publisher,
	// and only members publish frames.
	pair := c.f.equivocation(t, 3, 9, 0x23)
	for name, err := range map[string]error{
		"PublishTx":           light.PublishTx(ctx, req),
		"PublishCertificate":  light.PublishCertificate(ctx, cert),
		"PublishQC":           light.PublishQC(ctx, q),
		"PublishEquivocation": light.PublishEquivocation(ctx, &pair),
		"PublishRawFrame tx":  light.PublishRawFrame(ctx, TxTopic(testDomain.ChainID, testDomain.Epoch), encTx(t, c.f.hdr(0, 1), req)),
	} {
		if !errors.Is(err, ErrNotCommitteeMember) {
			t.Errorf("light %s = %v", name, err)
		}
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

// TestEquivocationDelivered: an equivocation pair of validator 3 published
// by validator 0 reaches every validator, the equivocator included, as two
// certificates.
func TestEquivocationDelivered(t *testing.T) {
	c := newCluster(t, clusterOpts{validators: 4})
	ctx := testCtx(t, 30*time.Second)
	pair := c.f.equivocation(t, 3, 31, 0x40)
	if err := c.validators[0].PublishEquivocation(ctx, &pair); err != nil {
		t.Fatal(err)
	}
	keys := []string{certKey(&pair.First), certKey(&pair.Second)}
	testkit.Eventually(t, 20*time.Second, "both certificates at every validator", func() bool {
		for _, v := range c.validators {
			if !v.bull.hasAll(keys) {
				return false
			}
		}
		return true
	})
	for _, v := range c.validators {
		if got := v.bull.count(nil); got != 2 {
			t.Errorf("%s: %d bulletin deliveries, want the pair's 2", v.name, got)
		}
		if got := v.Stats().Bulletin.Delivered; got != 2 {
			t.Errorf("%s: Bulletin.Delivered = %d", v.name, got)
		}
	}
	bad := pair
	bad.Second = bad.First
	if err := c.validators[0].PublishEquivocation(ctx, &bad); !errors.Is(err, qc.ErrNotEquivocation) {
		t.Errorf("publishing a pair that proves nothing = %v", err)
	}
}

// TestOutsiderExcluded: a peer outside the committee running plain
// gossipsub (no filters) subscribes to every topic. It receives QC-shard
// frames but never a tx or bulletin frame, and what it publishes on the
// validators-only topics is dropped by every validator before pubsub
// records its id, so the same bytes from a member are still delivered.
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
	// peer sets, so flood publishing never sends it a private frame.
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
		t.Fatalf("outsider got no QC frame: %v", err)
	}
	if f, err := decodeQCFrame(got.GetData()); err != nil || len(f.qcs) != 1 || f.qcs[0].Hash != q.Hash {
		t.Errorf("outsider got %+v (%v) on the QC shard, want a frame of the published QC", f, err)
	}
	testkit.Eventually(t, 20*time.Second, "validators to receive tx and cert", func() bool {
		for _, v := range c.validators {
			if !v.txs.has(txKey(txHash)) || !v.bull.has(certKey(&cert)) {
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

	// Raw frames on the validators-only topics, named as published by
	// members: every validator drops them before pubsub records their ids
	// (the RPC inspector), so they are neither validated nor delivered and
	// cannot shadow a genuine copy.
	spam := testRequest(77)
	spamFrame := encTx(t, c.f.hdr(2, 1), spam)
	spamCert := c.f.cert(1, mustTxHash(t, spam), testEffects(77, 0x13))
	if err := topics[txTopic].Publish(ctx, spamFrame); err != nil {
		t.Fatal(err)
	}
	if err := topics[bullTopic].Publish(ctx, encBulletin(t, c.f.hdr(1, 1), []qc.Certificate{spamCert}, nil, nil)); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "validators to drop the outsider's frames", func() bool {
		for _, v := range c.validators {
			for _, k := range []string{"tx", "bulletin"} {
				if metricValue(t, v.reg, "allegro_p2p_outsider_messages_dropped_total", map[string]string{"topic": k}) < 1 {
					return false
				}
			}
		}
		return true
	})
	// The same bytes from the member they name are new to every validator:
	// the outsider's copy left no trace in pubsub's seen cache.
	if err := c.validators[2].PublishRawFrame(ctx, txTopic, spamFrame); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "the member's copy of the outsider's frame delivered", func() bool {
		for i, v := range c.validators {
			if i != 2 && !v.txs.has(txKey(mustTxHash(t, spam))) {
				return false
			}
		}
		return true
	})
	for _, v := range c.validators {
		if v.bull.has(certKey(&spamCert)) {
			t.Errorf("%s delivered the outsider's certificate", v.name)
		}
		if got := metricValue(t, v.reg, "allegro_p2p_validations_total", map[string]string{"topic": "tx", "verdict": "reject", "stage": stageMembership}); got != 0 {
			t.Errorf("%s validated %v outsider frames; they must be dropped before validation", v.name, got)
		}
	}
}

// TestForgedQCCannotShadow: a peer on an open QC shard sends a frame with a
// forged QC for a transaction before the genuine QC exists. The genuine QC
// still reaches every validator and light client; a second valid QC of the
// same transaction (another signer subset) is left out of the frames of a
// validator that already accepted the first, and, sent anyway, is ignored
// as a duplicate object without penalty.
func TestForgedQCCannotShadow(t *testing.T) {
	c := newCluster(t, clusterOpts{validators: 4, lights: 2, lightShards: []int{3}})
	ctx := testCtx(t, 30*time.Second)
	attacker, watcher := c.lights[0], c.lights[1]
	shard := QCTopic(testDomain.ChainID, testDomain.Epoch, 3)
	bull := BulletinTopic(testDomain.ChainID, testDomain.Epoch)

	h := mustTxHash(t, testRequest(21))
	eff := testEffects(21, 0x03)
	if err := attacker.PublishRawFrame(ctx, shard, encQC(t, c.f.hdr(0, 1), badSignatureQC(t, c.f, h, eff))); err != nil {
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
	k := qcKey(h)
	testkit.Eventually(t, 20*time.Second, "the genuine QC at every validator and the watcher", func() bool {
		for _, v := range c.validators {
			if !v.qcs.has(k) || !v.bull.has(k) {
				return false
			}
		}
		return watcher.qcs.has(k)
	})

	// Validator 1 accepted the genuine QC (acceptance is recorded before
	// delivery), so its publisher loops leave another QC of the transaction
	// out of the frames they build: the frame would carry nothing new.
	v1 := c.validators[1]
	other := c.f.qcFrom(t, h, eff, 1, 2, 3)
	if err := v1.PublishQC(ctx, other); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "the second QC skipped by validator 1's publisher loops", func() bool {
		for _, topic := range []string{"bulletin", "qc"} {
			if metricValue(t, v1.reg, "allegro_p2p_frame_objects_total", map[string]string{"topic": topic, "kind": "skipped"}) != 1 {
				return false
			}
		}
		return true
	})
	if st := v1.Stats(); st.Bulletin.Published != 0 || st.QC.Published != 0 {
		t.Errorf("validator 1 published frames for a QC already accepted: %+v", st)
	}
	// Sent anyway, the frames add nothing: ignored unverified, unpenalised.
	for i, topic := range []string{bull, shard} {
		data := encQC(t, c.f.hdr(1, uint64(i+1)), other)
		if topic == bull {
			data = encBulletin(t, c.f.hdr(1, uint64(i+1)), nil, []*qc.QC{other}, nil)
		}
		if err := v1.PublishRawFrame(ctx, topic, data); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 20*time.Second, "the second QC of the transaction ignored as a duplicate", func() bool {
		for _, v := range slices.Concat(c.validators[2:], c.validators[:1]) {
			for _, topic := range []string{"qc", "bulletin"} {
				if metricValue(t, v.reg, "allegro_p2p_validations_total", map[string]string{"topic": topic, "verdict": "ignore", "stage": stageDuplicate}) < 1 {
					return false
				}
			}
		}
		return true
	})
	for _, n := range slices.Concat(c.validators, []*node{watcher}) {
		if got := n.qcs.times(k); got != 1 {
			t.Errorf("%s delivered %d QCs of one transaction on the shard", n.name, got)
		}
		if s, ok := n.Score(v1.ID()); ok && s < 0 {
			t.Errorf("%s penalised the member that sent a duplicate QC: score %.1f", n.name, s)
		}
	}
	for _, v := range c.validators {
		if got := v.bull.times(k); got != 1 {
			t.Errorf("%s delivered %d QCs of one transaction on the bulletin", v.name, got)
		}
	}
}

// clusterWithKnownQC starts four validators and a light client on shard 3
// configured by tweak, and has validator 0 publish a QC of payment seq that
// every one of them then holds. It returns the QC and its shard's topic.
func clusterWithKnownQC(t *testing.T, seq uint64, tweak func(*Config)) (*cluster, context.Context, string, *qc.QC) {
	t.Helper()
	c := newCluster(t, clusterOpts{validators: 4, lights: 1, lightShards: []int{3}, tweak: tweak})
	ctx := testCtx(t, 60*time.Second)
	shard := QCTopic(testDomain.ChainID, testDomain.Epoch, 3)
	q := c.f.qcFrom(t, mustTxHash(t, testRequest(seq)), testEffects(seq, 0x03), 0, 1, 2)
	if err := c.validators[0].PublishQC(ctx, q); err != nil {
		t.Fatal(err)
	}
	k := qcKey(q.TxHash)
	testkit.Eventually(t, 20*time.Second, "the QC at every validator and the light client", func() bool {
		for _, n := range c.all() {
			if !n.qcs.has(k) {
				return false
			}
		}
		return true
	})
	return c, ctx, shard, q
}

// TestOutsiderDuplicateFramesBudgeted: a light client re-wraps a QC every
// validator holds into frames with new ids (the header is not signed, so
// anyone can). The first frames, within its budget, are ignored like an
// honest relay's duplicates, without penalty and unverified; past the
// budget they are rejected, and the client's score at the validators falls
// below zero. The QC is delivered once. A member sending the same frames
// is not counted against any budget.
func TestOutsiderDuplicateFramesBudgeted(t *testing.T) {
	const burst = 3
	c, ctx, shard, q := clusterWithKnownQC(t, 31, func(cfg *Config) {
		cfg.OutsiderDuplicateFrames, cfg.OutsiderDuplicateBurst = 0.001, burst
	})
	attacker, k := c.lights[0], qcKey(q.TxHash)
	receivers := c.validators[1:]
	stage := func(verdict, stage string) map[string]string {
		return map[string]string{"topic": "qc", "verdict": verdict, "stage": stage}
	}
	count := func(v *node, verdict, st string) float64 {
		return metricValue(t, v.reg, "allegro_p2p_validations_total", stage(verdict, st))
	}
	ignored0, flood0 := map[*node]float64{}, map[*node]float64{}
	for _, v := range receivers {
		ignored0[v], flood0[v] = count(v, "ignore", stageDuplicate), count(v, "reject", stageFlood)
	}
	seq := uint64(100)
	send := func(from *node, frames int) {
		t.Helper()
		for range frames {
			seq++
			if err := from.PublishRawFrame(ctx, shard, encQC(t, c.f.hdr(0, seq), q)); err != nil {
				t.Fatal(err)
			}
		}
	}

	// A member's duplicates cost it nothing, however many.
	send(c.validators[0], 2*burst)
	testkit.Eventually(t, 20*time.Second, "a member's duplicate frames ignored", func() bool {
		for _, v := range receivers {
			if count(v, "ignore", stageDuplicate)-ignored0[v] < 2*burst {
				return false
			}
		}
		return true
	})
	for _, v := range receivers {
		if got := count(v, "reject", stageFlood) - flood0[v]; got != 0 {
			t.Errorf("%s rejected %v of a member's duplicate frames", v.name, got)
		}
		ignored0[v] = count(v, "ignore", stageDuplicate)
	}

	// Within its budget, the outsider's duplicates are ignored unpenalised.
	send(attacker, burst)
	testkit.Eventually(t, 20*time.Second, "the light client's first duplicates ignored", func() bool {
		for _, v := range receivers {
			if count(v, "ignore", stageDuplicate)-ignored0[v] < burst {
				return false
			}
		}
		return true
	})
	for _, v := range receivers {
		if s, ok := v.Score(attacker.ID()); ok && s < 0 {
			t.Errorf("%s penalised the light client within its budget: score %.1f", v.name, s)
		}
	}

	// Past it, they are rejected and the score falls below zero.
	extra := framesBelowZero(c.validators[0].cfg.Scoring, false)
	send(attacker, extra)
	waitFor(t, 30*time.Second, "the light client's further duplicates rejected and its score below zero", func() string {
		for _, v := range receivers {
			got := count(v, "reject", stageFlood) - flood0[v]
			s, ok := v.Score(attacker.ID())
			if got < float64(extra) || !ok || s >= 0 {
				return fmt.Sprintf("%s: %v of %d frames rejected, score %.1f (known %v)", v.name, got, extra, s, ok)
			}
		}
		return ""
	})
	for _, n := range slices.Concat(c.validators, []*node{attacker}) {
		if got := n.qcs.times(k); got != 1 {
			t.Errorf("%s delivered the QC %d times", n.name, got)
		}
	}
}

// TestMemberDuplicateFramesBudgetedAtLightClients: a member re-wraps a QC
// into frames with new ids. The validators ignore every one (members are
// not budgeted there); the light client ignores them up to its budget for
// members, then rejects them and scores the member below zero.
func TestMemberDuplicateFramesBudgetedAtLightClients(t *testing.T) {
	const burst = 3
	c, ctx, shard, q := clusterWithKnownQC(t, 32, func(cfg *Config) {
		cfg.MemberDuplicateFrames, cfg.MemberDuplicateBurst = 0.001, burst
	})
	sender, light := c.validators[0], c.lights[0]
	count := func(n *node, verdict, st string) float64 {
		return metricValue(t, n.reg, "allegro_p2p_validations_total", map[string]string{"topic": "qc", "verdict": verdict, "stage": st})
	}
	receivers := slices.Concat(c.validators[1:], []*node{light})
	ignored0 := map[*node]float64{}
	for _, n := range receivers {
		ignored0[n] = count(n, "ignore", stageDuplicate)
	}
	frames := burst + framesBelowZero(light.cfg.Scoring, true)
	for i := range frames {
		if err := sender.PublishRawFrame(ctx, shard, encQC(t, c.f.hdr(0, uint64(200+i)), q)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "the validators to ignore every frame and the light client to reject those past its budget", func() string {
		for _, v := range c.validators[1:] {
			if got := count(v, "ignore", stageDuplicate) - ignored0[v]; got < float64(frames) {
				return fmt.Sprintf("%s ignored %v of %d", v.name, got, frames)
			}
		}
		ignored, rejected := count(light, "ignore", stageDuplicate)-ignored0[light], count(light, "reject", stageFlood)
		if s, ok := light.Score(sender.ID()); ignored != burst || rejected != float64(frames-burst) || !ok || s >= 0 {
			return fmt.Sprintf("light client: %v ignored, %v rejected, the member's score %.1f (known %v)", ignored, rejected, s, ok)
		}
		return ""
	})
	for _, v := range c.validators[1:] {
		if got := count(v, "reject", stageFlood); got != 0 {
			t.Errorf("%s rejected %v of a member's frames as a flood", v.name, got)
		}
		if s, ok := v.Score(sender.ID()); ok && s < 0 {
			t.Errorf("%s penalised a member for duplicates: score %.1f", v.name, s)
		}
	}
}

// framesBelowZero is how many invalid frames on one topic take a peer's
// score below zero under s: the penalty is the weight times the count
// squared, against the committee bonus (for a member) plus at most
// topicScoreCap of positive terms.
func framesBelowZero(s ScoreConfig, member bool) int {
	bonus := 0.0
	if member {
		bonus = s.CommitteeBonus
	}
	n := 1
	for float64(n*n)*-s.InvalidMessageWeight <= bonus+topicScoreCap {
		n++
	}
	return n
}

// TestForgedFramesPenalised: frames no honest member would send — garbage,
// oversized, one bad signature among valid objects, a publisher outside the
// committee, forged QCs — sent by a member (validators-only topics) or a
// light client (its QC shard) are rejected by every peer, the forwarding
// peer's score goes below zero there, and nothing they carried is
// delivered. Each sender sends enough frames to cross zero
// (framesBelowZero). Every case runs on a cluster of its own: a sender
// penalised in one case is no longer published to by its peers, so it could
// not be a receiver in the next.
func TestForgedFramesPenalised(t *testing.T) {
	for i, name := range []string{"garbage", "oversized", "one bad signature among valid certificates",
		"publisher not a member", "light client: forged QCs", "light client: publisher not a member"} {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t, clusterOpts{validators: 4, lights: 1, lightShards: []int{3}})
			ctx := testCtx(t, 60*time.Second)
			tc := forgedFrameCases(c, ctx)[i]
			if tc.name != name {
				t.Fatalf("case %d is %q", i, tc.name)
			}
			checkForgedFrame(t, c, ctx, tc)
		})
	}
}

// forgedFrame is one kind of frame no honest member sends.
type forgedFrame struct {
	name   string
	sender *node
	topic  string
	kind   TopicKind
	stage  string
	// frame returns the i-th frame (distinct bytes each) and the keys of
	// the objects in it that must never be delivered.
	frame func(t *testing.T, i int) ([]byte, []string)
	// after runs once the frames were rejected everywhere.
	after func(t *testing.T, objects []string)
}

// forgedFrameCases builds the forgeries against cluster c.
func forgedFrameCases(c *cluster, ctx context.Context) []forgedFrame {
	txTopic, bullTopic := TxTopic(testDomain.ChainID, testDomain.Epoch), BulletinTopic(testDomain.ChainID, testDomain.Epoch)
	shard := QCTopic(testDomain.ChainID, testDomain.Epoch, 3)
	f := c.f

	// certs3 are validator 3's own certificates, valid, for the frames of
	// the bad-signature case.
	certs3 := func(t *testing.T, i int) []qc.Certificate {
		var out []qc.Certificate
		for j := range 3 {
			seq := uint64(3000 + 10*i + j)
			out = append(out, f.cert(3, mustTxHash(t, testRequest(seq)), testEffects(seq, 0x40)))
		}
		return out
	}
	return []forgedFrame{
		{name: "garbage", sender: c.validators[1], topic: txTopic, kind: KindTx, stage: stageDecode,
			frame: func(_ *testing.T, i int) ([]byte, []string) { return []byte{0xff, 0xff, 0xff, byte(i)}, nil }},
		{name: "oversized", sender: c.validators[2], topic: bullTopic, kind: KindBulletin, stage: stageSize,
			frame: func(_ *testing.T, i int) ([]byte, []string) {
				data := make([]byte, MaxFrameSize+1)
				data[0] = byte(i)
				return data, nil
			}},
		{name: "one bad signature among valid certificates", sender: c.validators[3], topic: bullTopic, kind: KindBulletin, stage: stageVerify,
			frame: func(t *testing.T, i int) ([]byte, []string) {
				certs := certs3(t, i)
				seq := uint64(3500 + i)
				bad := f.qcFrom(t, mustTxHash(t, testRequest(seq)), testEffects(seq, 0x40), 0, 1, 2)
				corruptQC(bad)
				keys := []string{qcKey(bad.TxHash)}
				for j := range certs {
					keys = append(keys, certKey(&certs[j]))
				}
				return encBulletin(t, f.hdr(3, uint64(i+1)), certs, []*qc.QC{bad}, nil), keys
			},
			// The rejected frames suppressed nothing: published properly,
			// the same certificates are delivered.
			after: func(t *testing.T, _ []string) {
				certs := certs3(t, 0)
				for _, cert := range certs {
					if err := c.validators[3].PublishCertificate(ctx, cert); err != nil {
						t.Fatal(err)
					}
				}
				testkit.Eventually(t, 20*time.Second, "the valid certificates, published properly, delivered", func() bool {
					for _, v := range c.validators[:3] {
						for j := range certs {
							if !v.bull.has(certKey(&certs[j])) {
								return false
							}
						}
					}
					return true
				})
			}},
		{name: "publisher not a member", sender: c.validators[0], topic: txTopic, kind: KindTx, stage: stageMembership,
			frame: func(t *testing.T, i int) ([]byte, []string) {
				req := testRequest(uint64(4000 + i))
				return encTx(t, FrameHeader{Publisher: outsiderID(5), Seq: uint64(i + 1)}, req), []string{txKey(mustTxHash(t, req))}
			}},
		{name: "light client: forged QCs", sender: c.lights[0], topic: shard, kind: KindQC, stage: stageVerify,
			frame: func(t *testing.T, i int) ([]byte, []string) {
				seq := uint64(5000 + i)
				h, eff := mustTxHash(t, testRequest(seq)), testEffects(seq, 0x03)
				q := belowQuorumQC(f, h, eff)
				if i%2 == 1 {
					q = badSignatureQC(t, f, h, eff)
				}
				if err := f.committee.VerifyQC(q); err == nil {
					t.Fatal("forgery verifies")
				}
				return encQC(t, f.hdr(0, uint64(i+1)), q), []string{qcKey(h)}
			}},
		{name: "light client: publisher not a member", sender: c.lights[0], topic: shard, kind: KindQC, stage: stageMembership,
			frame: func(t *testing.T, i int) ([]byte, []string) {
				seq := uint64(6000 + i)
				q := f.qcFrom(t, mustTxHash(t, testRequest(seq)), testEffects(seq, 0x13), 1, 2, 3)
				return encQC(t, FrameHeader{Publisher: outsiderID(6), Seq: uint64(i + 1)}, q), []string{qcKey(q.TxHash)}
			}},
	}
}

// checkForgedFrame sends tc's frames and checks every receiver rejected
// them, penalised the sender and delivered nothing of them.
func checkForgedFrame(t *testing.T, c *cluster, ctx context.Context, tc forgedFrame) {
	var receivers []*node
	for _, v := range c.validators {
		if v != tc.sender {
			receivers = append(receivers, v)
		}
	}
	stage := map[string]string{"topic": tc.kind.String(), "verdict": "reject", "stage": tc.stage}
	traced := map[string]string{"reason": pubsub.RejectValidationFailed}
	before, scoreBefore, tracedBefore := make(map[*node]float64), make(map[*node]float64), make(map[*node]float64)
	for _, v := range receivers {
		before[v] = metricValue(t, v.reg, "allegro_p2p_validations_total", stage)
		tracedBefore[v] = metricValue(t, v.reg, "allegro_p2p_rejected_total", traced)
		scoreBefore[v], _ = v.Score(tc.sender.ID())
	}
	_, member := tc.sender.Host().IsCommitteeMember(tc.sender.ID())
	// At least two frames, so the forged QCs case sends both kinds.
	n := max(2, framesBelowZero(c.validators[0].cfg.Scoring, member))
	var objects []string
	for i := range n {
		data, keys := tc.frame(t, i)
		objects = append(objects, keys...)
		if err := tc.sender.PublishRawFrame(ctx, tc.topic, data); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "every receiver to reject the frames and score the sender lower, below zero", func() string {
		for _, v := range receivers {
			got := metricValue(t, v.reg, "allegro_p2p_validations_total", stage) - before[v]
			s, ok := v.Score(tc.sender.ID())
			if got < float64(n) || !ok || s >= min(0, scoreBefore[v]) {
				return fmt.Sprintf("%s: %v of %d frames rejected, score %.1f (known %v, %.1f before)", v.name, got, n, s, ok, scoreBefore[v])
			}
		}
		return ""
	})
	for _, v := range c.all() {
		for _, k := range objects {
			if v.txs.has(k) || v.bull.has(k) || v.qcs.has(k) {
				t.Errorf("%s delivered an object of a rejected frame", v.name)
			}
		}
	}
	// The score's breakdown names the penalty: invalid messages on the
	// topic, and the terms add up to the score.
	for _, v := range receivers {
		var peerInfo *PeerInfo
		for _, p := range v.Peers() {
			if p.ID == tc.sender.ID() {
				peerInfo = &p
			}
		}
		if peerInfo == nil || !peerInfo.HasScore {
			t.Fatalf("%s: no score for %s in Peers", v.name, tc.sender.name)
		}
		parts := peerInfo.ScoreParts
		if math.Abs(parts.Total()-peerInfo.Score) > 1e-6*max(1, math.Abs(peerInfo.Score)) {
			t.Errorf("%s: score %v, its parts add up to %v: %+v", v.name, peerInfo.Score, parts.Total(), parts)
		}
		var invalid float64
		for _, k := range parts.Topics {
			if k.Kind == tc.kind.String() {
				invalid = k.InvalidScore
			}
		}
		if invalid >= 0 {
			t.Errorf("%s: no invalid-message penalty on %s in %+v", v.name, tc.kind, parts.Topics)
		}
	}
	for _, v := range receivers {
		s, _ := v.Score(tc.sender.ID())
		t.Logf("%s scores %s %.1f", v.name, tc.sender.name, s)
		// The pubsub tracer saw the rejections too.
		if got := metricValue(t, v.reg, "allegro_p2p_rejected_total", traced) - tracedBefore[v]; got < float64(n) {
			t.Errorf("%s: tracer counted %v rejections of %d", v.name, got, n)
		}
	}
	if tc.after != nil {
		tc.after(t, objects)
	}
}

// TestValidatorPanicCounted: a panicking stateful validator is recovered,
// counted as Reject and the frame's objects are not delivered.
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
			t.Errorf("%s delivered a tx its validator panicked on", v.name)
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

// TestMeshLifecycle: publishing needs Start and is refused after Stop;
// Stop is idempotent and final; publishes that could only be refused by
// peers are refused locally.
func TestMeshLifecycle(t *testing.T) {
	f := newFixture(t, 4)
	n := newNode(t, LocalConfig(), "val-0", f.keys[0], f.committee)
	ctx := testCtx(t, 10*time.Second)
	txTopic := TxTopic(testDomain.ChainID, testDomain.Epoch)
	h := mustTxHash(t, testRequest(1))
	eff := testEffects(1, 0x23)
	own := f.cert(0, h, eff)
	q := f.qcFrom(t, h, eff, 0, 1, 2)
	pair := f.equivocation(t, 2, 3, 0x23)

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

	publishAll := func() map[string]error {
		return map[string]error{
			"PublishTx":           n.PublishTx(ctx, testRequest(1)),
			"PublishCertificate":  n.PublishCertificate(ctx, own),
			"PublishQC":           n.PublishQC(ctx, q),
			"PublishEquivocation": n.PublishEquivocation(ctx, &pair),
			"PublishRawFrame":     n.PublishRawFrame(ctx, txTopic, encTx(t, f.hdr(0, 1), testRequest(1))),
		}
	}
	for name, err := range publishAll() {
		if !errors.Is(err, ErrNotStarted) {
			t.Errorf("%s before Start = %v", name, err)
		}
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
	for name, err := range publishAll() {
		if err != nil {
			t.Errorf("%s after Start = %v", name, err)
		}
	}
	// Refused before anything is queued: an oversized transaction, another
	// signer's certificate (a frame carries its publisher's own), evidence
	// that proves nothing, a QC without certificates, an unknown topic.
	big := testRequest(2)
	big.Tx.TempoTx.Data = make([]byte, MaxTxSize)
	if err := n.PublishTx(ctx, big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized publish = %v", err)
	}
	if err := n.PublishCertificate(ctx, f.cert(1, h, eff)); err == nil {
		t.Error("another signer's certificate accepted for publishing")
	}
	if err := n.PublishEquivocation(ctx, nil); err == nil {
		t.Error("nil evidence accepted")
	}
	noPair := pair
	noPair.Second = noPair.First
	if err := n.PublishEquivocation(ctx, &noPair); !errors.Is(err, qc.ErrNotEquivocation) {
		t.Errorf("evidence of nothing = %v", err)
	}
	if err := n.PublishQC(ctx, &qc.QC{}); err == nil {
		t.Error("QC without certificates accepted")
	}
	if err := n.PublishRawFrame(ctx, "/allegro/1/2/tx/2", []byte{1}); err == nil {
		t.Error("raw frame on an unknown topic accepted")
	}

	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(ctx); err != nil {
		t.Errorf("second Stop = %v", err)
	}
	for name, err := range publishAll() {
		if !errors.Is(err, ErrStopped) {
			t.Errorf("%s after Stop = %v", name, err)
		}
	}
	if err := n.Start(ctx); !errors.Is(err, ErrStopped) {
		t.Errorf("start after stop = %v", err)
	}
}

// TestDialGroupStandIn: of a dial group wanting one peer, the first is
// down; after it has failed its dials the next one is dialled in its place,
// and the one after that is not.
func TestDialGroupStandIn(t *testing.T) {
	f := newFixture(t, 4)
	cfg := LocalConfig()
	cfg.ReconnectBackoffMin, cfg.ReconnectBackoffMax = 20*time.Millisecond, 100*time.Millisecond
	hosts := make([]*Host, 3)
	for i := range hosts {
		h, err := NewHost(cfg, libp2pKey(t, f.keys[i]), f.committee, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		if err := h.Start(testCtx(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
		hosts[i] = h
	}
	// Member 3 never runs: its address is a closed port.
	deadID, err := peer.IDFromPrivateKey(libp2pKey(t, f.keys[3]))
	if err != nil {
		t.Fatal(err)
	}
	dead := peer.AddrInfo{ID: deadID, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/1")}}
	a, standIn, spare := hosts[0], hosts[1], hosts[2]
	a.AddDialGroups(DialGroup{Want: 1, Peers: []peer.AddrInfo{dead, standIn.AddrInfo(), spare.AddrInfo()}})
	if got := a.ExpectedPeers(); got != 1 {
		t.Fatalf("ExpectedPeers = %d, want the group's 1", got)
	}
	testkit.Eventually(t, 15*time.Second, "the stand-in connected", func() bool { return a.Connected(standIn.ID()) })
	if a.Connected(spare.ID()) {
		t.Fatal("the group's third peer was dialled although the stand-in is up")
	}
	if got := a.ExpectedPeers(); got != 1 {
		t.Fatalf("ExpectedPeers = %d after the stand-in, want still 1", got)
	}
}
