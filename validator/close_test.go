package validator

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"math/big"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

func entryTxs(cl *qc.Close) map[qc.Hash]uint64 {
	out := make(map[qc.Hash]uint64, len(cl.Entries))
	for _, en := range cl.Entries {
		out[en.Cert.TxHash] = en.CertEpoch
	}
	return out
}

func TestCloseEpoch(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t, 4)
	dir := t.TempDir()
	v := c.validator(t, 0, dir)

	alicePays := pay(aliceKey, 0, carol, dollars(1)).request(t)
	bobPays := pay(bobKey, 0, carol, dollars(1)).request(t)
	aliceCert, err := v.Submit(ctx, alicePays)
	if err != nil {
		t.Fatal(err)
	}
	bobCert, err := v.Submit(ctx, bobPays)
	if err != nil {
		t.Fatal(err)
	}
	c.chain.SetNonce(alice, [32]byte{}, 1) // alice's payment settled
	c.chain.SetHead(42)

	// A transaction adopted entering this epoch, carried from an earlier
	// one; and one carried but settled since, which is not listed.
	carriedReq := pay(carolKey, 0, bob, dollars(1)).request(t)
	carriedPay, err := Decode(carriedReq, domain, 8)
	if err != nil {
		t.Fatal(err)
	}
	carried := c.signers[1].Sign(carriedPay.TxHash, carriedPay.Effects, 1)
	rawCarried := mustMarshal(t, carriedReq)
	settledCarried := aliceCert
	settledCarried.Signer = c.signers[2].ID()

	cl, err := v.CloseEpoch(ctx, []qc.CloseEntry{
		{Request: rawCarried, Cert: carried, CertEpoch: testEpoch - 1},
		{Request: mustMarshal(t, alicePays), Cert: settledCarried, CertEpoch: testEpoch - 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	if cl.Epoch != testEpoch || cl.Height != 42 || cl.Signer != c.signers[0].ID() {
		t.Fatalf("close of epoch %d at %d by %s", cl.Epoch, cl.Height, cl.Signer)
	}
	got := entryTxs(cl)
	if len(got) != 2 || got[bobCert.TxHash] != testEpoch || got[carried.TxHash] != testEpoch-1 {
		t.Fatalf("close lists %v; want bob's (own, epoch %d) and the carried one", got, testEpoch)
	}
	if _, listed := got[aliceCert.TxHash]; listed {
		t.Fatal("a settled transaction is listed")
	}
	if err := c.committee.VerifyClose(cl); err != nil {
		t.Fatal(err)
	}
	check := CloseRequestCheck(testChainID)
	for i, en := range cl.Entries {
		if en.CertEpoch == testEpoch {
			if err := qc.CheckCloseEntry(cl, i, func(uint64) *qc.Committee { return c.committee }); err != nil {
				t.Fatalf("own entry: %v", err)
			}
		}
		if err := check(en.Request, en.Cert.TxHash, en.Cert.Effects); err != nil {
			t.Fatalf("entry %d request: %v", i, err)
		}
	}
	if err := check(rawCarried, bobCert.TxHash, bobCert.Effects); err == nil {
		t.Fatal("a request checked against another transaction's certificate")
	}

	// Stopped: nothing new is signed, with a retryable refusal; what was
	// signed before is still handed out.
	_, err = v.Submit(ctx, pay(bobKey, 1, carol, dollars(1)).request(t))
	if !errors.Is(err, ErrEpochStopped) || RejectCodeOf(err) != fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE {
		t.Fatalf("payment after the close: %v", err)
	}
	if again, err := v.Submit(ctx, bobPays); err != nil || again.Signature != bobCert.Signature {
		t.Fatalf("resubmitted signed payment: %v", err)
	}
	if again, err := v.CloseEpoch(ctx, nil); err != nil || again.Signature != cl.Signature || len(again.Entries) != 2 {
		t.Fatalf("second close: %v", err)
	}

	// After a restart the epoch stays stopped and the close is the same.
	v.store.Close()
	v = c.validator(t, 0, dir)
	if _, err := v.Submit(ctx, pay(bobKey, 1, carol, dollars(1)).request(t)); !errors.Is(err, ErrEpochStopped) {
		t.Fatalf("payment after a restart: %v", err)
	}
	if again, err := v.CloseEpoch(ctx, nil); err != nil || again.Signature != cl.Signature {
		t.Fatalf("close after a restart: %v", err)
	}
}

// Payments racing the close are either refused or listed: none is signed
// and left out.
func TestCloseEpochRacingPayments(t *testing.T) {
	ctx := context.Background()
	for round := range 20 {
		c := newCluster(t, 4)
		v := c.validator(t, 0, "")
		payers := []*ecdsa.PrivateKey{aliceKey, bobKey, carolKey}
		certs := make([]*qc.Certificate, len(payers))
		var wg sync.WaitGroup
		for i, p := range payers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cert, err := v.Submit(ctx, pay(p, 0, dave, dollars(1)).request(t))
				switch {
				case err == nil:
					certs[i] = &cert
				case !errors.Is(err, ErrEpochStopped):
					t.Errorf("round %d: payment %d: %v", round, i, err)
				}
			}()
		}
		var cl *qc.Close
		var closeErr error
		wg.Add(1)
		go func() { defer wg.Done(); cl, closeErr = v.CloseEpoch(ctx, nil) }()
		wg.Wait()
		if closeErr != nil {
			t.Fatal(closeErr)
		}
		listed := entryTxs(cl)
		for i, cert := range certs {
			if cert == nil {
				continue
			}
			if _, ok := listed[cert.TxHash]; !ok {
				t.Fatalf("round %d: payment %d was signed and is not in the close", round, i)
			}
		}
	}
}

// A close made while the validator prunes what settled: a key pruned after
// the close took it from the guard has no record left, and the close must
// neither fail nor list it.
func TestCloseEpochRacingPrune(t *testing.T) {
	ctx := context.Background()
	for round := range 20 {
		c := newCluster(t, 4)
		v := c.validator(t, 0, "")
		const signed = 40
		for n := range uint64(signed) {
			if _, err := v.Submit(ctx, pay(aliceKey, n, dave, big.NewInt(1_000)).request(t)); err != nil {
				t.Fatal(err)
			}
		}
		c.chain.SetNonce(alice, [32]byte{}, signed) // every one settled
		var wg sync.WaitGroup
		var cl *qc.Close
		var closeErr, pruneErr error
		wg.Add(2)
		go func() { defer wg.Done(); _, _, pruneErr = v.Prune(ctx) }()
		go func() { defer wg.Done(); cl, closeErr = v.CloseEpoch(ctx, nil) }()
		wg.Wait()
		if closeErr != nil || pruneErr != nil {
			t.Fatalf("round %d: close: %v; prune: %v", round, closeErr, pruneErr)
		}
		if len(cl.Entries) != 0 {
			t.Fatalf("round %d: the close lists %d settled transactions", round, len(cl.Entries))
		}
	}
}

func mustMarshal(t *testing.T, req *fastpayv1.SubmitFastPayRequest) []byte {
	t.Helper()
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
