package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/libp2p/go-libp2p"
	lpcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	lpmetrics "github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/bulletin"
	"github.com/allegro-mesh/allegro/client"
	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// DefaultChainID is the chain id of bench networks.
const DefaultChainID = 42170

// blockPeriod is how often the emulated chain includes certified payments
// (Tempo's block time).
const blockPeriod = 500 * time.Millisecond

// senderKeys returns n deterministic secp256k1 keys.
func senderKeys(n int) []*ecdsa.PrivateKey {
	keys := make([]*ecdsa.PrivateKey, n)
	for i := range keys {
		k, err := crypto.ToECDSA(crypto.Keccak256([]byte(fmt.Sprintf("allegro-bench-sender-%d", i))))
		if err != nil {
			panic(err) // a Keccak digest is a valid key with overwhelming probability
		}
		keys[i] = k
	}
	return keys
}

// recipientAddress is where every bench payment goes.
func recipientAddress() common.Address {
	return common.BytesToAddress(crypto.Keccak256([]byte("allegro-bench-recipient"))[12:])
}

// newPayment signs a one-unit token transfer from key with nonce.
func newPayment(key *ecdsa.PrivateKey, chainID, nonce uint64, recipient common.Address) (*fastpayv1.SubmitFastPayRequest, error) {
	return client.NewEVMPayment(key, chainID, nonce, devkit.TokenAddress, recipient, 1, client.WithMaxBlockHeight(1<<40))
}

// fundedChain returns an in-memory chain where each sender holds plenty.
func fundedChain(senders []*ecdsa.PrivateKey) *tempo.MemChain {
	chain := tempo.NewMemChain()
	balance := new(big.Int).Exp(big.NewInt(10), big.NewInt(30), nil)
	for _, k := range senders {
		chain.SetBalance(devkit.TokenAddress, crypto.PubkeyToAddress(k.PublicKey), balance)
	}
	chain.SetHead(10)
	return chain
}

// committeeFile returns the committee of n bench validators (Addrs empty:
// peers are introduced directly).
func committeeFile(n int, chainID uint64) *committee.File {
	f := &committee.File{ChainID: chainID, Epoch: 1, QCShards: p2p.DefaultQCShards, TestNetwork: true}
	for i, k := range validatorKeys(n) {
		f.Members = append(f.Members, committee.Member{Name: validatorName(i), PublicKey: hex.EncodeToString(k.Public().(ed25519.PublicKey))})
	}
	return f
}

// ByteCounter counts the bytes a libp2p host writes to and reads from its
// streams (after stream multiplexing and encryption are removed: payload
// bytes, not wire bytes). It implements libp2p's metrics.Reporter; unlike
// libp2p's BandwidthCounter its totals are exact at any moment.
type ByteCounter struct {
	out, in atomic.Int64
	mu      sync.Mutex
	byProto map[protocol.ID]int64 // bytes sent
}

var _ lpmetrics.Reporter = (*ByteCounter)(nil)

// NewByteCounter returns a zeroed counter.
func NewByteCounter() *ByteCounter { return &ByteCounter{byProto: map[protocol.ID]int64{}} }

// Sent and Received return the totals.
func (c *ByteCounter) Sent() int64     { return c.out.Load() }
func (c *ByteCounter) Received() int64 { return c.in.Load() }

// SentByProtocol returns the bytes sent per protocol.
func (c *ByteCounter) SentByProtocol() map[protocol.ID]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[protocol.ID]int64, len(c.byProto))
	for k, v := range c.byProto {
		out[k] = v
	}
	return out
}

func (c *ByteCounter) LogSentMessage(int64) {}
func (c *ByteCounter) LogRecvMessage(int64) {}
func (c *ByteCounter) LogSentMessageStream(n int64, p protocol.ID, _ peer.ID) {
	c.out.Add(n)
	c.mu.Lock()
	c.byProto[p] += n
	c.mu.Unlock()
}
func (c *ByteCounter) LogRecvMessageStream(n int64, _ protocol.ID, _ peer.ID) { c.in.Add(n) }
func (c *ByteCounter) GetBandwidthForPeer(peer.ID) lpmetrics.Stats            { return lpmetrics.Stats{} }
func (c *ByteCounter) GetBandwidthForProtocol(p protocol.ID) lpmetrics.Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return lpmetrics.Stats{TotalOut: c.byProto[p]}
}
func (c *ByteCounter) GetBandwidthTotals() lpmetrics.Stats {
	return lpmetrics.Stats{TotalIn: c.in.Load(), TotalOut: c.out.Load()}
}
func (c *ByteCounter) GetBandwidthByPeer() map[peer.ID]lpmetrics.Stats { return nil }
func (c *ByteCounter) GetBandwidthByProtocol() map[protocol.ID]lpmetrics.Stats {
	out := map[protocol.ID]lpmetrics.Stats{}
	for p, n := range c.SentByProtocol() {
		out[p] = lpmetrics.Stats{TotalOut: n}
	}
	return out
}
func (c *ByteCounter) Reset()             {}
func (c *ByteCounter) TrimIdle(time.Time) {}

