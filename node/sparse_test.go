package node_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"slices"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/node/nodetest"
)

// TestSparseRegionalMesh: with p2p.dial_in_region each validator connects
// to the members the committee's dialling rule links it with, not to every
// member; those that chose a validator that is down dial the next of its
// region instead; and payments entered in either region gather a quorum of
// signatures, most of them from validators the entry is not connected to,
// through relays.
func TestSparseRegionalMesh(t *testing.T) {
	const n = 12
	dials := committee.Dials{InRegion: 2, PerOtherRegion: 1}
	cl := nodetest.New(t, n, chainID, nodetest.Funded(), nodetest.WithMockNet(time.Millisecond), nodetest.WithCommitteeDials(),
		nodetest.WithConfig(func(_ int, cfg *node.Config) {
			cfg.P2P.Relay = true
			cfg.P2P.DialInRegion, cfg.P2P.DialPerOtherRegion = dials.InRegion, dials.PerOtherRegion
		}))
	for i := range cl.Committee.Members {
		cl.Committee.Members[i].Region = []string{"east", "west"}[i%2]
	}
	const down = 6 // never started
	links, err := cl.Committee.LinksAmong(dials, func(i int) bool { return i != down })
	if err != nil {
		t.Fatal(err)
	}
	allUp, _ := cl.Committee.Links(dials)
	standIns := 0
	for i := range n {
		if i != down && slices.Contains(allUp[i], down) {
			standIns++
		}
	}
	if standIns == 0 {
		t.Fatalf("nobody chose validator %d: the test shows no stand-in", down)
	}
	sparse := false
	for _, ns := range links {
		sparse = sparse || len(ns) < n-1
	}
	if !sparse {
		t.Fatalf("links %v: every member is linked to every other, so the test shows nothing", links)
	}
	for i := range n {
		if i != down {
			cl.Start(i)
		}
	}

	connectedTo := func(i int) []int {
		var out []int
		for j := range n {
			if j != i && cl.Connected(i, j) {
				out = append(out, j)
			}
		}
		return out
	}
	var running []int
	for i := range n {
		if i != down {
			running = append(running, i)
		}
	}
	// Every link, stand-ins included. A validator started after its
	// neighbours may have been stood in for meanwhile; such a stand-in is
	// retired when it comes, but its connection lasts until it drops.
	testkit.Eventually(t, 20*time.Second, "each validator connected to its links, stand-ins included", func() bool {
		for _, i := range running {
			for _, j := range links[i] {
				if !cl.Connected(i, j) {
					return false
				}
			}
		}
		return true
	})
	total := 0
	for _, i := range running {
		total += len(connectedTo(i))
	}
	if full := len(running) * (len(running) - 1); total >= full {
		t.Fatalf("%d connections among %d validators: a full mesh, not a sparse one", total/2, len(running))
	}

	for k, entry := range []int{0, 5} {
		// One sender per payment: each is a sender's first.
		sender := []*ecdsa.PrivateKey{nodetest.Alice, nodetest.Bob}[k]
		req := nodetest.Pay{Key: sender, ChainID: chainID, Recipient: nodetest.Address(nodetest.Carol), Amount: 1}.Request(t)
		if reach, quorum := len(links[entry])+1, cl.Nodes[entry].Sidecar.Validator().Committee().Quorum(); reach >= quorum {
			t.Fatalf("entry %d and its %d neighbours make a quorum (%d): the QC would need no relay", entry, reach-1, quorum)
		}
		q := cl.PayToQC(entry, req, 20*time.Second)
		relayed := 0
		for _, c := range q.Certs {
			j := slices.IndexFunc(cl.Keys, func(key ed25519.PrivateKey) bool {
				return bytes.Equal(key.Public().(ed25519.PublicKey), c.Signer[:])
			})
			if j != entry && !slices.Contains(links[entry], j) {
				relayed++
			}
		}
		if relayed == 0 {
			t.Fatalf("payment %d: every signer of its QC is the entry's neighbour", k)
		}
	}
	for _, i := range running {
		if cl.Connected(i, down) {
			t.Fatalf("validator %d is connected to %d, which never started", i, down)
		}
	}
}
