package node_test

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/p2p"
)

// TestSparseRegionalMesh: with p2p.dial_in_region each validator connects
// to exactly the members the committee's dialling rule links it with, not
// to every member, and payments still reach every validator through relays
// and gather a QC everywhere.
func TestSparseRegionalMesh(t *testing.T) {
	const n = 8
	dials := committee.Dials{InRegion: 1, PerOtherRegion: 1}
	cl := nodetest.New(t, n, chainID, nodetest.Funded(), nodetest.WithMockNet(time.Millisecond), nodetest.WithCommitteeDials(),
		nodetest.WithConfig(func(_ int, cfg *node.Config) {
			cfg.P2P.Relay = true
			cfg.P2P.DialInRegion, cfg.P2P.DialPerOtherRegion = dials.InRegion, dials.PerOtherRegion
		}))
	for i := range cl.Committee.Members {
		cl.Committee.Members[i].Region = []string{"east", "west"}[i%2]
	}
	links, err := cl.Committee.Links(dials)
	if err != nil {
		t.Fatal(err)
	}
	sparse := false
	for _, ns := range links {
		sparse = sparse || len(ns) < n-1
	}
	if !sparse {
		t.Fatalf("links %v: every member is linked to every other, so the test shows nothing", links)
	}
	cl.StartAll()

	connectedTo := func(i int) []int {
		var out []int
		for j := range n {
			if j != i && cl.Connected(i, j) {
				out = append(out, j)
			}
		}
		return out
	}
	testkit.Eventually(t, 20*time.Second, "each validator connected to its links", func() bool {
		for i := range n {
			if !slices.Equal(connectedTo(i), links[i]) {
				return false
			}
		}
		return true
	})

	for k, entry := range []int{0, 5} {
		req := nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Nonce: uint64(k), Recipient: nodetest.Address(nodetest.Bob), Amount: 1}.Request(t)
		q := cl.PayToQC(entry, req, 20*time.Second)
		testkit.Eventually(t, 20*time.Second, fmt.Sprintf("payment %d's QC at every validator", k), func() bool {
			for i := range n {
				if !cl.HasQC(i, q.TxHash) {
					return false
				}
			}
			return true
		})
	}
	for i := range n {
		if got := connectedTo(i); !slices.Equal(got, links[i]) {
			t.Fatalf("validator %d ended connected to %v, want its links %v", i, got, links[i])
		}
	}
}

// TestSparseMeshRefused: a sparse mesh that cannot work is refused at
// start, naming the setting.
func TestSparseMeshRefused(t *testing.T) {
	cl := nodetest.New(t, 4, chainID, nodetest.Funded())
	regional := *cl.Committee
	regional.Members = slices.Clone(cl.Committee.Members)
	for i := range regional.Members {
		regional.Members[i].Region = []string{"east", "west"}[i%2]
	}
	for _, tc := range []struct {
		name string
		edit func(*node.Config)
		want string
	}{
		{"without relaying", func(c *node.Config) { c.P2P.DialInRegion = 1 }, "p2p.dial_in_region: needs relay = true"},
		{"no dials across regions", func(c *node.Config) { c.P2P.DialInRegion, c.P2P.Relay = 1, true }, "p2p.dial_in_region: the committee's mesh is not connected"},
		{"remote dials alone", func(c *node.Config) { c.P2P.DialPerOtherRegion, c.P2P.Relay = 1, true }, "p2p.dial_per_other_region: needs dial_in_region"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := node.DefaultConfig()
			cfg.DataDir = t.TempDir()
			cfg.P2P = p2p.LocalConfig()
			cfg.API.ListenAddr = "127.0.0.1:0"
			tc.edit(&cfg)
			_, err := node.New(cfg, node.WithIdentity(regional.Members[0].Name, cl.Keys[0]), node.WithCommittee(&regional),
				node.WithChain(cl.Chain), node.WithLogger(slog.New(slog.DiscardHandler)))
			var ce *node.ConfigError
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &ce) {
				t.Fatalf("got %v, want a ConfigError containing %q", err, tc.want)
			}
		})
	}
}