// ClusterConfig describes an in-process bench network.
type ClusterConfig struct {
	// Validators is the committee size (required, 1 to 100).
	Validators int
	// ChainID of the network (default DefaultChainID).
	ChainID uint64
	// Senders is the number of funded accounts (default 256).
	Senders int
	// LinkLatency, when positive, runs the validators' mesh on a libp2p
	// mock network whose links delay every write by this much (one way);
	// 0 runs it on loopback TCP and QUIC. The client API is loopback
	// either way.
	LinkLatency time.Duration
	// Dir holds the nodes' data directories (required; created).
	Dir string
	// Transport is the nodes' p2p.Config.PreferredTransport ("": the
	// default).
	Transport string
	// CertRouting is the nodes' p2p.Config.CertRouting ("": the default).
	CertRouting string
	// Logger receives the nodes' logs (default: discarded).
	Logger *slog.Logger
}

// Validate reports the first invalid field.
func (c ClusterConfig) Validate() error {
	switch {
	case c.Validators < 1 || c.Validators > 100:
		return fmt.Errorf("cluster config: Validators must be between 1 and 100, got %d", c.Validators)
	case c.Senders < 0:
		return fmt.Errorf("cluster config: Senders must not be negative, got %d", c.Senders)
	case c.LinkLatency < 0:
		return fmt.Errorf("cluster config: LinkLatency must not be negative, got %s", c.LinkLatency)
	case c.Dir == "":
		return errors.New("cluster config: Dir must be set")
	}
	if err := validTransport(c.Transport); err != nil {
		return fmt.Errorf("cluster config: Transport: %w", err)
	}
	if err := validCertRouting(c.CertRouting); err != nil {
		return fmt.Errorf("cluster config: CertRouting: %w", err)
	}
	return nil
}

// Cluster is a running in-process bench network: n sidecars built with
// node.New (real pebble stores with fsync, real gRPC/HTTP API on loopback)
// sharing one in-memory chain, on a loopback or emulated mesh. Every block
// period the chain includes the payments certified so far, so validators
// prune their overlays as on a real chain.
type Cluster struct {
	Config    ClusterConfig
	File      *committee.File
	Committee *qc.Committee
	Chain     *tempo.MemChain
	Senders   []*ecdsa.PrivateKey
	Nodes     []*node.Node
	// Bytes counts each node's stream bytes (loopback meshes only; nil
	// entries on a mock network, which reports none).
	Bytes []*ByteCounter

	mn       mocknet.Mocknet
	includer *includer
}

