package sidecar_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/sidecar"
)

// TestDoppelganger: a validator restarted on its own data directory sees
// its earlier certificates come back from its peers during the
// doppelganger window and does not trip; it signs nothing while the window
// is open and signs after it. The same key then signs a payment from
// another data directory (a second machine); restarted on its original
// data directory, the validator sees that certificate, which its durable
// state does not account for, and stops signing for good: Fatal delivers
// the error, readiness reports it, submissions get a retryable reject.
func TestDoppelganger(t *testing.T) {
	var window atomic.Int64 // node 0's doppelganger window for its next start
	cl := nodetest.New(t, 4, chainID, nodetest.Funded(), nodetest.WithConfig(func(i int, cfg *node.Config) {
		if i == 0 {
			cfg.Sidecar.DoppelgangerWindow = time.Duration(window.Load())
		}
	}))
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)
	ctx := context.Background()
	alicePay := nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Recipient: nodetest.Address(nodetest.Bob), Amount: 10}.Request(t)
	bobPay := nodetest.Pay{Key: nodetest.Bob, ChainID: chainID, Recipient: nodetest.Address(nodetest.Carol), Amount: 10}.Request(t)
	carolPay := nodetest.Pay{Key: nodetest.Carol, ChainID: chainID, Recipient: nodetest.Address(nodetest.Alice), Amount: 10}.Request(t)
	aliceTx, err := p2p.TxHash(alicePay)
	if err != nil {
		t.Fatal(err)
	}
	origDir := cl.DataDir(0)
	cl.PayToQC(0, alicePay, 20*time.Second)

	// A plain restart with a window.
	cl.Stop(0)
	window.Store(int64(4 * time.Second))
	cl.Start(0)
	n0 := cl.Nodes[0]
	resp, err := cl.Client(0).SubmitFastPay(ctx, bobPay)
	if err != nil || resp.GetReject().GetCode() != fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE || !strings.Contains(resp.GetReject().GetMessage(), "doppelganger") {
		t.Fatalf("a submission during the window: %v %v, want a retryable doppelganger reject", resp, err)
	}
	// Its own certificate comes back inside the QC the peers hold.
	testkit.Eventually(t, 4*time.Second, "node 0 to learn the QC holding its own earlier certificate", func() bool {
		return cl.HasQC(0, aliceTx)
	})
	if err := n0.Sidecar.SigningHealth(); err == nil || !strings.Contains(err.Error(), "window open") {
		t.Fatalf("signing health inside the window: %v", err)
	}
	testkit.Eventually(t, 10*time.Second, "the window to close without a trip", func() bool {
		return n0.Sidecar.SigningHealth() == nil
	})
	select {
	case err := <-n0.Sidecar.Fatal():
		t.Fatalf("a plain restart tripped the check: %v", err)
	default:
	}
	if q := cl.PayToQC(0, bobPay, 20*time.Second); q == nil {
		t.Fatal("no QC after the window")
	}

	// The same key signs on a second machine (another data directory).
	cl.Stop(0)
	window.Store(0)
	cl.SetDataDir(0, t.TempDir())
	cl.Start(0)
	cl.PayToQC(0, carolPay, 20*time.Second)

	// Back on the original data directory, which never signed carol's
	// payment.
	cl.Stop(0)
	cl.SetDataDir(0, origDir)
	window.Store(int64(time.Minute))
	cl.Start(0)
	n0 = cl.Nodes[0]
	var fatal error
	testkit.Eventually(t, 20*time.Second, "the doppelganger check to trip", func() bool {
		select {
		case fatal = <-n0.Sidecar.Fatal():
			return true
		default:
			return false
		}
	})
	if !errors.Is(fatal, sidecar.ErrDoppelganger) {
		t.Fatalf("fatal error %v", fatal)
	}
	if err := n0.Sidecar.SigningHealth(); !errors.Is(err, sidecar.ErrDoppelganger) {
		t.Fatalf("signing health after the trip: %v", err)
	}
	next := nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Nonce: 1, Recipient: nodetest.Address(nodetest.Bob), Amount: 10}.Request(t)
	resp, err = cl.Client(0).SubmitFastPay(ctx, next)
	if err != nil || resp.GetReject().GetCode() != fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE || !strings.Contains(resp.GetReject().GetMessage(), "stopped signing") {
		t.Fatalf("a submission after the trip: %v %v", resp, err)
	}
	_, body := testkit.Get(t, ctx, "http://"+n0.API.Addr().String()+"/readyz")
	if !strings.Contains(string(body), `"signing"`) || !strings.Contains(string(body), "another process is signing with this validator's key") {
		t.Fatalf("readyz: %s", body)
	}
}

// TestDoppelgangerDuringWindow: while validator 0 is in its window (and
// signs nothing), another process with its key signs a payment that
// validators 1 and 2 signed too; the certificate reaches validator 1, whose
// QC reaches validator 0 over the mesh, and validator 0 stops signing.
func TestDoppelgangerDuringWindow(t *testing.T) {
	cl := nodetest.New(t, 4, chainID, nodetest.Funded(), nodetest.WithConfig(func(i int, cfg *node.Config) {
		if i == 0 {
			cfg.Sidecar.DoppelgangerWindow = time.Minute
		}
	}))
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)
	cl.Stop(3) // without it, 0's refusal leaves the payment short of a quorum
	ctx := context.Background()
	req := nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Recipient: nodetest.Address(nodetest.Bob), Amount: 10}.Request(t)
	for _, i := range []int{0, 1, 2} {
		resp, err := cl.Client(i).SubmitFastPay(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := resp.GetCert() != nil, i != 0; got != want {
			t.Fatalf("validator %d answered %v; in the window it must not sign, the others must", i, resp)
		}
	}
	p, err := cl.Nodes[1].Sidecar.Validator().Decode(req)
	if err != nil {
		t.Fatal(err)
	}
	board := cl.Nodes[1].Sidecar.Board()
	testkit.Eventually(t, 10*time.Second, "validator 1 to hold certificates of 1 and 2", func() bool {
		st, ok := board.Status(p.TxHash)
		return ok && len(st.Certs) == 2
	})
	select {
	case err := <-cl.Nodes[0].Sidecar.Fatal():
		t.Fatalf("tripped before the other process signed: %v", err)
	default:
	}

	// The other process signs with validator 0's key.
	committee, err := cl.Committee.Committee()
	if err != nil {
		t.Fatal(err)
	}
	other := qc.NewSigner(cl.Keys[0], "v0", committee.Domain())
	if res := board.AddCertificate(other.Sign(p.TxHash, p.Effects, uint64(time.Now().UnixMilli()))); res.Formed == nil {
		t.Fatal("validator 1 formed no QC with the other process's certificate")
	}
	var fatal error
	testkit.Eventually(t, 20*time.Second, "validator 0 to see its key's certificate in the QC and trip", func() bool {
		select {
		case fatal = <-cl.Nodes[0].Sidecar.Fatal():
			return true
		default:
			return false
		}
	})
	if !errors.Is(fatal, sidecar.ErrDoppelganger) || !strings.Contains(fatal.Error(), p.TxHash.Hex()) {
		t.Fatalf("fatal error %v", fatal)
	}
}
