package node_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/node/nodetest"
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
