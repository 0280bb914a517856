// Package nodetest runs in-process clusters of real sidecars for tests:
// real libp2p hosts and real pebble stores, on loopback or on a libp2p mock
// network whose links can be cut (Partition), restored (Heal) and slowed
// (SetLatency), so partition and isolation tests run in go test in seconds.
package nodetest

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	lpcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/chain"
	"github.com/allegro-mesh/allegro/tempo/devchain"
)

// Cluster is n validators sharing one chain.
type Cluster struct {
	t         testing.TB
	Chain     tempo.ChainReader
	Committee *committee.File
	Keys      []ed25519.PrivateKey
	Nodes     []*node.Node // nil while stopped
	dirs      []string
	logger    *slog.Logger
	configure func(i int, cfg *node.Config)
	// committeeDials: see WithCommitteeDials.
	committeeDials bool

	// The mock network, when the cluster runs on one (WithMockNet).
	mn      mocknet.Mocknet
	mu      sync.Mutex
	peers   []peer.ID
	cut     map[[2]int]bool // pairs whose link is down
	latency time.Duration
}

// Option customises a cluster.
type Option func(*Cluster)

// WithCommitteeDials makes the nodes find each other through the committee
// file alone (mock network only): members carry their mock addresses, and
// Start adds no bootstrap peers, so each node dials whom its configuration
// chooses (p2p.dial_in_region) rather than every running node.
func WithCommitteeDials() Option { return func(c *Cluster) { c.committeeDials = true } }

// WithConfig edits each node's configuration before it is built.
func WithConfig(fn func(i int, cfg *node.Config)) Option {
	return func(c *Cluster) { c.configure = fn }
}

// WithLogger logs the nodes to l (default: discarded unless
// ALLEGRO_TEST_LOG is set).
func WithLogger(l *slog.Logger) Option { return func(c *Cluster) { c.logger = l } }

// WithMockNet runs the mesh on a libp2p mock network instead of loopback
// sockets, every link with latency (0: none). Partition, Heal and
// SetLatency work on such a cluster; a node cannot be restarted on it.
func WithMockNet(latency time.Duration) Option {
	return func(c *Cluster) {
		c.mn = mocknet.New()
		c.latency = latency
		c.mn.SetLinkDefaults(mocknet.LinkOptions{Latency: latency})
	}
}

// New builds (but does not start) n validators on chain, with deterministic
// keys, chain id chainID and epoch 1.
func New(t testing.TB, n int, chainID uint64, chain tempo.ChainReader, opts ...Option) *Cluster {
	t.Helper()
	c := &Cluster{t: t, Chain: chain, Nodes: make([]*node.Node, n), cut: make(map[[2]int]bool)}
	c.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("ALLEGRO_TEST_LOG") != "" {
		c.logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, o := range opts {
		o(c)
	}
	c.Committee = &committee.File{ChainID: chainID, Epoch: 1, QCShards: 16, TestNetwork: true}
	base := t.TempDir()
	for i := range n {
		seed := make([]byte, ed25519.SeedSize)
		copy(seed, fmt.Sprintf("nodetest-validator-%d", i))
		key := ed25519.NewKeyFromSeed(seed)
		c.Keys = append(c.Keys, key)
		c.dirs = append(c.dirs, filepath.Join(base, fmt.Sprintf("v%d", i)))
		m := committee.Member{Name: fmt.Sprintf("v%d", i), PublicKey: hex.EncodeToString(key.Public().(ed25519.PublicKey))}
		if c.committeeDials {
			if c.mn == nil {
				t.Fatal("nodetest: WithCommitteeDials needs WithMockNet")
			}
			m.Addrs = []string{mockAddr(i).String()}
		}
		c.Committee.Members = append(c.Committee.Members, m)
		priv, err := lpcrypto.UnmarshalEd25519PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		id, err := peer.IDFromPrivateKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		c.peers = append(c.peers, id)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for i := range c.Nodes {
			if c.Nodes[i] != nil {
				_ = c.Nodes[i].Stop(ctx)
			}
		}
		if c.mn != nil {
			_ = c.mn.Close()
		}
	})
	return c
}

// config returns node i's configuration.
func (c *Cluster) config(i int) node.Config {
	cfg := node.DefaultConfig()
	cfg.DataDir = c.dirs[i]
	cfg.P2P = p2p.LocalConfig()
	cfg.API.ListenAddr = "127.0.0.1:0"
	cfg.Sidecar.PruneInterval = 200 * time.Millisecond
	// Test nodes sign at once; a test of the doppelganger check sets a
	// window through WithConfig.
	cfg.Sidecar.DoppelgangerWindow = 0
	if c.mn != nil {
		cfg.P2P.NewHost = func(key lpcrypto.PrivKey, _ []libp2p.Option) (host.Host, error) {
			return c.mn.AddPeer(key, mockAddr(i))
		}
	}
	if c.configure != nil {
		c.configure(i, &cfg)
	}
	return cfg
}

