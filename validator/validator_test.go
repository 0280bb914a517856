package validator

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
)

func wantReject(t *testing.T, err error, code fastpayv1.RejectCode) {
	t.Helper()
	var r *Reject
	if !errors.As(err, &r) {
		t.Fatalf("got %v, want reject %s", err, code)
	}
	if r.Code != code {
		t.Fatalf("got %s (%s), want %s", r.Code, r.Message, code)
	}
	if strings.TrimSpace(r.Message) == "" {
		t.Fatal("reject has no message")
	}
}

// TestRejectCodes starts from a valid Alice→Bob payment and applies one
// mutation per case; each must yield exactly its reject code.
func TestRejectCodes(t *testing.T) {
	type setup struct {
		c *cluster
		v *Validator
	}
	cases := []struct {
		name   string
		mutate func(s setup, p *payment)
		want   fastpayv1.RejectCode
	}{
		{"empty tempo_tx", func(_ setup, p *payment) {
			p.mutateTx = func(tx *fastpayv1.FastPayTx) { tx.TempoTx = nil }
		}, fastpayv1.RejectCode_INVALID_FORMAT},
		{"garbage tempo_tx", func(_ setup, p *payment) {
			p.mutateTx = func(tx *fastpayv1.FastPayTx) { tx.TempoTx.Data = []byte{0x02, 0xc0, 0x01} }
		}, fastpayv1.RejectCode_INVALID_FORMAT},
		{"oversized tempo_tx", func(_ setup, p *payment) {
			p.mutateTx = func(tx *fastpayv1.FastPayTx) { tx.TempoTx.Data = make([]byte, 128<<10+1) }
		}, fastpayv1.RejectCode_INVALID_FORMAT},
		{"format unspecified", func(_ setup, p *payment) {
			p.mutateTx = func(tx *fastpayv1.FastPayTx) { tx.TempoTxFormat = fastpayv1.TempoTxFormat_TEMPO_TX_FORMAT_UNSPECIFIED }
		}, fastpayv1.RejectCode_INVALID_FORMAT},
		{"EVM bytes declared as Tempo native", func(_ setup, p *payment) {
			p.mutateTx = func(tx *fastpayv1.FastPayTx) { tx.TempoTxFormat = fastpayv1.TempoTxFormat_TEMPO_NATIVE_V1 }
		}, fastpayv1.RejectCode_INVALID_FORMAT},
		{"EVM tx with a nonzero nonce key", func(_ setup, p *payment) {
			p.mutateTx = func(tx *fastpayv1.FastPayTx) { tx.Nonce.NonceKeyBe[31] = 1 }
		}, fastpayv1.RejectCode_INVALID_FORMAT},
		{"nonce_seq differs from EVM nonce", func(_ setup, p *payment) {
			p.mutateTx = func(tx *fastpayv1.FastPayTx) { tx.Nonce.NonceSeq = 1 }
		}, fastpayv1.RejectCode_INVALID_FORMAT},
		{"nonce key of 31 bytes", func(_ setup, p *payment) {
			p.mutateTx = func(tx *fastpayv1.FastPayTx) { tx.Nonce.NonceKeyBe = make([]byte, 31) }
		}, fastpayv1.RejectCode_INVALID_FORMAT},
		{"missing expiry", func(_ setup, p *payment) { p.expiry = nil }, fastpayv1.RejectCode_INVALID_FORMAT},
		{"overlay amount differs", func(_ setup, p *payment) {
			p.mutateTx = func(tx *fastpayv1.FastPayTx) { tx.Overlay.Payment.Amount++ }
		}, fastpayv1.RejectCode_INVALID_FORMAT},
		{"overlay sender is not the signer", func(_ setup, p *payment) {
			p.mutateTx = func(tx *fastpayv1.FastPayTx) { tx.Overlay.Payment.Sender.Data = carol[:] }
		}, fastpayv1.RejectCode_INVALID_FORMAT},
		{"intent recipient differs", func(_ setup, p *payment) {
			p.mutateTx = func(tx *fastpayv1.FastPayTx) {
				tx.Intent = &fastpayv1.PaymentIntent{Recipient: &fastpayv1.Address{Data: carol[:]}, Amount: 10_000_000}
			}
		}, fastpayv1.RejectCode_INVALID_FORMAT},
		{"amount above u64", func(_ setup, p *payment) {
			p.amount = new(big.Int).Lsh(big.NewInt(1), 64)
		}, fastpayv1.RejectCode_INVALID_FORMAT},
		{"parent_qc_hash of 5 bytes", func(_ setup, p *payment) { p.parentHash = []byte{1, 2, 3, 4, 5} }, fastpayv1.RejectCode_INVALID_FORMAT},
		{"client_request_id reused for another tx", func(s setup, p *payment) {
			first := pay(aliceKey, 0, carol, dollars(1))
			first.requestID = "req-1"
			_, _ = s.v.Submit(context.Background(), first.request(t))
			p.requestID = "req-1"
		}, fastpayv1.RejectCode_INVALID_FORMAT},
		{"chain_id field of another chain", func(_ setup, p *payment) {
			p.mutateTx = func(tx *fastpayv1.FastPayTx) { tx.ChainId.Value = 4217 }
		}, fastpayv1.RejectCode_WRONG_CHAIN},
		{"tx signed for another chain", func(_ setup, p *payment) { p.chainID = 4217 }, fastpayv1.RejectCode_WRONG_CHAIN},
		{"expired by block height", func(s setup, p *payment) {
			p.expiry = &fastpayv1.Expiry{Kind: &fastpayv1.Expiry_MaxBlockHeight{MaxBlockHeight: 10}}
		}, fastpayv1.RejectCode_EXPIRED},
		{"expired by time", func(_ setup, p *payment) {
			p.expiry = &fastpayv1.Expiry{Kind: &fastpayv1.Expiry_UnixMillis{UnixMillis: uint64(time.Now().Add(-time.Second).UnixMilli())}}
		}, fastpayv1.RejectCode_EXPIRED},
		{"call to a non-TIP-20 contract", func(_ setup, p *payment) {
			p.to = common.HexToAddress("0x1111111111111111111111111111111111111111")
		}, fastpayv1.RejectCode_NOT_PAYMENT_TX},
		{"approve instead of transfer", func(_ setup, p *payment) {
			p.calldata = transferCalldata(bob, dollars(10))
			copy(p.calldata, []byte{0x09, 0x5e, 0xa7, 0xb3})
		}, fastpayv1.RejectCode_NOT_PAYMENT_TX},
		{"nonzero value", func(_ setup, p *payment) { p.value = big.NewInt(1) }, fastpayv1.RejectCode_NOT_PAYMENT_TX},
		{"nonce below the chain's", func(s setup, p *payment) {
			s.c.chain.SetNonce(alice, [32]byte{}, 1)
		}, fastpayv1.RejectCode_NONCE_SEQ_TOO_LOW},
		{"nonce ahead of the chain's", func(_ setup, p *payment) { p.nonce = 1 }, fastpayv1.RejectCode_NONCE_SEQ_TOO_HIGH},
		{"conflicting tx for a signed key", func(s setup, p *payment) {
			if _, err := s.v.Submit(context.Background(), pay(aliceKey, 0, carol, dollars(1)).request(t)); err != nil {
				t.Fatal(err)
			}
		}, fastpayv1.RejectCode_EQUIVOCATION},
		{"more than the balance", func(_ setup, p *payment) { p.amount = dollars(16) }, fastpayv1.RejectCode_INSUFFICIENT_FUNDS},
		{"unknown parent QC", func(_ setup, p *payment) { p.parentHash = make([]byte, 32) }, fastpayv1.RejectCode_MISSING_PARENT_QC},
		{"forged parent QC", func(s setup, p *payment) {
			parent := s.c.certify(t, pay(bobKey, 0, alice, dollars(1)).request(t))
			parent.Certs[0].Signature[0] ^= 1
			parent.Hash = qc.ComputeQCHash(parent.TxHash, parent.EffectsHash, parent.Threshold, parent.Certs)
			p.parents = []*fastpayv1.QuorumCertificate{fastpayv1.NewQuorumCertificate(parent)}
			p.parentHash = parent.Hash[:]
		}, fastpayv1.RejectCode_INVALID_PARENT_QC},
		{"below-quorum parent QC", func(s setup, p *payment) {
			parent := s.c.certify(t, pay(bobKey, 0, alice, dollars(1)).request(t))
			parent.Certs = parent.Certs[:1]
			parent.Hash = qc.ComputeQCHash(parent.TxHash, parent.EffectsHash, parent.Threshold, parent.Certs)
			p.parents = []*fastpayv1.QuorumCertificate{fastpayv1.NewQuorumCertificate(parent)}
		}, fastpayv1.RejectCode_INVALID_PARENT_QC},
		{"chain unavailable", func(s setup, _ *payment) {
			s.c.chain.FailWith(errors.New("connection refused"))
		}, fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 4)
			s := setup{c: c, v: c.validator(t, 0, "")}
			p := pay(aliceKey, 0, bob, dollars(10))
			tc.mutate(s, p)
			_, err := s.v.Submit(context.Background(), p.request(t))
			wantReject(t, err, tc.want)
		})
	}
}

