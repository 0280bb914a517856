package p2p

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// testDomain is the chain and epoch of every test committee.
var testDomain = qc.Domain{ChainID: 1337, Epoch: 7}

// testLogger discards logs unless P2P_TEST_LOG is set (then debug to
// stderr). Logging into t.Log is avoided: libp2p goroutines may log after
// a test returns.
func testLogger() *slog.Logger {
	if os.Getenv("P2P_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// fixture is a committee of n validators with deterministic keys.
type fixture struct {
	committee *qc.Committee
	keys      []ed25519.PrivateKey
	signers   []*qc.Signer
}

func seededKey(tag byte, i int) ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	seed[0], seed[1] = tag, byte(i)
	return ed25519.NewKeyFromSeed(seed)
}

func newFixture(t testing.TB, n int) *fixture {
	t.Helper()
	f := &fixture{}
	members := make([]qc.Member, n)
	for i := range n {
		k := seededKey(0xA1, i)
		name := fmt.Sprintf("val-%d", i)
		f.keys = append(f.keys, k)
		f.signers = append(f.signers, qc.NewSigner(k, name, testDomain))
		members[i] = qc.Member{Name: name, ID: f.signers[i].ID()}
	}
	c, err := qc.NewCommittee(testDomain, members)
	if err != nil {
		t.Fatal(err)
	}
	f.committee = c
	return f
}

func libp2pKey(t testing.TB, k ed25519.PrivateKey) crypto.PrivKey {
	t.Helper()
	pk, err := crypto.UnmarshalEd25519PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

// testRequest returns a well-formed request, distinct per seq.
func testRequest(seq uint64) *fastpayv1.SubmitFastPayRequest {
	return &fastpayv1.SubmitFastPayRequest{Tx: &fastpayv1.FastPayTx{
		ChainId: &fastpayv1.ChainId{Value: testDomain.ChainID},
		TempoTx: &fastpayv1.TempoTxBytes{Data: []byte{0x02, 0xf8, 0x6b, byte(seq >> 8), byte(seq)}},
		Nonce:   &fastpayv1.Nonce2D{NonceKeyBe: make([]byte, 32), NonceSeq: seq},
		Expiry:  &fastpayv1.Expiry{Kind: &fastpayv1.Expiry_MaxBlockHeight{MaxBlockHeight: 1_000_000}},
	}}
}

func mustTxHash(t testing.TB, req *fastpayv1.SubmitFastPayRequest) qc.Hash {
	t.Helper()
	h, err := TxHash(req)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// testEffects returns effects paying a recipient whose first byte is r0
// (which picks the QC shard).
func testEffects(seq uint64, r0 byte) qc.Effects {
	e := qc.Effects{Amount: 1_000_000 + seq, NonceSeq: seq}
	e.Sender[0], e.Sender[19] = 0x5e, 0x01
	e.Recipient[0], e.Recipient[19] = r0, 0x02
	e.Asset[0], e.Asset[1], e.Asset[19] = 0x20, 0xc0, 0x01
	return e
}

func (f *fixture) cert(i int, txHash qc.Hash, eff qc.Effects) qc.Certificate {
	return f.signers[i].Sign(txHash, eff, 1_760_000_000_000+uint64(i))
}

// qcFrom assembles a QC from the certificates of the given signers.
func (f *fixture) qcFrom(t testing.TB, txHash qc.Hash, eff qc.Effects, signers ...int) *qc.QC {
	t.Helper()
	a := qc.NewAssembler(f.committee, txHash, eff.Hash())
	for _, i := range signers {
		if _, err := a.Add(f.cert(i, txHash, eff)); err != nil {
			t.Fatal(err)
		}
	}
	q, err := a.Build()
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// recorder collects deliveries of one kind.
type recorder[T any] struct {
	mu    sync.Mutex
	items []Delivery[T]
	ids   map[string]int
}

func (r *recorder[T]) add(_ context.Context, d Delivery[T]) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids == nil {
		r.ids = make(map[string]int)
	}
	r.items = append(r.items, d)
	r.ids[d.ID]++
}

func (r *recorder[T]) count(pred func(Delivery[T]) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, d := range r.items {
		if pred == nil || pred(d) {
			n++
		}
	}
	return n
}

func (r *recorder[T]) has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ids[id] > 0
}

func (r *recorder[T]) uniqueRemote() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := make(map[string]bool)
	for _, d := range r.items {
		if !d.Local {
			seen[d.ID] = true
		}
	}
	return len(seen)
}

// node is one mesh of a test cluster with its registry and recorders.
type node struct {
	*Mesh
	name string
	reg  *prometheus.Registry
	txs  recorder[*TxMessage]
	bull recorder[*BulletinItem]
	qcs  recorder[*qc.QC]
}

func newNode(t testing.TB, cfg Config, name string, key ed25519.PrivateKey, c *qc.Committee) *node {
	t.Helper()
	n := &node{name: name, reg: prometheus.NewRegistry()}
	m, err := New(cfg, libp2pKey(t, key), c, nil, n.reg, testLogger().With("node", name))
	if err != nil {
		t.Fatal(err)
	}
	n.Mesh = m
	m.OnTx(n.txs.add)
	m.OnBulletin(n.bull.add)
	m.OnQC(n.qcs.add)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Stop(ctx); err != nil {
			t.Errorf("stop %s: %v", name, err)
		}
	})
	return n
}

