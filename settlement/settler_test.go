package settlement

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/bulletin"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/chain"
	"github.com/allegro-mesh/allegro/validator"
)

var errDown = fmt.Errorf("fake: %w: connection refused", tempo.ErrChainUnavailable)

func rejected(msg string) error { return fmt.Errorf("chain: %w: %s", chain.ErrTxRejected, msg) }

func wantEvents(t *testing.T, h *harness, tx qc.Hash, want string) {
	t.Helper()
	if got := h.st.describe(tx); got != want {
		t.Fatalf("events of %s:\n got %q\nwant %q", tx, got, want)
	}
}

func TestConfig(t *testing.T) {
	d := DefaultConfig()
	if d.FinalityDepth != 0 || d.MaxPending != 100_000 || d.ResendInterval != 5*time.Second || d.MaxAge != 10*time.Minute || d.Workers <= 0 {
		t.Fatalf("defaults %+v", d)
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := (Config{}).WithDefaults(); got != d {
		t.Fatalf("zero config with defaults = %+v, want %+v", got, d)
	}
	for _, c := range []struct {
		field string
		mut   func(*Config)
	}{
		{"max_pending", func(c *Config) { c.MaxPending = -1 }},
		{"max_raw_bytes", func(c *Config) { c.MaxRawBytes = -1 }},
		{"resend_interval", func(c *Config) { c.ResendInterval = -time.Second }},
		{"max_age", func(c *Config) { c.MaxAge = -time.Second }},
		{"workers", func(c *Config) { c.Workers = -2 }},
		{"receipt_retries", func(c *Config) { c.ReceiptRetries = -1 }},
		{"finality_depth", func(c *Config) { c.FinalityDepth = 1 << 40 }},
		{"resend_interval", func(c *Config) { c.ResendInterval = time.Hour }},
	} {
		cfg := DefaultConfig()
		c.mut(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: Validate() = %v, want an error naming the field", c.field, err)
		}
		if _, err := New(cfg, newFakeChain(), &recStages{}, nil, nil); err == nil {
			t.Errorf("%s: New accepted an invalid config", c.field)
		}
	}
	if _, err := New(Config{}, nil, &recStages{}, nil, nil); err == nil {
		t.Error("New accepted a nil chain")
	}
	if _, err := New(Config{}, newFakeChain(), nil, nil, nil); err == nil {
		t.Error("New accepted nil stages")
	}
}

func TestSettlesOnePayment(t *testing.T) {
	for _, order := range []string{"offer first", "qc first"} {
		t.Run(order, func(t *testing.T) {
			h := newHarness(t, Config{})
			var included []qc.Hash
			h.s.OnIncluded(func(tx qc.Hash, height uint64) { included = append(included, tx) })
			p, q := fakePayment(0xa1, 0, nil, false)
			if order == "offer first" {
				h.s.Offer(p)
				h.pass()
				if h.chain.sent(p) != 0 {
					t.Fatal("sent before the QC was known")
				}
				h.s.Certified(q)
			} else {
				h.s.Certified(q)
				h.pass()
				if h.chain.sent(p) != 0 {
					t.Fatal("sent without raw bytes")
				}
				h.s.Offer(p)
			}
			h.pass()
			if h.chain.sent(p) != 1 {
				t.Fatalf("sent %d times, want 1", h.chain.sent(p))
			}
			wantEvents(t, h, p.TxHash, "QUEUED_ONCHAIN")
			h.block() // still pending
			block := h.chain.include(p, 1)
			h.block()
			wantEvents(t, h, p.TxHash, fmt.Sprintf("QUEUED_ONCHAIN INCLUDED@%d FINALIZED@%d", block, block))
			if h.s.Pending() != 0 || h.s.rawBytes != 0 {
				t.Fatalf("pending %d, raw bytes %d after finality", h.s.Pending(), h.s.rawBytes)
			}
			if len(included) != 1 || included[0] != p.TxHash {
				t.Fatalf("OnIncluded calls %v", included)
			}
			if got := testutil.ToFloat64(h.s.m.included.WithLabelValues(includedSuccess)); got != 1 {
				t.Fatalf("included metric %v", got)
			}
			if got := testutil.ToFloat64(h.s.m.finalized); got != 1 {
				t.Fatalf("finalized metric %v", got)
			}
			if testutil.CollectAndCount(h.s.m.toIncluded) != 1 {
				t.Fatal("no certified-to-included observation")
			}
			// Late inputs for a finished transaction are ignored.
			h.s.Offer(p)
			h.s.Certified(q)
			if h.s.Pending() != 0 {
				t.Fatal("a finished transaction was tracked again")
			}
		})
	}
}

func TestFinalityDepth(t *testing.T) {
	h := newHarness(t, Config{FinalityDepth: 2})
	p, q := fakePayment(0xa1, 0, nil, false)
	h.s.Offer(p)
	h.s.Certified(q)
	h.pass()
	block := h.chain.include(p, 1)
	h.block() // head block+1
	wantEvents(t, h, p.TxHash, fmt.Sprintf("QUEUED_ONCHAIN INCLUDED@%d", block))
	h.pass()
	wantEvents(t, h, p.TxHash, fmt.Sprintf("QUEUED_ONCHAIN INCLUDED@%d", block))
	h.block() // head block+2
	wantEvents(t, h, p.TxHash, fmt.Sprintf("QUEUED_ONCHAIN INCLUDED@%d FINALIZED@%d", block, block))
}

func TestChildWaitsForParent(t *testing.T) {
	h := newHarness(t, Config{})
	parent, parentQC := fakePayment(0xa1, 0, nil, false)
	child, childQC := fakePayment(0xb0, 0, parentQC, false)

	h.s.Offer(child)
	h.s.Certified(childQC)
	for range 3 {
		h.block()
	}
	if h.chain.sent(child) != 0 || len(h.st.of(child.TxHash)) != 0 {
		t.Fatalf("child sent before its parent was known: %s", h.st.describe(child.TxHash))
	}
	h.s.Certified(parentQC)
	h.s.Offer(parent)
	h.pass()
	if h.chain.sent(parent) != 1 {
		t.Fatal("parent not sent")
	}
	for range 2 {
		h.block()
	}
	if h.chain.sent(child) != 0 {
		t.Fatal("child sent while its parent is not included")
	}
	// The parent is mined: the same pass that sees it sends the child.
	h.chain.include(parent, 1)
	h.block()
	if h.chain.sent(child) != 1 {
		t.Fatal("child not sent once its parent was included")
	}
	wantEvents(t, h, child.TxHash, "QUEUED_ONCHAIN")
	block := h.chain.include(child, 1)
	h.block()
	wantEvents(t, h, child.TxHash, fmt.Sprintf("QUEUED_ONCHAIN INCLUDED@%d FINALIZED@%d", block, block))
}

func TestChildOfFinishedParent(t *testing.T) {
	// The parent settled and was dropped before the child arrived.
	h := newHarness(t, Config{})
	parent, parentQC := fakePayment(0xa1, 0, nil, false)
	h.s.Certified(parentQC)
	h.s.Offer(parent)
	h.pass()
	h.chain.include(parent, 1)
	h.block()
	if h.s.Pending() != 0 {
		t.Fatal("parent still pending")
	}
	child, childQC := fakePayment(0xb0, 0, parentQC, false)
	h.s.Certified(childQC)
	h.s.Offer(child)
	h.pass()
	if h.chain.sent(child) != 1 {
		t.Fatal("child of a finalized parent not sent")
	}
}

func TestParentKnownUnderAnotherQC(t *testing.T) {
	// The board holds one QC for the parent; the child names another QC of
	// the same transaction (a different certificate subset), carried in its
	// request.
	h := newHarness(t, Config{})
	parent, boardQC := fakePayment(0xa1, 0, nil, false)
	otherQC := fakeQC(parent.TxHash, parent.Effects, 7)
	child, childQC := fakePayment(0xb0, 0, otherQC, true)
	h.s.Certified(boardQC)
	h.s.Offer(parent)
	h.s.Certified(childQC)
	h.s.Offer(child)
	h.pass()
	if h.chain.sent(child) != 0 {
		t.Fatal("child sent before its parent was included")
	}
	h.chain.include(parent, 1)
	h.block()
	if h.chain.sent(child) != 1 {
		t.Fatal("child not sent after its parent (known under another QC hash) was included")
	}
}

func TestParentOnlyInRequest(t *testing.T) {
	// The parent QC never reached this sidecar's board, but the child's
	// request carries it: the parent's nonce tells when it is included.
	h := newHarness(t, Config{})
	parent, parentQC := fakePayment(0xa1, 0, nil, false)
	child, childQC := fakePayment(0xb0, 0, parentQC, true)
	h.s.Offer(child)
	h.s.Certified(childQC)
	for range 3 {
		h.block()
	}
	if h.chain.sent(child) != 0 {
		t.Fatal("child sent before its parent's nonce passed")
	}
	h.chain.setNonce(parent.Effects, 1)
	h.block()
	if h.chain.sent(child) != 1 {
		t.Fatal("child not sent after its parent's nonce passed")
	}
	if len(h.st.of(parent.TxHash)) != 0 {
		t.Fatal("stages reported for a parent known only from a request")
	}
}

func TestForgedParentInRequestIgnored(t *testing.T) {
	h := newHarness(t, Config{MaxAge: time.Minute})
	_, parentQC := fakePayment(0xa1, 0, nil, false)
	child, childQC := fakePayment(0xb0, 0, parentQC, true)
	// The carried QC claims the parent is another account's transaction,
	// whose nonce has passed; its hash no longer matches.
	forged := fastpayv1.NewQuorumCertificate(parentQC)
	forged.Certs[0].Effects.Sender = &fastpayv1.Address{Data: make([]byte, 20)}
	forged.EffectsHash = make([]byte, 32)
	child.Request.ParentQcs = []*fastpayv1.QuorumCertificate{forged}
	h.chain.setNonce(qc.Effects{}, 5)
	h.s.Offer(child)
	h.s.Certified(childQC)
	for range 3 {
		h.block()
	}
	if h.chain.sent(child) != 0 {
		t.Fatal("child sent on the word of a forged parent QC")
	}
	// A parent never seen: the child waits until MaxAge, then fails.
	h.clock.Add(time.Minute + time.Second)
	h.block()
	ev := h.st.of(child.TxHash)
	if len(ev) != 1 || ev[0].stage != 0 || !strings.Contains(ev[0].reason, "waiting for parent QC "+parentQC.Hash.String()) {
		t.Fatalf("child events %s", h.st.describe(child.TxHash))
	}
	if got := testutil.ToFloat64(h.s.m.failed.WithLabelValues(FailExpired)); got != 1 {
		t.Fatalf("expired metric %v", got)
	}
}

func TestFailedParentReleasesChild(t *testing.T) {
	// A parent that reverted does not hold its child forever (the child's
	// sender would be stuck): the chain decides the child's fate.
	h := newHarness(t, Config{})
	parent, parentQC := fakePayment(0xa1, 0, nil, false)
	child, childQC := fakePayment(0xb0, 0, parentQC, false)
	for _, in := range []func(){func() { h.s.Offer(parent) }, func() { h.s.Certified(parentQC) }, func() { h.s.Offer(child) }, func() { h.s.Certified(childQC) }} {
		in()
	}
	h.pass()
	h.chain.include(parent, 0)
	h.block()
	if h.chain.sent(child) != 1 {
		t.Fatal("child of a reverted parent not sent")
	}
}

func TestReverted(t *testing.T) {
	h := newHarness(t, Config{})
	var included []uint64
	h.s.OnIncluded(func(_ qc.Hash, height uint64) { included = append(included, height) })
	p, q := fakePayment(0xa1, 0, nil, false)
	h.s.Offer(p)
	h.s.Certified(q)
	h.pass()
	block := h.chain.include(p, 0)
	h.block()
	wantEvents(t, h, p.TxHash, fmt.Sprintf("QUEUED_ONCHAIN INCLUDED@%d fail(reverted in block %d)", block, block))
	if got := testutil.ToFloat64(h.s.m.reverted); got != 1 {
		t.Fatalf("reverted metric %v", got)
	}
	if got := testutil.ToFloat64(h.s.m.failed.WithLabelValues(FailReverted)); got != 1 {
		t.Fatalf("failed{reverted} %v", got)
	}
	if h.s.Pending() != 0 || len(included) != 1 || included[0] != block {
		t.Fatalf("pending %d, OnIncluded %v", h.s.Pending(), included)
	}
	if !strings.Contains(h.logs.String(), "level=WARN") || !strings.Contains(h.logs.String(), "reverted in block") {
		t.Fatalf("no warning logged:\n%s", h.logs)
	}
}

func TestNonceUsedByAnotherTransaction(t *testing.T) {
	h := newHarness(t, Config{ReceiptRetries: 3})
	p, q := fakePayment(0xa1, 4, nil, false)
	h.chain.setNonce(p.Effects, 4)
	h.s.Offer(p)
	h.s.Certified(q)
	h.pass()
	// Another transaction takes nonce 4: the nonce passes, no receipt for ours.
	h.chain.setNonce(p.Effects, 5)
	for i := range 2 {
		h.block()
		h.pass() // a second pass at the same head does not count twice
		if len(h.st.of(p.TxHash)) != 1 {
			t.Fatalf("after %d heads without a receipt: %s", i+1, h.st.describe(p.TxHash))
		}
	}
	h.block()
	wantEvents(t, h, p.TxHash, "QUEUED_ONCHAIN fail(nonce used by another transaction)")
	if got := testutil.ToFloat64(h.s.m.failed.WithLabelValues(FailNonceUsed)); got != 1 {
		t.Fatalf("failed{nonce_used} %v", got)
	}
	if h.s.Pending() != 0 {
		t.Fatal("failed transaction still pending")
	}
}

func TestLateReceiptIsNotANonceFailure(t *testing.T) {
	// The node indexes the receipt a head after the nonce moved.
	h := newHarness(t, Config{ReceiptRetries: 3})
	p, q := fakePayment(0xa1, 0, nil, false)
	h.s.Offer(p)
	h.s.Certified(q)
	h.pass()
	h.chain.setNonce(p.Effects, 1)
	h.block()
	h.block()
	block := h.chain.include(p, 1)
	h.block()
	wantEvents(t, h, p.TxHash, fmt.Sprintf("QUEUED_ONCHAIN INCLUDED@%d FINALIZED@%d", block, block))
}

func TestQCOnlyFollowsNonce(t *testing.T) {
	// Without the raw bytes the settler never sends, but reports inclusion
	// from the nonce, at the head that showed it.
	h := newHarness(t, Config{})
	p, q := fakePayment(0xa1, 2, nil, false)
	h.s.Certified(q)
	h.block()
	if h.chain.sent(p) != 0 || len(h.st.of(p.TxHash)) != 0 {
		t.Fatal("a QC-only transaction was sent or staged")
	}
	h.chain.setNonce(p.Effects, 3)
	head := h.chain.advance(1)
	h.pass()
	wantEvents(t, h, p.TxHash, fmt.Sprintf("INCLUDED@%d FINALIZED@%d", head.Number, head.Number))
	if got := testutil.ToFloat64(h.s.m.included.WithLabelValues(includedNoRaw)); got != 1 {
		t.Fatalf("included{nonce_only} %v", got)
	}
}

func TestResend(t *testing.T) {
	h := newHarness(t, Config{ResendInterval: 5 * time.Second})
	p, q := fakePayment(0xa1, 0, nil, false)
	h.s.Offer(p)
	h.s.Certified(q)
	h.pass()
	for range 4 {
		h.clock.Add(time.Second)
		h.block()
	}
	if h.chain.sent(p) != 1 {
		t.Fatalf("sent %d times within the resend interval", h.chain.sent(p))
	}
	h.clock.Add(time.Second)
	h.block()
	if h.chain.sent(p) != 2 {
		t.Fatalf("sent %d times after the resend interval, want 2", h.chain.sent(p))
	}
	h.clock.Add(5 * time.Second)
	h.block()
	if h.chain.sent(p) != 3 {
		t.Fatalf("sent %d times, want 3", h.chain.sent(p))
	}
	wantEvents(t, h, p.TxHash, "QUEUED_ONCHAIN") // reported once
	if a, b := testutil.ToFloat64(h.s.m.sent.WithLabelValues(attemptFirst)), testutil.ToFloat64(h.s.m.sent.WithLabelValues(attemptResend)); a != 1 || b != 2 {
		t.Fatalf("sent metrics first=%v resend=%v", a, b)
	}
}

func TestPermanentRejection(t *testing.T) {
	h := newHarness(t, Config{})
	p, q := fakePayment(0xa1, 0, nil, false)
	h.chain.set(func(f *fakeChain) {
		f.sendErr = func(common.Hash) error { return rejected("invalid sender") }
	})
	h.s.Offer(p)
	h.s.Certified(q)
	h.pass()
	ev := h.st.of(p.TxHash)
	if len(ev) != 1 || ev[0].stage != 0 || !strings.Contains(ev[0].reason, "invalid sender") {
		t.Fatalf("events %s", h.st.describe(p.TxHash))
	}
	if got := testutil.ToFloat64(h.s.m.failed.WithLabelValues(FailRejected)); got != 1 {
		t.Fatalf("failed{rejected} %v", got)
	}
}

func TestTransientRejection(t *testing.T) {
	h := newHarness(t, Config{ResendInterval: 2 * time.Second})
	p, q := fakePayment(0xa1, 0, nil, false)
	h.chain.set(func(f *fakeChain) {
		f.sendErr = func(common.Hash) error { return rejected("replacement transaction underpriced") }
	})
	h.s.Offer(p)
	h.s.Certified(q)
	h.pass()
	h.block()
	if got := testutil.ToFloat64(h.s.m.sendErrors.WithLabelValues(sendTransient)); got != 1 {
		t.Fatalf("transient rejections %v, want 1 (retry waits for the resend interval)", got)
	}
	h.chain.set(func(f *fakeChain) { f.sendErr = nil })
	h.clock.Add(2 * time.Second)
	h.block()
	if h.chain.sent(p) != 1 {
		t.Fatal("not retried after a transient rejection")
	}
	wantEvents(t, h, p.TxHash, "QUEUED_ONCHAIN")
	for _, msg := range []string{"nonce too low", "txpool is full", "transaction underpriced"} {
		if !transientRejection(rejected(msg)) {
			t.Errorf("%q classified permanent", msg)
		}
	}
	for _, msg := range []string{"invalid sender", "intrinsic gas too low", "invalid chain id", "exceeds block gas limit"} {
		if transientRejection(rejected(msg)) {
			t.Errorf("%q classified transient", msg)
		}
	}
}

func TestChainUnavailable(t *testing.T) {
	h := newHarness(t, Config{MaxAge: time.Minute, ResendInterval: time.Second})
	p, q := fakePayment(0xa1, 0, nil, false)
	p2, q2 := fakePayment(0xa2, 0, nil, false)
	h.s.Offer(p)
	h.s.Certified(q)
	h.pass()
	// The node goes away in every way it can.
	h.chain.set(func(f *fakeChain) {
		f.latestErr = errDown
		f.sendErr = func(common.Hash) error { return errDown }
	})
	h.s.Offer(p2)
	h.s.Certified(q2)
	for range 3 {
		h.clock.Add(30 * time.Second) // well past MaxAge in total
		h.block()
	}
	h.chain.set(func(f *fakeChain) { f.latestErr, f.nonceErr = nil, errDown })
	h.block()
	h.chain.set(func(f *fakeChain) { f.nonceErr, f.receiptErr = nil, errDown })
	h.chain.include(p, 1)
	h.block()
	h.chain.set(func(f *fakeChain) { f.receiptErr = nil })
	h.block() // only sends fail now: p2 is due
	if got := h.logs.count(`msg="chain unavailable`); got != 1 {
		t.Fatalf("outage logged %d times, want once:\n%s", got, h.logs)
	}
	if testutil.ToFloat64(h.s.m.unavailable) != 1 {
		t.Fatal("unavailable gauge not set")
	}
	if h.s.Pending() != 1 || strings.Contains(h.st.describe(p.TxHash)+h.st.describe(p2.TxHash), "fail") {
		t.Fatalf("outage lost or failed transactions: pending %d, %s / %s", h.s.Pending(), h.st.describe(p.TxHash), h.st.describe(p2.TxHash))
	}
	if !strings.Contains(h.st.describe(p.TxHash), "FINALIZED") {
		t.Fatalf("p not finalized once receipts worked: %s", h.st.describe(p.TxHash))
	}
	// Back: p2 is sent and settles although older than MaxAge, because the
	// outage did not count.
	h.chain.set(func(f *fakeChain) { f.sendErr = nil })
	h.block()
	if h.chain.sent(p2) != 1 {
		t.Fatal("backlog not sent after the outage")
	}
	if h.logs.count("chain available again") != 1 || testutil.ToFloat64(h.s.m.unavailable) != 0 {
		t.Fatalf("recovery not logged once:\n%s", h.logs)
	}
	block := h.chain.include(p2, 1)
	h.block()
	wantEvents(t, h, p2.TxHash, fmt.Sprintf("QUEUED_ONCHAIN INCLUDED@%d FINALIZED@%d", block, block))
}

func TestMaxAge(t *testing.T) {
	h := newHarness(t, Config{MaxAge: time.Minute, ResendInterval: 10 * time.Second})
	p, q := fakePayment(0xa1, 0, nil, false)
	h.s.Offer(p)
	h.s.Certified(q)
	h.pass()
	h.clock.Add(time.Minute)
	h.block()
	if len(h.st.of(p.TxHash)) != 1 {
		t.Fatalf("failed before MaxAge: %s", h.st.describe(p.TxHash))
	}
	h.clock.Add(time.Second)
	h.block()
	wantEvents(t, h, p.TxHash, "QUEUED_ONCHAIN fail(not included within 1m0s)")
	if h.s.Pending() != 0 {
		t.Fatal("expired transaction still pending")
	}

	// An offered transaction that never gets a QC is forgotten silently.
	u, _ := fakePayment(0xa3, 0, nil, false)
	h.s.Offer(u)
	h.clock.Add(2 * time.Minute)
	h.block()
	if h.s.Pending() != 0 || h.s.rawBytes != 0 || len(h.st.of(u.TxHash)) != 0 {
		t.Fatalf("uncertified transaction: pending %d, raw %d, events %s", h.s.Pending(), h.s.rawBytes, h.st.describe(u.TxHash))
	}
	if got := testutil.ToFloat64(h.s.m.dropped.WithLabelValues(dropUncertified)); got != 1 {
		t.Fatalf("dropped{uncertified_expired} %v", got)
	}
}

func TestMaxPending(t *testing.T) {
	h := newHarness(t, Config{MaxPending: 2})
	a, qa := fakePayment(0xa1, 0, nil, false)
	b, _ := fakePayment(0xa2, 0, nil, false)
	c, qc3 := fakePayment(0xa3, 0, nil, false)
	d, qd := fakePayment(0xa4, 0, nil, false)
	h.s.Certified(qa)
	h.s.Offer(b) // no QC yet
	// Full: a new QC evicts the offered-only transaction.
	h.s.Certified(qc3)
	if h.s.Pending() != 2 || h.s.rawBytes != 0 {
		t.Fatalf("pending %d raw %d", h.s.Pending(), h.s.rawBytes)
	}
	if got := testutil.ToFloat64(h.s.m.dropped.WithLabelValues(dropEvicted)); got != 1 {
		t.Fatalf("dropped{evicted} %v", got)
	}
	// Full of certified transactions: refused and counted.
	h.s.Certified(qd)
	h.s.Offer(d)
	if h.s.Pending() != 2 {
		t.Fatalf("pending %d, want 2", h.s.Pending())
	}
	if got := testutil.ToFloat64(h.s.m.dropped.WithLabelValues(dropFull)); got != 2 {
		t.Fatalf("dropped{full} %v, want 2", got)
	}
	if got := h.logs.count("backlog full"); got != 1 {
		t.Fatalf("full logged %d times, want once per episode", got)
	}
	// Raw bytes for a tracked transaction are still taken.
	h.s.Offer(a)
	h.s.Offer(c)
	h.pass()
	if h.chain.sent(a) != 1 || h.chain.sent(c) != 1 {
		t.Fatal("tracked transactions not sent")
	}
	// Room again once one settles.
	h.chain.include(a, 1)
	h.block()
	h.s.Certified(qd)
	if h.s.Pending() != 2 {
		t.Fatalf("pending %d after room was made", h.s.Pending())
	}
	if gauge := testutil.ToFloat64(h.s.m.pending); gauge != 2 {
		t.Fatalf("pending gauge %v", gauge)
	}
	_ = b
}

func TestMaxRawBytes(t *testing.T) {
	a, qa := fakePayment(0xa1, 0, nil, false)
	b, qb := fakePayment(0xa2, 0, nil, false)
	h := newHarness(t, Config{MaxRawBytes: len(a.Tx.Raw) + len(b.Tx.Raw) - 1})
	h.s.Offer(a)
	h.s.Offer(b)
	if h.s.Pending() != 1 || h.s.rawBytes != len(a.Tx.Raw) {
		t.Fatalf("pending %d raw %d", h.s.Pending(), h.s.rawBytes)
	}
	if got := testutil.ToFloat64(h.s.m.dropped.WithLabelValues(dropBytes)); got != 1 {
		t.Fatalf("dropped{bytes} %v", got)
	}
	// b is still followed through its QC.
	h.s.Certified(qa)
	h.s.Certified(qb)
	h.pass()
	h.chain.include(a, 1)
	h.chain.setNonce(b.Effects, 1)
	h.block()
	if !strings.Contains(h.st.describe(b.TxHash), "FINALIZED") || h.s.rawBytes != 0 {
		t.Fatalf("b: %s, raw %d", h.st.describe(b.TxHash), h.s.rawBytes)
	}
}

func TestOfferMismatchingQC(t *testing.T) {
	h := newHarness(t, Config{})
	p, _ := fakePayment(0xa1, 0, nil, false)
	other := p.Effects
	other.Amount++
	q := fakeQC(p.TxHash, other, 0)
	h.s.Offer(p)
	h.s.Certified(q)
	h.pass()
	if h.chain.sent(p) != 0 {
		t.Fatal("sent bytes that do not match the certified effects")
	}
	if got := testutil.ToFloat64(h.s.m.dropped.WithLabelValues(dropMismatch)); got != 1 {
		t.Fatalf("dropped{mismatch} %v", got)
	}
	h.s.Offer(p) // refused again
	h.pass()
	if h.chain.sent(p) != 0 || h.s.rawBytes != 0 {
		t.Fatal("mismatching bytes accepted later")
	}
}

func TestStartStop(t *testing.T) {
	reg := prometheus.NewRegistry()
	ch := newFakeChain()
	st := &recStages{}
	s, err := New(Config{}, ch, st, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err == nil {
		t.Fatal("second Start succeeded")
	}
	p, q := fakePayment(0xa1, 0, nil, false)
	s.Offer(p)
	s.Certified(q) // wakes the loop: sent without waiting for a head
	testkit.Eventually(t, 10*time.Second, "first send", func() bool { return ch.sent(p) == 1 })
	block := ch.include(p, 1)
	ch.heads <- ch.advance(1)
	testkit.Eventually(t, 10*time.Second, "finality", func() bool {
		return strings.Contains(st.describe(p.TxHash), fmt.Sprintf("FINALIZED@%d", block))
	})
	if n, err := testutil.GatherAndCount(reg, "allegro_settlement_finalized_total", "allegro_settlement_sent_total"); err != nil || n != 2 {
		t.Fatalf("registered metrics: %d, %v", n, err)
	}
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(stopCtx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestFollowBoard(t *testing.T) {
	committee, signers := testCommittee(t)
	board, err := bulletin.New(bulletin.DefaultConfig(), committee, signers[0].ID(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, Config{})
	stop := h.s.FollowBoard(board)
	p, _ := fakePayment(0xa1, 0, nil, false)
	q := certify(t, committee, signers, &validator.Payment{TxHash: p.TxHash, Effects: p.Effects})
	board.AddQC(q)
	testkit.Eventually(t, 10*time.Second, "the board's QC to reach the settler", func() bool { return h.s.Pending() == 1 })
	stop()
	h.s.Offer(p)
	h.pass()
	if h.chain.sent(p) != 1 {
		t.Fatal("not sent")
	}
}

func TestConcurrentInputs(t *testing.T) {
	// Offers, QCs and passes race (run with -race).
	h := newHarness(t, Config{Workers: 4})
	var ps []*validator.Payment
	var qs []*qc.QC
	for i := range 64 {
		p, q := fakePayment(byte(i), 0, nil, false)
		ps, qs = append(ps, p), append(qs, q)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range ps {
			h.s.Offer(ps[i])
		}
	})
	wg.Go(func() {
		for i := range qs {
			h.s.Certified(qs[i])
		}
	})
	wg.Go(func() {
		for range 20 {
			h.block()
		}
	})
	wg.Wait()
	h.pass()
	for _, p := range ps {
		if h.chain.sent(p) != 1 {
			t.Fatalf("%s sent %d times", p.TxHash, h.chain.sent(p))
		}
		h.chain.include(p, 1)
	}
	h.block()
	if h.s.Pending() != 0 {
		t.Fatalf("%d still pending", h.s.Pending())
	}
}

func TestFIFOSet(t *testing.T) {
	f := newFIFOSet(3)
	for i := range 5 {
		f.add(qc.Hash{byte(i)})
		f.add(qc.Hash{byte(i)})
	}
	if f.len() != 3 || f.has(qc.Hash{0}) || f.has(qc.Hash{1}) || !f.has(qc.Hash{2}) || !f.has(qc.Hash{4}) {
		t.Fatalf("fifo set %v", f.members)
	}
}

func TestOutageEndsOnlyOnFreshAnswers(t *testing.T) {
	// While the node is down the client still answers reads cached at the
	// last head; those do not end the outage (no log flapping).
	h := newHarness(t, Config{})
	_, q := fakePayment(0xa1, 0, nil, false)
	h.s.Certified(q) // followed by nonce only: no sends
	h.pass()
	h.chain.set(func(f *fakeChain) { f.nonceErr = errDown })
	h.block()
	h.chain.set(func(f *fakeChain) { f.nonceErr = nil })
	// A new entry's read at the outage's head succeeds (as a cache would).
	_, q2 := fakePayment(0xa2, 0, nil, false)
	h.s.Certified(q2)
	h.pass()
	if testutil.ToFloat64(h.s.m.unavailable) != 1 || h.logs.count("chain available again") != 0 {
		t.Fatalf("outage ended on reads at the outage's head:\n%s", h.logs)
	}
	h.block()
	if testutil.ToFloat64(h.s.m.unavailable) != 0 || h.logs.count("chain available again") != 1 || h.logs.count(`msg="chain unavailable`) != 1 {
		t.Fatalf("outage not ended once by a new head:\n%s", h.logs)
	}
}
