package validator

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"testing"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/epoch"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
)

// previousEpoch is the cluster's committee one epoch earlier (the same
// keys), with its members' keys for closes.
type previousEpoch struct {
	committee *qc.Committee
	signers   []*qc.Signer
	keys      []ed25519.PrivateKey
}

func (c *cluster) previous(t *testing.T) previousEpoch {
	t.Helper()
	d := qc.Domain{ChainID: testChainID, Epoch: testEpoch - 1}
	var p previousEpoch
	var members []qc.Member
	for i := range c.signers {
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = byte(i + 1) // newCluster's seeds
		key := ed25519.NewKeyFromSeed(seed)
		p.keys = append(p.keys, key)
		p.signers = append(p.signers, qc.NewSigner(key, c.signers[i].Name(), d))
		members = append(members, qc.Member{Name: c.signers[i].Name(), ID: c.signers[i].ID()})
	}
	var err error
	if p.committee, err = qc.NewCommittee(d, members); err != nil {
		t.Fatal(err)
	}
	return p
}

// closeOf is member i's close of the previous epoch at height listing the
// requests it signed.
func (p previousEpoch) closeOf(t *testing.T, i int, height uint64, reqs ...*fastpayv1.SubmitFastPayRequest) *qc.Close {
	t.Helper()
	cl := &qc.Close{ChainID: testChainID, Epoch: p.committee.Domain().Epoch, Height: height}
	for _, req := range reqs {
		pay, err := Decode(req, p.committee.Domain(), 8)
		if err != nil {
			t.Fatal(err)
		}
		cl.Entries = append(cl.Entries, qc.CloseEntry{Request: mustMarshal(t, req),
			Cert: p.signers[i].Sign(pay.TxHash, pay.Effects, 1), CertEpoch: cl.Epoch})
	}
	if err := qc.SignClose(p.keys[i], cl); err != nil {
		t.Fatal(err)
	}
	return cl
}

func TestEnterEpochGatesSigning(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t, 4)
	prev := c.previous(t)
	v := c.validator(t, 0, "")
	h, err := epoch.NewHandover(prev.committee, nil, CloseRequestCheck(testChainID))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.EnterEpoch(h); err != nil {
		t.Fatal(err)
	}

	// Signed by members 1..3 in the previous epoch, not settled.
	certified := pay(aliceKey, 0, carol, dollars(2)).request(t)
	conflicting := pay(aliceKey, 0, bob, dollars(1)).request(t)

	if _, err := v.Submit(ctx, certified); !errors.Is(err, epoch.ErrPending) || RejectCodeOf(err) != fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE {
		t.Fatalf("before any close: %v", err)
	}
	for i := 1; i <= 3; i++ {
		if _, err := h.AddClose(prev.closeOf(t, i, 10+uint64(i), certified)); err != nil {
			t.Fatal(err)
		}
	}
	// The head (10) is below the highest close height (13).
	if _, err := v.Submit(ctx, certified); !errors.Is(err, epoch.ErrPending) {
		t.Fatalf("head below the closes: %v", err)
	}
	c.chain.SetHead(13)
	if _, err := v.Submit(ctx, conflicting); RejectCodeOf(err) != fastpayv1.RejectCode_EQUIVOCATION || !errors.Is(err, epoch.ErrListed) {
		t.Fatalf("conflict with a listed key: %v", err)
	}
	if _, err := v.Submit(ctx, certified); err != nil {
		t.Fatalf("the listed transaction: %v", err)
	}
	if _, err := v.Submit(ctx, pay(bobKey, 0, carol, dollars(1)).request(t)); err != nil {
		t.Fatalf("an unlisted key: %v", err)
	}
}

