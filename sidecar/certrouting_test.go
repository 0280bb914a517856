package sidecar_test

import (
	"bufio"
	"encoding/binary"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/p2p"
)

func entryRouting(_ int, cfg *node.Config) {
	cfg.P2P.CertRouting = p2p.CertRoutingEntry
	cfg.Sidecar.ReannounceInterval = 300 * time.Millisecond
}

// TestEntryRouting: with cert_routing "entry" the other validators send
// their certificates to the sidecar that received the payment, which forms
// the QC and streams it to the submitter; every validator learns the QC,
// and a chained payment through another sidecar completes the same way.
func TestEntryRouting(t *testing.T) {
	cl := nodetest.New(t, 4, chainID, nodetest.Funded(), nodetest.WithConfig(entryRouting))
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)

	req := nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Recipient: nodetest.Address(nodetest.Bob), Amount: 10}.Request(t)
	q, certs := cl.StreamToQC(0, req)
	committee, _ := cl.Committee.Committee()
	if err := committee.VerifyQC(q); err != nil {
		t.Fatalf("stream QC does not verify: %v", err)
	}
	if certs < committee.Quorum() {
		t.Fatalf("stream delivered %d certificates before the QC, want at least %d", certs, committee.Quorum())
	}
	testkit.Eventually(t, 10*time.Second, "every sidecar holds the QC", func() bool {
		for i := range cl.Nodes {
			if !cl.HasQC(i, q.TxHash) {
				return false
			}
		}
		return true
	})
	// The certificates travelled on the certificate stream, not the bulletin.
	if got := cl.Nodes[0].Sidecar.Mesh().Stats().CertStream.Accepted; got < uint64(committee.Quorum()-1) {
		t.Errorf("the entry accepted %d certificate frames, want at least %d", got, committee.Quorum()-1)
	}
	for i := 1; i < 4; i++ {
		st := cl.Nodes[i].Sidecar.Mesh().Stats().CertStream
		if st.Sent == 0 || st.Fallback != 0 {
			t.Errorf("validator %d: %d certificate frames sent, %d fell back to the bulletin", i, st.Sent, st.Fallback)
		}
	}

	child := nodetest.Pay{Key: nodetest.Bob, ChainID: chainID, Recipient: nodetest.Address(nodetest.Carol), Amount: 100_000_010 - nodetest.MaxFee, Parent: q}.Request(t)
	q2, _ := cl.StreamToQC(2, child)
	if err := committee.VerifyQC(q2); err != nil {
		t.Fatal(err)
	}
}

// TestSilentEntry: an entry that takes the certificates and never forms the
// QC (a crashed or Byzantine entry) delays a payment by a re-announcement,
// after which the QC forms elsewhere and reaches every validator.
func TestSilentEntry(t *testing.T) {
	cl := nodetest.New(t, 4, chainID, nodetest.Funded(), nodetest.WithConfig(entryRouting))
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)
	d := cl.Nodes[0].Sidecar.Mesh().Committee().Domain()
	// The entry acknowledges every certificate frame and drops it, so the
	// senders have no reason to publish them elsewhere.
	cl.Nodes[0].Sidecar.Mesh().Host().LibP2P().SetStreamHandler(p2p.CertProtocol(d.ChainID, d.Epoch), func(st network.Stream) {
		defer st.Close()
		r := bufio.NewReader(st)
		for {
			n, err := binary.ReadUvarint(r)
			if err != nil {
				return
			}
			if _, err := r.Discard(int(n)); err != nil {
				return
			}
			if _, err := st.Write([]byte{1}); err != nil {
				return
			}
		}
	})
	req := nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Recipient: nodetest.Address(nodetest.Bob), Amount: 10}.Request(t)
	txHash, err := p2p.TxHash(req)
	if err != nil {
		t.Fatal(err)
	}
	q := cl.PayToQC(0, req, 20*time.Second)
	if q.TxHash != txHash {
		t.Fatalf("QC of %s, want %s", q.TxHash, txHash)
	}
	testkit.Eventually(t, 20*time.Second, "every sidecar holds the QC", func() bool {
		for i := range cl.Nodes {
			if !cl.HasQC(i, txHash) {
				return false
			}
		}
		return true
	})
}