func TestValidPaymentIsCertified(t *testing.T) {
	c := newCluster(t, 4)
	v := c.validator(t, 0, "")
	req := pay(aliceKey, 0, bob, dollars(10)).request(t)
	cert, err := v.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.committee.VerifyCertificate(&cert); err != nil {
		t.Fatalf("certificate does not verify: %v", err)
	}
	if cert.Effects.Sender != qc.Address(alice) || cert.Effects.Recipient != qc.Address(bob) || cert.Effects.Amount != 10_000_000 {
		t.Fatalf("effects %+v", cert.Effects)
	}
	// Resubmitting the same transaction is idempotent.
	again, err := v.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if again.Signature != cert.Signature {
		t.Fatal("resubmission produced a different certificate")
	}
	// The debit and the first payment's maximum fee are pending: Alice has
	// 5 dollars less one fee left, and the next payment needs its own fee on
	// top of its amount. One unit more than fits is refused.
	_, err = v.Submit(context.Background(), pay(aliceKey, 1, carol, dollarsLess(5, 2*testFee-1)).request(t))
	wantReject(t, err, fastpayv1.RejectCode_INSUFFICIENT_FUNDS)
	if _, err := v.Submit(context.Background(), pay(aliceKey, 1, carol, dollarsLess(5, 2*testFee)).request(t)); err != nil {
		t.Fatal(err)
	}
}