func TestEnterEpochCountsListedDebits(t *testing.T) {
	ctx := context.Background()
	big := func(tx *tempo.TempoTx) { tx.Calls[0].Input = transferCalldata(bob, dollars(14)) }
	listed := nativeRequest(t, aliceKey, [32]byte{31: 1}, 0, big, nil) // $14 of alice's $15
	next := nativeRequest(t, aliceKey, [32]byte{31: 2}, 0, nil, nil)   // $2 on another nonce key

	for _, handover := range []bool{false, true} {
		c := newCluster(t, 4)
		prev := c.previous(t)
		v := c.validator(t, 0, "")
		if handover {
			h, err := epoch.NewHandover(prev.committee, nil, CloseRequestCheck(testChainID))
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 3; i++ {
				if _, err := h.AddClose(prev.closeOf(t, i, 10, listed)); err != nil {
					t.Fatal(err)
				}
			}
			if err := v.EnterEpoch(h); err != nil {
				t.Fatal(err)
			}
		}
		_, err := v.Submit(ctx, next)
		switch {
		case !handover && err != nil:
			t.Fatalf("without a handover: %v", err)
		case handover:
			wantReject(t, err, fastpayv1.RejectCode_INSUFFICIENT_FUNDS)
		}
	}
}

func TestParentQCOfThePreviousEpoch(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t, 4)
	prev := c.previous(t)
	v := c.validator(t, 0, "")

	parentReq := pay(aliceKey, 0, carol, dollars(2)).request(t)
	parent, err := Decode(parentReq, prev.committee.Domain(), 8)
	if err != nil {
		t.Fatal(err)
	}
	a := qc.NewAssembler(prev.committee, parent.TxHash, parent.Effects.Hash())
	for _, s := range prev.signers[1:] {
		if _, err := a.Add(s.Sign(parent.TxHash, parent.Effects, 1)); err != nil {
			t.Fatal(err)
		}
	}
	q, err := a.Build()
	if err != nil {
		t.Fatal(err)
	}
	if q.Epoch != testEpoch-1 {
		t.Fatalf("qc of epoch %d", q.Epoch)
	}
	// Without the handover the previous epoch's QC is not this committee's
	// (epoch 0 is also "not carried": the signatures tell).
	if err := v.LearnQC(q); !errors.Is(err, qc.ErrBadSignature) {
		t.Fatalf("previous epoch's QC outside a handover: %v", err)
	}
	h, err := epoch.NewHandover(prev.committee, nil, CloseRequestCheck(testChainID))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if _, err := h.AddClose(prev.closeOf(t, i, 10, parentReq)); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.EnterEpoch(h); err != nil {
		t.Fatal(err)
	}
	if err := v.LearnQC(q); err != nil {
		t.Fatalf("previous epoch's QC: %v", err)
	}
	// This epoch's QCs still verify, with their epoch or without it.
	current := c.certify(t, pay(bobKey, 0, carol, dollars(1)).request(t))
	untagged := *current
	untagged.Epoch = 0
	for _, give := range []*qc.QC{&untagged, current} { // untagged first: a known hash is not verified again
		if err := v.LearnQC(give); err != nil {
			t.Fatalf("this epoch's QC (carried epoch %d): %v", give.Epoch, err)
		}
	}
	// A child spending the credit names the previous epoch's QC as parent.
	child := pay(carolKey, 0, bob, dollars(6))
	child.parentHash = q.Hash[:]
	child.parents = []*fastpayv1.QuorumCertificate{fastpayv1.NewQuorumCertificate(q)}
	if _, err := v.Submit(ctx, child.request(t)); err != nil {
		t.Fatalf("child of a previous epoch's QC: %v", err)
	}
}