// StartAll starts every stopped node.
func (c *Cluster) StartAll() {
	c.t.Helper()
	for i := range c.Nodes {
		if c.Nodes[i] == nil {
			c.Start(i)
		}
	}
}

// Start builds and starts node i (again, after Stop: same key and data
// directory), and tells it where the running peers are.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	if c.mn != nil && c.mn.Host(c.peers[i]) != nil {
		c.t.Fatalf("node %d: restarting a node on the mock network is not supported", i)
	}
	n, err := node.New(c.config(i),
		node.WithIdentity(c.Committee.Members[i].Name, c.Keys[i]),
		node.WithCommittee(c.Committee),
		node.WithChain(c.Chain),
		node.WithLogger(c.logger.With("node", c.Committee.Members[i].Name)),
	)
	if err != nil {
		c.t.Fatalf("build node %d: %v", i, err)
	}
	if c.mn != nil {
		c.linkNew(i)
	}
	if !c.committeeDials {
		var peers []peer.AddrInfo
		for j, other := range c.Nodes {
			if j != i && other != nil {
				peers = append(peers, other.Sidecar.Mesh().Host().AddrInfo())
			}
		}
		n.Sidecar.Mesh().AddBootstrapPeers(peers...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		c.t.Fatalf("start node %d: %v", i, err)
	}
	if !c.committeeDials {
		// Running peers learn the (possibly new) address too.
		for j, other := range c.Nodes {
			if j != i && other != nil {
				other.Sidecar.Mesh().AddBootstrapPeers(n.Sidecar.Mesh().Host().AddrInfo())
			}
		}
	}
	c.Nodes[i] = n
}

// Stop stops node i; its data directory is kept for a restart.
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Nodes[i].Stop(ctx); err != nil {
		c.t.Errorf("stop node %d: %v", i, err)
	}
	c.Nodes[i] = nil
}

// DataDir returns node i's data directory.
func (c *Cluster) DataDir(i int) string { return c.dirs[i] }

// SetDataDir gives node i, stopped, another data directory for its next
// Start (a validator moved to a new machine, same key).
func (c *Cluster) SetDataDir(i int, dir string) {
	c.t.Helper()
	if c.Nodes[i] != nil {
		c.t.Fatalf("node %d: stop it before changing its data directory", i)
	}
	c.dirs[i] = dir
}

// mockAddr is node i's address on the mock network: loopback, which keeps
// the nodes inside LocalConfig's IP colocation whitelist, as on a real
// loopback mesh.
func mockAddr(i int) ma.Multiaddr {
	return ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 20000+i))
}

// linkNew links node i's mock host to every other one already on the mock
// network, except across a partition.
func (c *Cluster) linkNew(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for j := range c.peers {
		if j == i || c.mn.Host(c.peers[j]) == nil || c.cut[pair(i, j)] {
			continue
		}
		if _, err := c.mn.LinkPeers(c.peers[i], c.peers[j]); err != nil {
			c.t.Fatalf("link %d-%d: %v", i, j, err)
		}
	}
}

func pair(i, j int) [2]int {
	if i > j {
		i, j = j, i
	}
	return [2]int{i, j}
}