// StartCluster builds and starts a network and waits (bounded by ctx) until
// every validator sees every other on the tx and bulletin topics.
func StartCluster(ctx context.Context, cfg ClusterConfig) (_ *Cluster, err error) {
	if cfg.ChainID == 0 {
		cfg.ChainID = DefaultChainID
	}
	if cfg.Senders == 0 {
		cfg.Senders = 256
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Cluster{Config: cfg, File: committeeFile(cfg.Validators, cfg.ChainID), Senders: senderKeys(cfg.Senders)}
	if c.Committee, err = c.File.Committee(); err != nil {
		return nil, err
	}
	c.Chain = fundedChain(c.Senders)
	defer func() {
		if err != nil {
			stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = c.Stop(stopCtx)
		}
	}()
	if cfg.LinkLatency > 0 {
		c.mn = mocknet.New()
		c.mn.SetLinkDefaults(mocknet.LinkOptions{Latency: cfg.LinkLatency})
	}
	for i := range cfg.Validators {
		var bytes *ByteCounter
		var mock p2p.HostConstructor
		if c.mn != nil {
			mock = c.mockHost(i)
		} else {
			bytes = NewByteCounter()
		}
		n, err := buildNode(i, c.File, c.Chain, filepath.Join(cfg.Dir, validatorName(i)), meshChoice{cfg.Transport, cfg.CertRouting}, cfg.Logger, mock, bytes)
		if err != nil {
			return c, err
		}
		c.Nodes = append(c.Nodes, n)
		c.Bytes = append(c.Bytes, bytes)
	}
	if c.mn != nil {
		if err := c.mn.LinkAll(); err != nil {
			return c, fmt.Errorf("link mock network: %w", err)
		}
	}
	infos := make([]peer.AddrInfo, len(c.Nodes))
	for i, n := range c.Nodes {
		infos[i] = n.Sidecar.Mesh().Host().AddrInfo()
	}
	for _, n := range c.Nodes {
		n.Sidecar.Mesh().AddBootstrapPeers(infos...)
		if err := n.Start(ctx); err != nil {
			return c, fmt.Errorf("start node: %w", err)
		}
	}
	c.includer = newIncluder(c.Chain, c.Nodes[0].Sidecar.Board(), blockPeriod)
	if err := c.waitMesh(ctx); err != nil {
		return c, err
	}
	return c, nil
}

// buildNode builds (without starting) bench validator i of file on chain:
// production defaults except loopback addresses (p2p.LocalConfig's
// addresses, reconnect backoffs and IP colocation whitelist; API on a free
// port) and the mesh's choices. A mock host
// constructor puts it on a mock network; bytes (may be nil) counts what
// its host sends.
func buildNode(i int, file *committee.File, chain tempo.ChainReader, dataDir string, choice meshChoice, logger *slog.Logger, mock p2p.HostConstructor, bytes *ByteCounter) (*node.Node, error) {
	keys := validatorKeys(len(file.Members))
	ncfg := node.DefaultConfig()
	ncfg.DataDir = dataDir
	ncfg.Sidecar.DoppelgangerWindow = 0 // measured nodes sign from the start
	ncfg.P2P = localP2P(choice.transport)
	if choice.certRouting != "" {
		ncfg.P2P.CertRouting = choice.certRouting
	}
	// LocalConfig's fast pubsub link checks and score snapshots are for
	// tests; a benchmark runs the production timers (they cost CPU on
	// every node, which matters in large committees).
	prod := p2p.DefaultConfig()
	ncfg.P2P.PubsubCheckInterval = prod.PubsubCheckInterval
	ncfg.P2P.Scoring.InspectPeriod = prod.Scoring.InspectPeriod
	ncfg.API.ListenAddr = "127.0.0.1:0"
	ncfg.P2P.NewHost = mock
	if bytes != nil {
		ncfg.P2P.HostOptions = []libp2p.Option{libp2p.BandwidthReporter(bytes)}
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	n, err := node.New(ncfg,
		node.WithIdentity(validatorName(i), keys[i]),
		node.WithCommittee(file),
		node.WithChain(chain),
		node.WithLogger(logger.With("node", validatorName(i))),
	)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", validatorName(i), err)
	}
	return n, nil
}

// meshReady reports whether n sees at least others peers on the tx and
// bulletin topics.
func meshReady(n *node.Node, d qc.Domain, others int) bool {
	for _, t := range []string{p2p.TxTopic(d.ChainID, d.Epoch), p2p.BulletinTopic(d.ChainID, d.Epoch)} {
		if len(n.Sidecar.Mesh().ListPeers(t)) < others {
			return false
		}
	}
	return true
}

// mockHost returns the host constructor of node i on the mock network.
func (c *Cluster) mockHost(i int) p2p.HostConstructor {
	return func(key lpcrypto.PrivKey, _ []libp2p.Option) (host.Host, error) {
		// Loopback addresses keep the nodes inside LocalConfig's IP
		// colocation whitelist, as on a real loopback mesh.
		return c.mn.AddPeer(key, ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 20000+i)))
	}
}

// waitMesh polls until every node sees all others on the tx and bulletin
// topics.
func (c *Cluster) waitMesh(ctx context.Context) error {
	d := c.Committee.Domain()
	return poll(ctx, 10*time.Millisecond, "every validator sees every other on the mesh", func() bool {
		for _, n := range c.Nodes {
			if !meshReady(n, d, len(c.Nodes)-1) {
				return false
			}
		}
		return true
	})
}

// Endpoints returns every node's API address (host:port).
func (c *Cluster) Endpoints() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.API.Addr().String()
	}
	return out
}

// BytesSent returns the stream bytes all nodes sent (0 on a mock network).
func (c *Cluster) BytesSent() int64 {
	var total int64
	for _, b := range c.Bytes {
		if b != nil {
			total += b.Sent()
		}
	}
	return total
}

// MeshStats sums the nodes' mesh counters.
func (c *Cluster) MeshStats() p2p.Stats {
	var s p2p.Stats
	for _, n := range c.Nodes {
		st := n.Sidecar.Mesh().Stats()
		addTopicStats(&s.Tx, st.Tx)
		addTopicStats(&s.Bulletin, st.Bulletin)
		addTopicStats(&s.QC, st.QC)
		addTopicStats(&s.Other, st.Other)
		s.ControlBytesSent += st.ControlBytesSent
	}
	return s
}