// TestChainedPaymentCreditsOnce: Bob spends funds received from Alice using
// the parent QC, on a validator that never saw Alice's payment; presenting
// the same QC twice credits once.
func TestChainedPaymentCreditsOnce(t *testing.T) {
	c := newCluster(t, 4)
	v := c.validator(t, 3, "")
	parent := c.certify(t, pay(aliceKey, 0, bob, dollars(10)).request(t))
	wire := fastpayv1.NewQuorumCertificate(parent)

	child := pay(bobKey, 0, carol, dollarsLess(15, testFee)) // Bob's 5 + 10 received, less the fee
	child.parents = []*fastpayv1.QuorumCertificate{wire}
	child.parentHash = parent.Hash[:]
	if _, err := v.Submit(context.Background(), child.request(t)); err != nil {
		t.Fatalf("chained payment: %v", err)
	}
	// The same QC again does not credit Bob a second time.
	next := pay(bobKey, 1, carol, dollars(1))
	next.parents = []*fastpayv1.QuorumCertificate{wire, wire}
	next.parentHash = parent.Hash[:]
	_, err := v.Submit(context.Background(), next.request(t))
	wantReject(t, err, fastpayv1.RejectCode_INSUFFICIENT_FUNDS)
}

func TestPruneClearsSettledOverlay(t *testing.T) {
	c := newCluster(t, 4)
	v := c.validator(t, 0, "")
	parent := c.certify(t, pay(aliceKey, 0, bob, dollars(10)).request(t))
	if err := v.LearnQC(parent); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Submit(context.Background(), pay(aliceKey, 0, bob, dollars(10)).request(t)); err != nil {
		t.Fatal(err)
	}
	if o := v.OverlayOf(qc.Address(alice)); len(o.Debits) != 1 {
		t.Fatalf("alice overlay %+v", o)
	}
	if o := v.OverlayOf(qc.Address(bob)); len(o.Credits) != 1 {
		t.Fatalf("bob overlay %+v", o)
	}
	// Nothing settled yet.
	if d, cr, err := v.Prune(context.Background()); err != nil || d != 0 || cr != 0 {
		t.Fatalf("prune before settlement: %d %d %v", d, cr, err)
	}
	// The chain includes the payment: nonce passes, balances move.
	c.chain.SetNonce(alice, [32]byte{}, 1)
	c.chain.SetBalance(token, alice, dollars(5))
	c.chain.SetBalance(token, bob, dollars(15))
	c.chain.SetHead(11)
	if d, cr, err := v.Prune(context.Background()); err != nil || d != 1 || cr != 1 {
		t.Fatalf("prune after settlement: %d %d %v", d, cr, err)
	}
	if o := v.OverlayOf(qc.Address(alice)); len(o.Debits) != 0 {
		t.Fatalf("alice overlay after settlement %+v", o)
	}
	if o := v.OverlayOf(qc.Address(bob)); len(o.Credits) != 0 {
		t.Fatalf("bob overlay after settlement %+v", o)
	}
	// Available funds are the chain's: Bob can spend exactly 15, fee included.
	_, err := v.Submit(context.Background(), pay(bobKey, 0, carol, dollarsLess(15, testFee-1)).request(t))
	wantReject(t, err, fastpayv1.RejectCode_INSUFFICIENT_FUNDS)
	if _, err := v.Submit(context.Background(), pay(bobKey, 0, carol, dollarsLess(15, testFee)).request(t)); err != nil {
		t.Fatal(err)
	}
}