// TestResignInTheNextEpoch: a transaction signed in epoch 1 and unsettled
// is signed again, for the same transaction only, by the same validator in
// epoch 2, and its nonce cursor stays where later signatures put it.
func TestResignInTheNextEpoch(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t, 4)
	dir := t.TempDir()
	v1 := c.validator(t, 0, dir)
	p0 := pay(aliceKey, 0, carol, dollars(1)).request(t)
	p1 := pay(aliceKey, 1, carol, dollars(1)).request(t)
	for _, req := range []*fastpayv1.SubmitFastPayRequest{p0, p1} {
		if _, err := v1.Submit(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v1.CloseEpoch(ctx, nil); err != nil {
		t.Fatal(err)
	}
	v1.store.Close()

	// Epoch 2: the same keys; the closes of members 1..3 list both.
	next := qc.Domain{ChainID: testChainID, Epoch: testEpoch + 1}
	var members []qc.Member
	var signers []*qc.Signer
	closers := make([]ed25519.PrivateKey, len(c.signers))
	for i, s := range c.signers {
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = byte(i + 1)
		closers[i] = ed25519.NewKeyFromSeed(seed)
		signers = append(signers, qc.NewSigner(closers[i], s.Name(), next))
		members = append(members, qc.Member{Name: s.Name(), ID: s.ID()})
	}
	c2, err := qc.NewCommittee(next, members)
	if err != nil {
		t.Fatal(err)
	}
	h, err := epoch.NewHandover(c.committee, nil, CloseRequestCheck(testChainID))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		cl := &qc.Close{ChainID: testChainID, Epoch: testEpoch, Height: 10}
		for _, req := range []*fastpayv1.SubmitFastPayRequest{p0, p1} {
			pay, err := Decode(req, domain, 8)
			if err != nil {
				t.Fatal(err)
			}
			cl.Entries = append(cl.Entries, qc.CloseEntry{Request: mustMarshal(t, req), Cert: c.signers[i].Sign(pay.TxHash, pay.Effects, 1), CertEpoch: testEpoch})
		}
		if err := qc.SignClose(closers[i], cl); err != nil {
			t.Fatal(err)
		}
		if _, err := h.AddClose(cl); err != nil {
			t.Fatal(err)
		}
	}
	store, err := OpenStore(dir, DefaultGroupCommitWindow, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	v2, err := New(DefaultConfig(), signers[0], c2, c.chain, store, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := v2.EnterEpoch(h); err != nil {
		t.Fatal(err)
	}
	signed, err := v2.UncertifiedSigned()
	if err != nil || len(signed) != 2 || !signed[0].Earlier || !signed[1].Earlier {
		t.Fatalf("uncertified after the epoch change: %+v %v", signed, err)
	}

	cert, err := v2.Submit(ctx, p0)
	if err != nil {
		t.Fatalf("the same transaction in the next epoch: %v", err)
	}
	if err := c2.VerifyCertificate(&cert); err != nil {
		t.Fatalf("the new certificate is not of epoch 2: %v", err)
	}
	if again, err := v2.Submit(ctx, p0); err != nil || again.Signature != cert.Signature {
		t.Fatalf("a third submission: %v", err)
	}
	if _, err := v2.Submit(ctx, pay(aliceKey, 1, bob, dollars(1)).request(t)); RejectCodeOf(err) != fastpayv1.RejectCode_EQUIVOCATION {
		t.Fatalf("a conflict with an earlier epoch's signature: %v", err)
	}
	// Re-signing nonce 0 left the cursor at 1: nonce 2 is next.
	if _, err := v2.Submit(ctx, pay(aliceKey, 2, carol, dollars(1)).request(t)); err != nil {
		t.Fatalf("the next nonce after a re-signature: %v", err)
	}
}

// TestEndEpochAt: a member signs in its epoch only while the head is below
// the next epoch's first block.
func TestEndEpochAt(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t, 4)
	v := c.validator(t, 0, "")
	v.EndEpochAt(12)
	c.chain.SetHead(11)
	if _, err := v.Submit(ctx, pay(aliceKey, 0, carol, dollars(1)).request(t)); err != nil {
		t.Fatalf("head below the end: %v", err)
	}
	c.chain.SetHead(12)
	_, err := v.Submit(ctx, pay(bobKey, 0, carol, dollars(1)).request(t))
	if !errors.Is(err, ErrEpochStopped) || RejectCodeOf(err) != fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE {
		t.Fatalf("head at the end: %v", err)
	}
}