func addTopicStats(dst *p2p.TopicStats, s p2p.TopicStats) {
	dst.Published += s.Published
	dst.ObjectsPublished += s.ObjectsPublished
	dst.PublishErrors += s.PublishErrors
	dst.Accepted += s.Accepted
	dst.Ignored += s.Ignored
	dst.Rejected += s.Rejected
	dst.ObjectsReceived += s.ObjectsReceived
	dst.ObjectsNew += s.ObjectsNew
	dst.Delivered += s.Delivered
	dst.Duplicates += s.Duplicates
	dst.Outsider += s.Outsider
	dst.Dropped += s.Dropped
	dst.Sent += s.Sent
	dst.SentBytes += s.SentBytes
}

// Stop stops the includer and every node, then the mock network.
func (c *Cluster) Stop(ctx context.Context) error {
	if c.includer != nil {
		c.includer.stop()
	}
	var errs []error
	for i := len(c.Nodes) - 1; i >= 0; i-- {
		errs = append(errs, c.Nodes[i].Stop(ctx))
	}
	if c.mn != nil {
		errs = append(errs, c.mn.Close())
	}
	return errors.Join(errs...)
}

// includer emulates the chain's settlement on an in-memory chain: it
// follows a board's QCs and, every block period, advances the head and
// moves each sender's chain nonce past its certified payments. Validators
// then prune those debits and credits as they would on a real chain;
// without it the pending entries of every sender (which each funds check
// walks) would only grow. Balances are not debited: senders are funded far
// beyond what a run spends.
type includer struct {
	chain *tempo.MemChain
	sub   *bulletin.Subscription
	done  chan struct{}
	wg    sync.WaitGroup
}

func newIncluder(chain *tempo.MemChain, board *bulletin.Board, period time.Duration) *includer {
	in := &includer{
		chain: chain,
		sub:   board.Subscribe(func(e *bulletin.Event) bool { return e.Kind == bulletin.EventQC }),
		done:  make(chan struct{}),
	}
	in.wg.Add(1)
	go in.run(period)
	return in
}

type nonceSlot struct {
	sender qc.Address
	key    qc.NonceKey
}

func (in *includer) run(period time.Duration) {
	defer in.wg.Done()
	ticker := time.NewTicker(period)
	defer ticker.Stop()
	next := map[nonceSlot]uint64{} // chain nonce once the certified payments are in
	dirty := map[nonceSlot]bool{}
	head := uint64(10)
	for {
		select {
		case <-in.done:
			return
		case ev, ok := <-in.sub.C():
			if !ok {
				return
			}
			eff := ev.QC.Effects()
			slot := nonceSlot{eff.Sender, eff.NonceKey}
			if eff.NonceSeq+1 > next[slot] {
				next[slot] = eff.NonceSeq + 1
				dirty[slot] = true
			}
		case <-ticker.C:
			for slot := range dirty {
				in.chain.SetNonce(common.Address(slot.sender), slot.key, next[slot])
			}
			clear(dirty)
			head++
			in.chain.SetHead(head)
		}
	}
}

func (in *includer) stop() {
	close(in.done)
	in.wg.Wait()
	in.sub.Close()
}

// poll calls cond every interval until it holds, ctx ends (the error
// names what) or a safety bound of iterations passes.
func poll(ctx context.Context, interval time.Duration, what string, cond func() bool) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for range 10_000_000 {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
	return fmt.Errorf("waiting for %s: gave up", what)
}

// localP2P is p2p.LocalConfig with transport preferred ("": its default).
func localP2P(transport string) p2p.Config {
	cfg := p2p.LocalConfig()
	if transport != "" {
		cfg.PreferredTransport = transport
	}
	return cfg
}

// meshChoice is what a bench run may choose of its validators' mesh: the
// preferred transport and the certificate routing ("": the defaults).
type meshChoice struct{ transport, certRouting string }

// validCertRouting accepts "" (the default) and the values of
// p2p.Config.CertRouting.
func validCertRouting(r string) error {
	switch r {
	case "", p2p.CertRoutingBulletin, p2p.CertRoutingEntry:
		return nil
	}
	return fmt.Errorf("%q is neither %q nor %q", r, p2p.CertRoutingBulletin, p2p.CertRoutingEntry)
}

// validTransport accepts "" (the default) and the values of
// p2p.Config.PreferredTransport.
func validTransport(t string) error {
	if t == "" {
		return nil
	}
	cfg := localP2P(t)
	return cfg.Validate()
}
