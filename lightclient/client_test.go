package lightclient

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
)

// Unit tests drive the client's validator stage and delivery handler
// directly, on a client that is built but never started (its host listens
// on loopback; nothing is dialed).

var unitDomain = qc.Domain{ChainID: 1337, Epoch: 3}

type fixture struct {
	committee *qc.Committee
	keys      []ed25519.PrivateKey
	signers   []*qc.Signer
}

func newFixture(t testing.TB, n int) *fixture { return newFixtureSeeded(t, n, "lightclient-unit") }

func newFixtureSeeded(t testing.TB, n int, seedTag string) *fixture {
	t.Helper()
	f := &fixture{}
	var members []qc.Member
	for i := range n {
		seed := make([]byte, ed25519.SeedSize)
		copy(seed, fmt.Sprintf("%s-%d", seedTag, i))
		k := ed25519.NewKeyFromSeed(seed)
		s := qc.NewSigner(k, fmt.Sprintf("v%d", i), unitDomain)
		f.keys, f.signers = append(f.keys, k), append(f.signers, s)
		members = append(members, qc.Member{Name: s.Name(), ID: s.ID()})
	}
	c, err := qc.NewCommittee(unitDomain, members)
	if err != nil {
		t.Fatal(err)
	}
	f.committee = c
	return f
}

// addr returns an address whose first byte is b0 (b0 picks the shard).
func addr(b0, tag byte) common.Address {
	var a common.Address
	a[0], a[19] = b0, tag
	return a
}

var (
	unitAlice = addr(0xa1, 1)
	unitBob   = addr(0x12, 2) // shard 2 of 16
	unitDave  = addr(0x22, 4) // shard 2 too, not watched
	unitToken = common.HexToAddress("0x20c0000000000000000000000000000000000001")
)

func effects(to common.Address, seq, amount uint64) qc.Effects {
	return qc.Effects{Sender: qc.Address(unitAlice), Recipient: qc.Address(to), Amount: amount, Asset: qc.Address(unitToken), NonceSeq: seq}
}

func txHash(tag string) qc.Hash { return sha256.Sum256([]byte(tag)) }

