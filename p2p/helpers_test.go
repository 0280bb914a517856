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

	pubsub "github.com/libp2p/go-libp2p-pubsub"
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

// Object keys name what a recorder saw. The mesh deduplicates objects,
// not messages (dedup.go), so tests ask "was this object delivered", never
// "was this message delivered": a frame's id depends on its publisher's
// sequence number and on what else the frame carried.
func txKey(h qc.Hash) string { return "tx:" + string(h[:]) }

// certKey matches the mesh's certificate identity (signer, tx_hash,
// effects_hash): a signer's two conflicting certificates are two objects.
func certKey(c *qc.Certificate) string {
	return "cert:" + string(c.Signer[:]) + string(c.TxHash[:]) + string(c.EffectsHash[:])
}

func qcKey(h qc.Hash) string { return "qc:" + string(h[:]) }

// objectKey is the key of a delivered value.
func objectKey(v any) string {
	switch v := v.(type) {
	case *TxMessage:
		return txKey(v.TxHash)
	case *BulletinItem:
		if v.Cert != nil {
			return certKey(v.Cert)
		}
		return qcKey(v.QC.TxHash)
	case *qc.QC:
		return qcKey(v.TxHash)
	}
	panic(fmt.Sprintf("objectKey(%T)", v))
}

// recorder collects deliveries of one kind, counted per object.
type recorder[T any] struct {
	mu      sync.Mutex
	items   []Delivery[T]
	objects map[string]int
}

func (r *recorder[T]) add(_ context.Context, d Delivery[T]) {
	k := objectKey(d.Value)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.objects == nil {
		r.objects = make(map[string]int)
	}
	r.items = append(r.items, d)
	r.objects[k]++
}

// count returns the deliveries satisfying pred (all when nil).
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

// has reports whether the object with key k was delivered.
func (r *recorder[T]) has(k string) bool { return r.times(k) > 0 }

// times returns how often the object with key k was delivered.
func (r *recorder[T]) times(k string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.objects[k]
}

// hasAll reports whether every object of keys was delivered.
func (r *recorder[T]) hasAll(keys []string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		if r.objects[k] == 0 {
			return false
		}
	}
	return true
}

// uniqueRemote returns the number of distinct objects delivered from peers.
func (r *recorder[T]) uniqueRemote() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := make(map[string]bool)
	for _, d := range r.items {
		if !d.Local {
			seen[objectKey(d.Value)] = true
		}
	}
	return len(seen)
}

// repeats returns the keys of objects delivered more than once.
func (r *recorder[T]) repeats() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for k, n := range r.objects {
		if n > 1 {
			out = append(out, k)
		}
	}
	return out
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

// frameID is the message id of frame bytes on a topic.
func frameID(topic string, data []byte) string { return testTopics.idOf(topic, data) }

// hdr is a frame header naming validator i as publisher.
func (f *fixture) hdr(i int, seq uint64) FrameHeader {
	return FrameHeader{Publisher: f.signers[i].ID(), Seq: seq}
}

// outsiderID is the validator id of a key outside every test committee.
func outsiderID(i int) qc.ValidatorID {
	var id qc.ValidatorID
	copy(id[:], seededKey(0xEE, i).Public().(ed25519.PublicKey))
	return id
}

func encTx(t testing.TB, h FrameHeader, reqs ...*fastpayv1.SubmitFastPayRequest) []byte {
	t.Helper()
	b, err := EncodeTxFrame(h, reqs...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func encBulletin(t testing.TB, h FrameHeader, certs []qc.Certificate, qcs []*qc.QC, pairs []qc.Equivocation) []byte {
	t.Helper()
	b, err := EncodeBulletinFrame(h, certs, qcs, pairs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func encQC(t testing.TB, h FrameHeader, qcs ...*qc.QC) []byte {
	t.Helper()
	b, err := EncodeQCFrame(h, qcs...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// equivocation returns validator i's two conflicting certificates for one
// contention key: the same effects (sender and nonce), two transactions.
func (f *fixture) equivocation(t testing.TB, i int, seq uint64, r0 byte) qc.Equivocation {
	t.Helper()
	eff := testEffects(seq, r0)
	other := testRequest(seq)
	other.Tx.TempoTx.Data = append(other.Tx.TempoTx.Data, 0xee)
	return qc.Equivocation{First: f.cert(i, mustTxHash(t, testRequest(seq)), eff), Second: f.cert(i, mustTxHash(t, other), eff)}
}

// histogram returns the sample count of a histogram family's series whose
// labels include want, and how many of those samples are at most le (le
// must be a bucket bound).
func histogram(t testing.TB, reg prometheus.Gatherer, name string, want map[string]string, le float64) (total, within uint64) {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := want[l.GetName()]; ok && v != l.GetValue() {
					continue series
				}
			}
			h := m.GetHistogram()
			total += h.GetSampleCount()
			found := false
			for _, b := range h.GetBucket() {
				if b.GetUpperBound() == le {
					within += b.GetCumulativeCount()
					found = true
				}
			}
			if !found {
				t.Fatalf("%s has no bucket bound %v", name, le)
			}
		}
	}
	return total, within
}

// frameTap is a second subscription to a topic a node joined: it sees the
// raw bytes of every frame the node accepts (its own included), so tests
// can measure frames. The mesh's own subscription is not affected.
type frameTap struct {
	mu     sync.Mutex
	frames [][]byte
}

func tapTopic(t testing.TB, n *node, topic string) *frameTap {
	t.Helper()
	n.mu.Lock()
	jt := n.joined[topic]
	n.mu.Unlock()
	if jt == nil {
		t.Fatalf("%s has not joined %s", n.name, topic)
	}
	sub, err := jt.topic.Subscribe(pubsub.WithBufferSize(1 << 15))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tap := &frameTap{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			msg, err := sub.Next(ctx)
			if err != nil {
				return
			}
			tap.mu.Lock()
			tap.frames = append(tap.frames, msg.GetData())
			tap.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		sub.Cancel()
		<-done
	})
	return tap
}

func (tap *frameTap) snapshot() [][]byte {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	return slices.Clone(tap.frames)
}

// waitFor polls cond until it returns "" (done), or fails the test after
// timeout with what it waited for and cond's last reason.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, why)
		}
		<-tick.C
	}
}

// requests returns n distinct requests numbered from first.
func requests(first, n int) []*fastpayv1.SubmitFastPayRequest {
	out := make([]*fastpayv1.SubmitFastPayRequest, n)
	for i := range out {
		out[i] = testRequest(uint64(first + i))
	}
	return out
}