// Partition cuts the mock network into groups of node indices: links
// between groups go down and their connections close; a node in no group
// is cut off from all. Nodes keep redialing, as they would on a real
// network, and reach each other again after Heal.
func (c *Cluster) Partition(groups ...[]int) {
	c.t.Helper()
	c.requireMockNet()
	side := make(map[int]int)
	for g, members := range groups {
		for _, i := range members {
			side[i] = g + 1
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.peers {
		for j := i + 1; j < len(c.peers); j++ {
			if side[i] != 0 && side[i] == side[j] {
				continue
			}
			c.cut[pair(i, j)] = true
			if c.mn.Host(c.peers[i]) == nil || c.mn.Host(c.peers[j]) == nil {
				continue
			}
			for _, l := range c.mn.LinksBetweenPeers(c.peers[i], c.peers[j]) {
				// A stream opened while mocknet tears a connection down
				// outlives the connection and keeps writing over the old
				// link; delaying that link past any test keeps such a
				// stream from carrying anything across the partition.
				l.SetOptions(mocknet.LinkOptions{Latency: partitionedLatency})
				if err := c.mn.Unlink(l); err != nil {
					c.t.Fatalf("unlink %d-%d: %v", i, j, err)
				}
			}
			if err := c.mn.DisconnectPeers(c.peers[i], c.peers[j]); err != nil {
				c.t.Fatalf("disconnect %d-%d: %v", i, j, err)
			}
		}
	}
}

// partitionedLatency is the latency given to a link Partition cuts.
const partitionedLatency = 24 * time.Hour

// Heal restores every link Partition cut.
func (c *Cluster) Heal() {
	c.t.Helper()
	c.requireMockNet()
	c.mu.Lock()
	defer c.mu.Unlock()
	for p := range c.cut {
		if c.mn.Host(c.peers[p[0]]) != nil && c.mn.Host(c.peers[p[1]]) != nil {
			if _, err := c.mn.LinkPeers(c.peers[p[0]], c.peers[p[1]]); err != nil {
				c.t.Fatalf("link %d-%d: %v", p[0], p[1], err)
			}
		}
		delete(c.cut, p)
	}
}

// SetLatency sets the one-way latency of the link between nodes i and j
// (and of every link made later between them).
func (c *Cluster) SetLatency(i, j int, d time.Duration) {
	c.t.Helper()
	c.requireMockNet()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.mn.LinksBetweenPeers(c.peers[i], c.peers[j]) {
		l.SetOptions(mocknet.LinkOptions{Latency: d})
	}
}

func (c *Cluster) requireMockNet() {
	if c.mn == nil {
		c.t.Fatal("nodetest: Partition, Heal and SetLatency need a cluster built WithMockNet")
	}
}

// Connected reports whether nodes i and j have a live connection.
func (c *Cluster) Connected(i, j int) bool {
	n := c.Nodes[i]
	return n != nil && n.Sidecar.Mesh().Host().Connected(c.peers[j])
}

// WaitMesh waits until every running node has every other running node as
// a peer on the tx topic.
func (c *Cluster) WaitMesh(timeout time.Duration) {
	c.t.Helper()
	c.WaitConnected(timeout, c.running())
}

// WaitConnected waits until, within each group, every node has every other
// as a peer on the tx topic.
func (c *Cluster) WaitConnected(timeout time.Duration, groups ...[]int) {
	c.t.Helper()
	topic := p2p.TxTopic(c.Committee.ChainID, c.Committee.Epoch)
	testkit.Eventually(c.t, timeout, fmt.Sprintf("mesh formed within %v", groups), func() bool {
		for _, g := range groups {
			for _, i := range g {
				peers := c.Nodes[i].Sidecar.Mesh().ListPeers(topic)
				for _, j := range g {
					if j != i && !containsPeer(peers, c.peers[j]) {
						return false
					}
				}
			}
		}
		return true
	})
}

func containsPeer(ps []peer.ID, p peer.ID) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

func (c *Cluster) running() []int {
	var out []int
	for i, n := range c.Nodes {
		if n != nil {
			out = append(out, i)
		}
	}
	return out
}

// Client returns a gRPC client of node i's API.
func (c *Cluster) Client(i int) fastpayv1.FastPaySidecarClient {
	c.t.Helper()
	conn, err := grpc.NewClient(c.Nodes[i].API.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { conn.Close() })
	return fastpayv1.NewFastPaySidecarClient(conn)
}

// PayToQC submits req through node i's stream and returns the QC, failing
// the test when it does not come within timeout.
func (c *Cluster) PayToQC(i int, req *fastpayv1.SubmitFastPayRequest, timeout time.Duration) *qc.QC {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	q, _ := testkit.StreamToQC(c.t, ctx, c.Client(i), req)
	return q
}

// HasQC reports whether node i holds a QC for txHash.
func (c *Cluster) HasQC(i int, txHash qc.Hash) bool {
	n := c.Nodes[i]
	if n == nil {
		return false
	}
	_, ok := n.Sidecar.Board().QC(txHash)
	return ok
}

// StreamToQC submits req through node i's stream and returns the QC and how
// many certificates came before it, failing the test when the QC does not
// come within 20 s.
func (c *Cluster) StreamToQC(i int, req *fastpayv1.SubmitFastPayRequest) (*qc.QC, int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return testkit.StreamToQC(c.t, ctx, c.Client(i), req)
}

// DevChain starts a development chain with cfg and a JSON-RPC client on it
// (WebSocket), both stopped when the test ends.
func DevChain(t testing.TB, cfg devchain.Config) (*devchain.Chain, *chain.Client) {
	t.Helper()
	dc := testkit.StartDevChain(t, cfg)
	client, err := chain.New(chain.Config{URL: dc.WSEndpoint(), ExpectedChainID: dc.ChainID().Uint64()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Stop(context.Background()) })
	return dc, client
}