// TestSettledDebitNotDoubleCounted: once the chain's balance reflects a
// payment (nonce passed), its debit no longer counts even before Prune runs.
func TestSettledDebitNotDoubleCounted(t *testing.T) {
	c := newCluster(t, 4)
	v := c.validator(t, 0, "")
	if _, err := v.Submit(context.Background(), pay(aliceKey, 0, bob, dollars(10)).request(t)); err != nil {
		t.Fatal(err)
	}
	c.chain.SetNonce(alice, [32]byte{}, 1)
	c.chain.SetBalance(token, alice, dollars(5))
	if _, err := v.Submit(context.Background(), pay(aliceKey, 1, bob, dollarsLess(5, testFee)).request(t)); err != nil {
		t.Fatalf("available should be the settled balance 5: %v", err)
	}
}

func TestStateSurvivesRestart(t *testing.T) {
	c := newCluster(t, 4)
	dir := t.TempDir()
	v := c.validator(t, 0, dir)
	parent := c.certify(t, pay(carolKey, 0, alice, dollars(2)).request(t))
	if err := v.LearnQC(parent); err != nil {
		t.Fatal(err)
	}
	first := pay(aliceKey, 0, bob, dollars(12)).request(t)
	cert, err := v.Submit(context.Background(), first)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.store.Close(); err != nil {
		t.Fatal(err)
	}

	v2 := c.validator(t, 0, dir)
	// The guard survived: a conflicting tx is refused, the same tx returns
	// the same certificate.
	_, err = v2.Submit(context.Background(), pay(aliceKey, 0, carol, dollars(1)).request(t))
	wantReject(t, err, fastpayv1.RejectCode_EQUIVOCATION)
	again, err := v2.Submit(context.Background(), first)
	if err != nil || again.Signature != cert.Signature {
		t.Fatalf("idempotent replay after restart: %v", err)
	}
	// The debit (12), its reserved fee and the credit (2) survived:
	// 15 − 12 − fee + 2 available, of which the next payment's fee is
	// reserved too. Had the first fee been lost, one unit more would fit.
	_, err = v2.Submit(context.Background(), pay(aliceKey, 1, carol, dollarsLess(5, 2*testFee-1)).request(t))
	wantReject(t, err, fastpayv1.RejectCode_INSUFFICIENT_FUNDS)
	if _, err := v2.Submit(context.Background(), pay(aliceKey, 1, carol, dollarsLess(5, 2*testFee)).request(t)); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidateNamesField(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range []struct {
		field  string
		mutate func(*Config)
	}{
		{"max_credits", func(c *Config) { c.MaxCredits = 0 }},
		{"max_qc_hashes", func(c *Config) { c.MaxQCHashes = 0 }},
		{"group_commit_window", func(c *Config) { c.GroupCommitWindow = -time.Millisecond }},
		{"group_commit_window", func(c *Config) { c.GroupCommitWindow = time.Second }},
	} {
		cfg := DefaultConfig()
		tc.mutate(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: Validate = %v", tc.field, err)
		}
	}
}

// TestAnnounceOnlyAcceptedPayments: the entry shares a transaction (the
// announce hook) only when it is about to sign it, exactly once.
func TestAnnounceOnlyAcceptedPayments(t *testing.T) {
	c := newCluster(t, 4)
	v := c.validator(t, 0, "")
	submit := func(req *fastpayv1.SubmitFastPayRequest) (int, error) {
		t.Helper()
		p, err := v.Decode(req)
		if err != nil {
			t.Fatal(err)
		}
		calls := 0
		_, err = v.SubmitAndAnnounce(context.Background(), p, func() { calls++ })
		return calls, err
	}
	req := pay(aliceKey, 0, bob, dollars(10)).request(t)
	if calls, err := submit(req); err != nil || calls != 1 {
		t.Fatalf("accepted payment: announce called %d times, err %v; want once", calls, err)
	}
	if calls, err := submit(req); err != nil || calls != 0 {
		t.Fatalf("repeat of a signed payment: announce called %d times, err %v; want none", calls, err)
	}
	calls, err := submit(pay(aliceKey, 1, carol, dollars(6)).request(t))
	wantReject(t, err, fastpayv1.RejectCode_INSUFFICIENT_FUNDS)
	if calls != 0 {
		t.Fatalf("refused payment announced %d times", calls)
	}
	calls, err = submit(pay(aliceKey, 0, carol, dollars(1)).request(t))
	wantReject(t, err, fastpayv1.RejectCode_EQUIVOCATION)
	if calls != 0 {
		t.Fatalf("conflicting payment announced %d times", calls)
	}
}

// TestNoCreditAfterSettlement: a QC re-presented as a parent after its
// transaction settled adds no credit — not after the credit was pruned, and
// not after a restart. The chain's balance already holds the payment; a
// credit on top would let the recipient spend it twice.
func TestNoCreditAfterSettlement(t *testing.T) {
	c := newCluster(t, 4)
	dir := t.TempDir()
	v := c.validator(t, 0, dir)
	parent := c.certify(t, pay(aliceKey, 0, bob, dollars(10)).request(t))
	wire := fastpayv1.NewQuorumCertificate(parent)
	if err := v.LearnQC(parent); err != nil {
		t.Fatal(err)
	}
	// The chain includes Alice's payment: Bob holds 15 on chain.
	c.chain.SetNonce(alice, [32]byte{}, 1)
	c.chain.SetBalance(token, alice, dollars(5))
	c.chain.SetBalance(token, bob, dollars(15))
	c.chain.SetHead(11)
	if _, cr, err := v.Prune(context.Background()); err != nil || cr != 1 {
		t.Fatalf("prune: %d credits, %v", cr, err)
	}
	replay := func(v *Validator, nonce uint64) {
		t.Helper()
		// 15 on chain, less the fee: 10 more would count the credit again.
		over := pay(bobKey, nonce, carol, dollarsLess(15, testFee-1))
		over.parents, over.parentHash = []*fastpayv1.QuorumCertificate{wire}, parent.Hash[:]
		_, err := v.Submit(context.Background(), over.request(t))
		wantReject(t, err, fastpayv1.RejectCode_INSUFFICIENT_FUNDS)
		if o := v.OverlayOf(qc.Address(bob)); len(o.Credits) > 1 {
			t.Fatalf("credits %+v", o.Credits)
		}
	}
	replay(v, 0)
	if err := v.store.Close(); err != nil {
		t.Fatal(err)
	}
	v = c.validator(t, 0, dir)
	replay(v, 0)
	// What Bob has on chain he can spend, with the old QC as parent.
	ok := pay(bobKey, 0, carol, dollarsLess(15, testFee))
	ok.parents, ok.parentHash = []*fastpayv1.QuorumCertificate{wire}, parent.Hash[:]
	if _, err := v.Submit(context.Background(), ok.request(t)); err != nil {
		t.Fatal(err)
	}
}

// TestParentByAnyQCOfItsTransaction: QCs of one transaction by different
// signer subsets have different qc_hash; a child naming one that this
// validator verified is accepted even when the transaction's credit came
// from another.
func TestParentByAnyQCOfItsTransaction(t *testing.T) {
	c := newCluster(t, 4)
	v := c.validatorWith(t, 0, "", DefaultConfig())
	req := pay(aliceKey, 0, bob, dollars(10)).request(t)
	first := c.certifyBy(t, req, c.signers[0], c.signers[1], c.signers[2])
	second := c.certifyBy(t, req, c.signers[1], c.signers[2], c.signers[3])
	if first.Hash == second.Hash {
		t.Fatal("the subsets must differ")
	}
	for _, q := range []*qc.QC{first, second} {
		if err := v.LearnQC(q); err != nil {
			t.Fatal(err)
		}
	}
	for i, q := range []*qc.QC{second, first} {
		child := pay(bobKey, uint64(i), carol, dollars(1))
		child.parentHash = q.Hash[:] // named, not carried
		if _, err := v.Submit(context.Background(), child.request(t)); err != nil {
			t.Fatalf("child naming QC %d: %v", i, err)
		}
	}
	// A QC never verified here is still missing.
	child := pay(bobKey, 2, carol, dollars(1))
	child.parentHash = make([]byte, 32)
	child.parentHash[0] = 1
	_, err := v.Submit(context.Background(), child.request(t))
	wantReject(t, err, fastpayv1.RejectCode_MISSING_PARENT_QC)
}

// nonceCounter counts the nonce reads of the views it hands out, per
// account.
type nonceCounter struct {
	tempo.ChainReader
	mu    sync.Mutex
	reads map[common.Address]int
}

type countedView struct {
	tempo.ChainView
	c *nonceCounter
}

func (n *nonceCounter) Latest(ctx context.Context) (tempo.ChainView, error) {
	v, err := n.ChainReader.Latest(ctx)
	if err != nil {
		return nil, err
	}
	return countedView{v, n}, nil
}

func (v countedView) NonceOf(ctx context.Context, account common.Address, key [32]byte) (uint64, error) {
	v.c.mu.Lock()
	v.c.reads[account]++
	v.c.mu.Unlock()
	return v.ChainView.NonceOf(ctx, account, key)
}

func (n *nonceCounter) take(account common.Address) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	r := n.reads[account]
	n.reads = map[common.Address]int{}
	return r
}