// qcOf builds a QC for (tx, eff) from the given signers' certificates.
func (f *fixture) qcOf(t testing.TB, tx qc.Hash, eff qc.Effects, signers ...int) *qc.QC {
	t.Helper()
	a := qc.NewAssembler(f.committee, tx, eff.Hash())
	for _, i := range signers {
		if _, err := a.Add(f.signers[i].Sign(tx, eff, 1_700_000_000_000+uint64(i))); err != nil {
			t.Fatal(err)
		}
	}
	q, err := a.Build()
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// badSignature returns a copy of q with one signature corrupted and the
// qc_hash recomputed, so only signature verification catches it.
func badSignature(q *qc.QC) *qc.QC {
	c := *q
	c.Certs = slices.Clone(q.Certs)
	c.Certs[1].Signature[7] ^= 0x40
	c.Hash = qc.ComputeQCHash(c.TxHash, c.EffectsHash, c.Threshold, c.Certs)
	return &c
}

// belowQuorum returns a QC with quorum-1 valid certificates.
func (f *fixture) belowQuorum(tx qc.Hash, eff qc.Effects) *qc.QC {
	var certs []qc.Certificate
	for i := range f.committee.Quorum() - 1 {
		certs = append(certs, f.signers[i].Sign(tx, eff, 1))
	}
	q := &qc.QC{TxHash: tx, EffectsHash: eff.Hash(), Certs: certs, Threshold: uint32(f.committee.Quorum())}
	q.Hash = qc.ComputeQCHash(q.TxHash, q.EffectsHash, q.Threshold, q.Certs)
	return q
}

func fakeBootstrap(t testing.TB) []peer.AddrInfo {
	t.Helper()
	_, pub, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return []peer.AddrInfo{{ID: id, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/1")}}}
}

func unitConfig(t testing.TB, f *fixture) Config {
	cfg := DefaultConfig()
	cfg.Committee = f.committee
	cfg.Bootstrap = fakeBootstrap(t)
	cfg.Watch = []common.Address{unitBob}
	return cfg
}

func newUnitClient(t testing.TB, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return c
}

// deliver hands q to the client as the mesh would: through the validator
// stage (when validate) and then the handler.
func deliver(t testing.TB, c *Client, q *qc.QC, validate bool) p2p.Verdict {
	t.Helper()
	from := peer.ID("relay")
	if validate {
		v, err := c.validateQC(context.Background(), from, q)
		if v != p2p.Accept {
			if err == nil {
				t.Fatal("rejection without a reason")
			}
			return v
		}
	}
	c.handleQC(context.Background(), p2p.Delivery[*qc.QC]{Value: q, From: from})
	return p2p.Accept
}

// drain returns the payments waiting on the channel.
func drain(c *Client) []Payment {
	var out []Payment
	for {
		select {
		case p := <-c.Payments():
			out = append(out, p)
		default:
			return out
		}
	}
}

func TestConfigValidate(t *testing.T) {
	f := newFixture(t, 4)
	cases := []struct {
		field string
		edit  func(*Config)
	}{
		{"Committee", func(c *Config) { c.Committee = nil }},
		{"QCShards", func(c *Config) { c.QCShards = 0 }},
		{"QCShards", func(c *Config) { c.QCShards = 257 }},
		{"Bootstrap", func(c *Config) { c.Bootstrap = nil }},
		{"Bootstrap[0]", func(c *Config) { c.Bootstrap[0].Addrs = nil }},
		{"Bootstrap[0]", func(c *Config) { c.Bootstrap[0].ID = "" }},
		{"Watch[1]", func(c *Config) { c.Watch = append(c.Watch, common.Address{}) }},
		{"P2P", func(c *Config) { c.P2P.ListenAddrs = nil }},
		{"P2P", func(c *Config) { c.P2P.ValidationTimeout = -1 }},
		{"PaymentBuffer", func(c *Config) { c.PaymentBuffer = 0 }},
		{"RememberQCs", func(c *Config) { c.RememberQCs = 0 }},
		{"MaxConflicts", func(c *Config) { c.MaxConflicts = 0 }},
	}
	for _, tc := range cases {
		cfg := unitConfig(t, f)
		tc.edit(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: Validate() = %v", tc.field, err)
		}
		if _, err := New(cfg, nil); err == nil {
			t.Errorf("%s: New accepted an invalid config", tc.field)
		}
	}
	cfg := unitConfig(t, f)
	if err := cfg.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	// QCShards wins over P2P.QCShards.
	cfg.P2P.QCShards = 0
	if err := cfg.Validate(); err != nil {
		t.Fatalf("P2P.QCShards should be overridden: %v", err)
	}
}

func TestNewRefusesCommitteeKey(t *testing.T) {
	f := newFixture(t, 4)
	key, err := crypto.UnmarshalEd25519PrivateKey(f.keys[2])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(unitConfig(t, f), key); !errors.Is(err, ErrCommitteeKey) {
		t.Fatalf("New with a validator's key = %v", err)
	}
}

func TestWatchSetAndShards(t *testing.T) {
	f := newFixture(t, 4)
	c := newUnitClient(t, unitConfig(t, f))
	if got := c.Shards(); !slices.Equal(got, []int{2}) {
		t.Fatalf("shards %v", got)
	}
	if err := c.Watch(unitDave); err != nil { // same shard
		t.Fatal(err)
	}
	if err := c.Watch(addr(0x05, 9)); err != nil {
		t.Fatal(err)
	}
	if got := c.Shards(); !slices.Equal(got, []int{2, 5}) {
		t.Fatalf("shards %v", got)
	}
	c.Unwatch(unitDave)
	if got := c.Watched(); !slices.Equal(got, []common.Address{addr(0x05, 9), unitBob}) {
		t.Fatalf("watched %v", got)
	}
	if err := c.Watch(common.Address{}); err == nil {
		t.Fatal("watching the zero address")
	}
}

// TestValidatorStageRejectsForgeries: the client's own stage rejects what
// the mesh's stateless stage would, and accepts valid QCs for any
// recipient (it relays them for other light clients).
func TestValidatorStageRejectsForgeries(t *testing.T) {
	f := newFixture(t, 4)
	c := newUnitClient(t, unitConfig(t, f))
	valid := f.qcOf(t, txHash("a"), effects(unitBob, 0, 10), 0, 1, 2)
	other := f.qcOf(t, txHash("b"), effects(unitDave, 1, 10), 1, 2, 3)
	wrongThreshold := *valid
	wrongThreshold.Threshold = 2
	foreign := newFixtureSeeded(t, 4, "foreign") // same domain and names, other keys
	forged := map[string]*qc.QC{
		"bad signature":   badSignature(valid),
		"below quorum":    f.belowQuorum(txHash("c"), effects(unitBob, 2, 10)),
		"wrong threshold": &wrongThreshold,
		"foreign signers": foreign.qcOf(t, txHash("d"), effects(unitBob, 3, 10), 0, 1, 2),
		"empty":           {},
	}
	for name, q := range forged {
		if v, err := c.validateQC(context.Background(), "x", q); v != p2p.Reject || err == nil {
			t.Errorf("%s: verdict %v, %v", name, v, err)
		}
	}
	for _, q := range []*qc.QC{valid, other} {
		if v, err := c.validateQC(context.Background(), "x", q); v != p2p.Accept || err != nil {
			t.Errorf("valid QC: verdict %v, %v", v, err)
		}
	}
	if got := c.Stats().Rejected; got != uint64(len(forged)) {
		t.Errorf("rejected %d, want %d", got, len(forged))
	}
}

// TestHandlerVerifiesUnvalidatedQCs: a QC that reaches the handler without
// passing the client's validator stage (as if a future transport skipped
// it) is verified there; a forgery is dropped, a valid one reported.
func TestHandlerVerifiesUnvalidatedQCs(t *testing.T) {
	f := newFixture(t, 4)
	c := newUnitClient(t, unitConfig(t, f))
	valid := f.qcOf(t, txHash("a"), effects(unitBob, 0, 10), 0, 1, 2)
	deliver(t, c, badSignature(f.qcOf(t, txHash("z"), effects(unitBob, 9, 99), 0, 1, 2)), false)
	deliver(t, c, f.belowQuorum(txHash("y"), effects(unitBob, 8, 98)), false)
	deliver(t, c, valid, false)
	got := drain(c)
	if len(got) != 1 || got[0].TxHash != valid.TxHash {
		t.Fatalf("payments %+v", got)
	}
	if st := c.Stats(); st.Rejected != 2 || st.Reported != 1 || st.LateVerified != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestHandlerReportsOnceAndOnlyWatched(t *testing.T) {
	f := newFixture(t, 4)
	c := newUnitClient(t, unitConfig(t, f))
	eff := effects(unitBob, 0, 12_345_678)
	q1 := f.qcOf(t, txHash("a"), eff, 0, 1, 2)
	q2 := f.qcOf(t, txHash("a"), eff, 1, 2, 3) // same tx, other signers
	deliver(t, c, q1, true)
	deliver(t, c, q2, true)
	deliver(t, c, q1, true)
	deliver(t, c, f.qcOf(t, txHash("b"), effects(unitDave, 1, 5), 0, 1, 3), true)
	got := drain(c)
	if len(got) != 1 {
		t.Fatalf("%d payments, want 1: %+v", len(got), got)
	}
	p := got[0]
	if p.TxHash != q1.TxHash || p.QCHash != q1.Hash || p.From != unitAlice || p.To != unitBob || p.Amount != 12_345_678 ||
		p.Asset != unitToken || p.NonceSeq != 0 || p.QC != q1 || p.Peer != "relay" || p.ReceivedAt.IsZero() {
		t.Fatalf("payment %+v", p)
	}
	if !slices.Equal(p.Signers, []string{"v0", "v1", "v2"}) {
		t.Fatalf("signers %v", p.Signers)
	}
	if err := f.committee.VerifyQC(p.QC); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Reported != 1 || st.Duplicates != 2 || st.Unwatched != 1 || st.Conflicts != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Unwatch: later payments to Bob are no longer reported.
	c.Unwatch(unitBob)
	deliver(t, c, f.qcOf(t, txHash("c"), effects(unitBob, 2, 5), 0, 1, 2), true)
	if got := drain(c); len(got) != 0 {
		t.Fatalf("payment after Unwatch: %+v", got)
	}
}

// TestConflictDetected: a second valid QC for the same contention key with
// another transaction (or the same transaction with other effects) is a
// safety violation: recorded, never reported.
func TestConflictDetected(t *testing.T) {
	f := newFixture(t, 4)
	c := newUnitClient(t, unitConfig(t, f))
	first := f.qcOf(t, txHash("pay-bob"), effects(unitBob, 7, 100), 0, 1, 2)
	second := f.qcOf(t, txHash("pay-bob-again"), effects(unitBob, 7, 200), 1, 2, 3)
	deliver(t, c, first, true)
	deliver(t, c, second, true)
	deliver(t, c, second, true) // reported once as a conflict, then a duplicate
	sameTx := f.qcOf(t, txHash("pay-bob"), effects(unitBob, 7, 300), 0, 2, 3)
	deliver(t, c, sameTx, true)

	got := drain(c)
	if len(got) != 1 || got[0].TxHash != first.TxHash {
		t.Fatalf("payments %+v", got)
	}
	cs := c.Conflicts()
	if len(cs) != 2 {
		t.Fatalf("conflicts %+v", cs)
	}
	want := qc.ContentionKey{Sender: qc.Address(unitAlice), NonceSeq: 7}
	if cs[0].Key != want || cs[0].First != first || cs[0].Second != second || cs[0].DetectedAt.IsZero() {
		t.Fatalf("conflict %+v", cs[0])
	}
	// Signers {0,1,2} and {1,2,3} share v1 and v2.
	var names []string
	for _, m := range cs[0].Equivocators {
		names = append(names, m.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"v1", "v2"}) {
		t.Fatalf("equivocators %v", names)
	}
	if cs[1].First != first || cs[1].Second != sameTx {
		t.Fatalf("same-tx conflict %+v", cs[1])
	}
	if st := c.Stats(); st.Conflicts != 2 || st.Reported != 1 || st.Duplicates != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPaymentsLossyAndClosed(t *testing.T) {
	f := newFixture(t, 4)
	cfg := unitConfig(t, f)
	cfg.PaymentBuffer = 2
	c, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var qs []*qc.QC
	for i := range 5 {
		q := f.qcOf(t, txHash(fmt.Sprint("p", i)), effects(unitBob, uint64(i), 1), 0, 1, 2)
		qs = append(qs, q)
		deliver(t, c, q, true)
	}
	if st := c.Stats(); st.Reported != 5 || st.Dropped != 3 {
		t.Fatalf("stats %+v", st)
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The newest two survive; Stop closed the channel.
	var got []qc.Hash
	for p := range c.Payments() {
		got = append(got, p.TxHash)
	}
	if !slices.Equal(got, []qc.Hash{qs[3].TxHash, qs[4].TxHash}) {
		t.Fatalf("kept %v", got)
	}
	deliver(t, c, f.qcOf(t, txHash("late"), effects(unitBob, 9, 1), 0, 1, 2), true) // no panic after Stop
}