// cluster is n validators (full bootstrap lists) plus light clients that
// bootstrap to every validator and join lightShards.
type cluster struct {
	f          *fixture
	validators []*node
	lights     []*node
}

type clusterOpts struct {
	validators  int
	lights      int
	lightShards []int
	tweak       func(*Config)
}

func newCluster(t testing.TB, o clusterOpts) *cluster {
	t.Helper()
	cfg := LocalConfig()
	if o.tweak != nil {
		o.tweak(&cfg)
	}
	c := &cluster{f: newFixture(t, o.validators)}
	for i := range o.validators {
		c.validators = append(c.validators, newNode(t, cfg, fmt.Sprintf("val-%d", i), c.f.keys[i], c.f.committee))
	}
	for i := range o.lights {
		c.lights = append(c.lights, newNode(t, cfg, fmt.Sprintf("light-%d", i), seededKey(0xEE, i), c.f.committee))
	}
	// Addresses are known once hosts listen, so bootstrap lists are added
	// after construction, before Start.
	var infos []peer.AddrInfo
	for _, v := range c.validators {
		infos = append(infos, v.Host().AddrInfo())
	}
	for _, n := range c.all() {
		n.AddBootstrapPeers(infos...)
	}
	for _, l := range c.lights {
		if err := l.JoinQCShards(o.lightShards); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range c.all() {
		if err := n.Start(ctx); err != nil {
			t.Fatalf("start %s: %v", n.name, err)
		}
	}
	c.waitReady(t, o.lightShards)
	return c
}

func (c *cluster) all() []*node { return append(slices.Clone(c.validators), c.lights...) }

// waitReady polls until every validator sees every other validator on
// every topic and every light client on its shards (and vice versa):
// from then on a flood publish reaches everyone directly.
func (c *cluster) waitReady(t testing.TB, lightShards []int) {
	t.Helper()
	d := testDomain
	why := ""
	missing := func(a, b *node, topic string) bool {
		if slices.Contains(a.ListPeers(topic), b.ID()) {
			return false
		}
		why = fmt.Sprintf("%s does not see %s on %s (connected=%v, conns=%d)", a.name, b.name, topic,
			a.Host().Connected(b.ID()), len(a.Host().LibP2P().Network().ConnsToPeer(b.ID())))
		return true
	}
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	ready := func() bool {
		for _, v := range c.validators {
			topics := []string{TxTopic(d.ChainID, d.Epoch), BulletinTopic(d.ChainID, d.Epoch)}
			for s := range v.cfg.QCShards {
				topics = append(topics, QCTopic(d.ChainID, d.Epoch, s))
			}
			for _, w := range c.validators {
				if w == v {
					continue
				}
				for _, topic := range topics {
					if missing(v, w, topic) {
						return false
					}
				}
			}
			for _, l := range c.lights {
				for _, s := range lightShards {
					topic := QCTopic(d.ChainID, d.Epoch, s)
					if missing(v, l, topic) || missing(l, v, topic) {
						return false
					}
				}
			}
		}
		return true
	}
	for !ready() {
		if time.Now().After(deadline) {
			t.Fatalf("cluster not ready after 30s: %s", why)
		}
		<-tick.C
	}
}

func subscribedAll(n *node, p peer.ID, topics []string) bool {
	for _, topic := range topics {
		if !slices.Contains(n.ListPeers(topic), p) {
			return false
		}
	}
	return true
}

// metricValue sums the samples of a counter or gauge family whose labels
// include all of want.
func metricValue(t testing.TB, reg prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			labels := make(map[string]string)
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metrics
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// testTopics computes message ids as every node of a test cluster does
// (newCluster uses LocalConfig's shard count).
var testTopics = newTopicSet(testDomain, LocalConfig().QCShards)

func txID(t testing.TB, req *fastpayv1.SubmitFastPayRequest) string {
	return testTopics.idOf(testTopics.tx, marshal(t, req))
}

func certID(t testing.TB, c qc.Certificate) string {
	return testTopics.idOf(testTopics.bull, bulletinCert(t, c))
}

func bulletinQCID(t testing.TB, q *qc.QC) string {
	return testTopics.idOf(testTopics.bull, bulletinQC(t, q))
}

func shardQCID(t testing.TB, shard int, q *qc.QC) string {
	return testTopics.idOf(testTopics.qc[shard], marshal(t, fastpayv1.NewQuorumCertificate(q)))
}
