// Package nodetest runs in-process clusters of real sidecars (real libp2p
// hosts on loopback, real pebble stores) for tests.
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
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/tempo"
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
}

// Option customises a cluster.
type Option func(*Cluster)

// WithConfig edits each node's configuration before it is built.
func WithConfig(fn func(i int, cfg *node.Config)) Option {
	return func(c *Cluster) { c.configure = fn }
}

// WithLogger logs the nodes to l (default: discarded unless
// ALLEGRO_TEST_LOG is set).
func WithLogger(l *slog.Logger) Option { return func(c *Cluster) { c.logger = l } }

// New builds (but does not start) n validators on chain, with deterministic
// keys, chain id chainID and epoch 1.
func New(t testing.TB, n int, chainID uint64, chain tempo.ChainReader, opts ...Option) *Cluster {
	t.Helper()
	c := &Cluster{t: t, Chain: chain, Nodes: make([]*node.Node, n)}
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
		c.Committee.Members = append(c.Committee.Members, committee.Member{
			Name: fmt.Sprintf("v%d", i), PublicKey: hex.EncodeToString(key.Public().(ed25519.PublicKey)),
		})
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for i := range c.Nodes {
			if c.Nodes[i] != nil {
				_ = c.Nodes[i].Stop(ctx)
			}
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
	n, err := node.New(c.config(i),
		node.WithIdentity(c.Committee.Members[i].Name, c.Keys[i]),
		node.WithCommittee(c.Committee),
		node.WithChain(c.Chain),
		node.WithLogger(c.logger.With("node", c.Committee.Members[i].Name)),
	)
	if err != nil {
		c.t.Fatalf("build node %d: %v", i, err)
	}
	var peers []peer.AddrInfo
	for j, other := range c.Nodes {
		if j != i && other != nil {
			peers = append(peers, other.Sidecar.Mesh().Host().AddrInfo())
		}
	}
	n.Sidecar.Mesh().AddBootstrapPeers(peers...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		c.t.Fatalf("start node %d: %v", i, err)
	}
	// Running peers learn the (possibly new) address too.
	for j, other := range c.Nodes {
		if j != i && other != nil {
			other.Sidecar.Mesh().AddBootstrapPeers(n.Sidecar.Mesh().Host().AddrInfo())
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

// WaitMesh waits until every running node has every other running node as
// a peer on the tx topic.
func (c *Cluster) WaitMesh(timeout time.Duration) {
	c.t.Helper()
	chainID, epoch := c.Committee.ChainID, c.Committee.Epoch
	topic := p2p.TxTopic(chainID, epoch)
	running := 0
	for _, n := range c.Nodes {
		if n != nil {
			running++
		}
	}
	Eventually(c.t, timeout, "mesh formed", func() bool {
		for _, n := range c.Nodes {
			if n != nil && len(n.Sidecar.Mesh().ListPeers(topic)) < running-1 {
				return false
			}
		}
		return true
	})
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

// Eventually polls cond until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