// TestFundsWithManyPendingDebits: an account with many unsettled payments
// on one nonce key costs a funds check, a conflict check and a prune one
// nonce read, however many are pending, and its funds are exact when some
// of them have settled.
func TestFundsWithManyPendingDebits(t *testing.T) {
	c := newCluster(t, 4)
	counter := &nonceCounter{ChainReader: c.chain, reads: map[common.Address]int{}}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := OpenStore(t.TempDir(), DefaultGroupCommitWindow, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	v, err := New(DefaultConfig(), c.signers[0], c.committee, counter, store, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	// Bob's 5 dollars and a credit of 10 from Alice.
	parent := c.certify(t, pay(aliceKey, 0, bob, dollars(10)).request(t))
	if err := v.LearnQC(parent); err != nil {
		t.Fatal(err)
	}
	const pending = 40
	// The first payment finds nothing pending; from the second on, each
	// finds one more, on the same nonce key.
	var readsSecond int
	for i := range pending {
		counter.take(bob)
		if _, err := v.Submit(context.Background(), pay(bobKey, uint64(i), carol, big.NewInt(1000)).request(t)); err != nil {
			t.Fatalf("payment %d: %v", i, err)
		}
		reads := counter.take(bob)
		switch {
		case i == 1:
			readsSecond = reads
		case i > 1 && reads != readsSecond:
			t.Fatalf("payment %d read Bob's nonce %d times, the second %d: the count must not grow with pending payments", i, reads, readsSecond)
		}
	}
	// Half of them settle: the chain shows Bob's nonce and balance after them.
	const settled = pending / 2
	c.chain.SetNonce(bob, [32]byte{}, settled)
	c.chain.SetBalance(token, bob, new(big.Int).Sub(dollars(5), big.NewInt(settled*(1000+testFee))))
	// A conflict check of Bob's next transaction reads his nonce once too.
	counter.take(bob)
	if _, err := v.CheckConflict(context.Background(), pay(bobKey, pending, carol, big.NewInt(1)).rawTx(t)); err != nil {
		t.Fatal(err)
	}
	if reads := counter.take(bob); reads != 1 {
		t.Fatalf("a conflict check read Bob's nonce %d times with %d payments pending on one key, want once", reads, pending)
	}
	c.chain.SetHead(11)
	if d, _, err := v.Prune(context.Background()); err != nil || d != settled {
		t.Fatalf("prune dropped %d debits (%v), want %d", d, err, settled)
	}
	if reads := counter.take(bob); reads != 1 {
		t.Fatalf("prune read Bob's nonce %d times for %d payments on one key, want once", reads, pending)
	}
	// Available: the chain's balance, less the unsettled half and its fees,
	// plus Alice's 10; the next payment reserves its own fee.
	left := new(big.Int).Sub(dollars(15), big.NewInt(settled*(1000+testFee)))
	left.Sub(left, big.NewInt((pending-settled)*(1000+testFee)))
	left.Sub(left, big.NewInt(testFee))
	_, err = v.Submit(context.Background(), pay(bobKey, pending, carol, new(big.Int).Add(left, big.NewInt(1))).request(t))
	wantReject(t, err, fastpayv1.RejectCode_INSUFFICIENT_FUNDS)
	if _, err := v.Submit(context.Background(), pay(bobKey, pending, carol, left).request(t)); err != nil {
		t.Fatalf("paying exactly what is available: %v", err)
	}
}

// TestForgottenQCHash: the set of verified QC hashes is bounded
// (max_qc_hashes); a QC pushed out of it is still known while its credit
// is pending, and a QC of the same payment presented again after being
// forgotten is verified again and credits nothing more.
func TestForgottenQCHash(t *testing.T) {
	c := newCluster(t, 4)
	cfg := DefaultConfig()
	cfg.MaxQCHashes = 1 // remembers the last hash, holds at most two
	v := c.validatorWith(t, 3, "", cfg)

	// Four QCs of one payment, by different signer subsets: the first
	// learned credits Bob; the last two push the first two out.
	req := pay(aliceKey, 0, bob, dollars(10)).request(t)
	s := c.signers
	first := c.certifyBy(t, req, s[0], s[1], s[2])
	other := c.certifyBy(t, req, s[1], s[2], s[3])
	for _, q := range []*qc.QC{first, other, c.certifyBy(t, req, s[0], s[2], s[3]), c.certifyBy(t, req, s[0], s[1], s[3])} {
		if err := v.LearnQC(q); err != nil {
			t.Fatal(err)
		}
	}
	if !v.KnowsQC(first.Hash) {
		t.Error("the QC of a pending credit is no longer known")
	}
	if v.KnowsQC(other.Hash) {
		t.Fatal("max_qc_hashes does not bound the set: a pushed-out QC is still known")
	}

	// A child carrying the forgotten QC as its parent: a corrupted copy is
	// rejected (verified, not waved through), the real one is verified
	// again and accepted, and Bob is credited the 10 once.
	child := pay(bobKey, 0, carol, dollarsLess(15, testFee))
	child.parentHash = other.Hash[:]
	corrupt := fastpayv1.NewQuorumCertificate(other)
	corrupt.Certs[0].Signature[0] ^= 1
	child.parents = []*fastpayv1.QuorumCertificate{corrupt}
	_, err := v.Submit(context.Background(), child.request(t))
	wantReject(t, err, fastpayv1.RejectCode_INVALID_PARENT_QC)
	child.parents = []*fastpayv1.QuorumCertificate{fastpayv1.NewQuorumCertificate(other)}
	if _, err := v.Submit(context.Background(), child.request(t)); err != nil {
		t.Fatalf("child of a forgotten QC: %v", err)
	}
	if !v.KnowsQC(other.Hash) {
		t.Error("a parent verified again is not remembered")
	}
	next := pay(bobKey, 1, carol, dollars(1))
	next.parentHash = first.Hash[:]
	_, err = v.Submit(context.Background(), next.request(t))
	wantReject(t, err, fastpayv1.RejectCode_INSUFFICIENT_FUNDS)
}
