package sidecar_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/allegro-mesh/allegro/api/fastpayv1"
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

// TestPaymentSubmittedTwice: a payment submitted to two sidecars at once
// has two entries. The links are slow except 0–2 and 1–3, so validator 2
// signs it from 0's frame and 3 from 1's, and each entry holds only two of
// the three certificates a quorum needs. Each validator that then sees the
// other entry's frame sends that entry its certificate too, so both form
// the QC at once, not after a re-announcement.
func TestPaymentSubmittedTwice(t *testing.T) {
	const slow = 300 * time.Millisecond
	cl := nodetest.New(t, 4, chainID, nodetest.Funded(), nodetest.WithMockNet(0), nodetest.WithConfig(func(_ int, cfg *node.Config) {
		cfg.P2P.CertRouting = p2p.CertRoutingEntry
		cfg.Sidecar.ReannounceInterval = time.Minute // beyond the test
	}))
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)
	for _, l := range [][2]int{{0, 1}, {0, 3}, {1, 2}, {2, 3}} {
		cl.SetLatency(l[0], l[1], slow)
	}
	req := nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Recipient: nodetest.Address(nodetest.Bob), Amount: 10}.Request(t)
	clients := []fastpayv1.FastPaySidecarClient{cl.Client(0), cl.Client(1)}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := time.Now()
	errs := make(chan error, len(clients))
	for i, c := range clients {
		go func() {
			q, _, reject, err := testkit.StreamQC(ctx, c, req)
			switch {
			case err != nil:
				errs <- fmt.Errorf("sidecar %d: %w", i, err)
			case reject != nil:
				errs <- fmt.Errorf("sidecar %d: rejected: %s", i, reject)
			case q == nil:
				errs <- fmt.Errorf("sidecar %d: no QC", i)
			default:
				errs <- nil
			}
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("both QCs after %s", time.Since(start).Round(time.Millisecond))
}
