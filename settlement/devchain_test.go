package settlement

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/bulletin"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo/chain"
	"github.com/allegro-mesh/allegro/tempo/devchain"
	"github.com/allegro-mesh/allegro/tempo/devkit"
	"github.com/allegro-mesh/allegro/validator"
)

var testDomain = qc.Domain{ChainID: devchain.DefaultChainID, Epoch: 1}

// testCommittee returns a 4-member committee with deterministic keys.
func testCommittee(t *testing.T) (*qc.Committee, []*qc.Signer) {
	t.Helper()
	var signers []*qc.Signer
	var members []qc.Member
	for i := range 4 {
		seed := make([]byte, ed25519.SeedSize)
		copy(seed, fmt.Sprintf("settlement-test-validator-%d", i))
		s := qc.NewSigner(ed25519.NewKeyFromSeed(seed), fmt.Sprintf("v%d", i), testDomain)
		signers = append(signers, s)
		members = append(members, qc.Member{Name: s.Name(), ID: s.ID()})
	}
	c, err := qc.NewCommittee(testDomain, members)
	if err != nil {
		t.Fatal(err)
	}
	return c, signers
}

// certify has a quorum of signers certify p and returns the verified QC.
func certify(t *testing.T, c *qc.Committee, signers []*qc.Signer, p *validator.Payment) *qc.QC {
	t.Helper()
	a := qc.NewAssembler(c, p.TxHash, p.Effects.Hash())
	now := uint64(time.Now().UnixMilli())
	for _, s := range signers[:c.Quorum()] {
		if _, err := a.Add(s.Sign(p.TxHash, p.Effects, now)); err != nil {
			t.Fatal(err)
		}
	}
	q, err := a.Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.VerifyQC(q); err != nil {
		t.Fatal(err)
	}
	return q
}

// devEnv is a sidecar's settlement path against a real dev chain: the
// chain client, a bulletin board fed QCs, and a settler following it.
type devEnv struct {
	t         *testing.T
	dcCfg     devchain.Config
	dc        *devchain.Chain
	client    *chain.Client
	board     *bulletin.Board
	s         *Settler
	logs      *lockedBuffer
	committee *qc.Committee
	signers   []*qc.Signer
	alice     devkit.Account
	bob       devkit.Account
	carol     devkit.Account
}

func newDevEnv(t *testing.T, dcCfg devchain.Config) *devEnv {
	t.Helper()
	env := &devEnv{t: t, dcCfg: dcCfg, logs: &lockedBuffer{}}
	env.dc = testkit.StartDevChain(t, dcCfg)
	demo := devkit.DemoAccounts()
	env.alice, env.bob, env.carol = demo[0], demo[1], demo[2]
	logger := slog.New(slog.NewTextHandler(env.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))

	var err error
	env.client, err = chain.New(chain.Config{
		URL: env.dc.WSEndpoint(), ExpectedChainID: devchain.DefaultChainID,
		PollInterval: 50 * time.Millisecond, RequestTimeout: 2 * time.Second,
		BackoffMin: 50 * time.Millisecond, BackoffMax: 400 * time.Millisecond,
	}, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := env.client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.client.Stop(context.Background()) })

	env.committee, env.signers = testCommittee(t)
	env.board, err = bulletin.New(bulletin.DefaultConfig(), env.committee, env.signers[0].ID(), nil, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.board.Stop(context.Background()) })

	env.s, err = New(Config{ResendInterval: 500 * time.Millisecond}, env.client, env.board, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	// The sidecar's wiring: every QC the board learns is certified here.
	stopFollow := env.s.FollowBoard(env.board)
	if err := env.s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := env.s.Stop(ctx); err != nil {
			t.Error(err)
		}
		stopFollow()
	})
	return env
}

// pay builds a certified FastPay payment: an EIP-1559 token transfer signed
// by from, wrapped as a FastPay request (EVM_OPAQUE_BYTES_V1, nonce key 0),
// decoded by the validator's stage 1, and certified by a quorum. A parent QC
// is named and carried in the request.
func (env *devEnv) pay(from devkit.Account, nonce uint64, to devkit.Account, dollars int64, parent *qc.QC) (*validator.Payment, *qc.QC) {
	t := env.t
	t.Helper()
	tx, err := devkit.SignTransfer(from.Key, nonce, to.Address, big.NewInt(dollars*devkit.Dollar), env.dc.ChainID(), 0, devkit.Fees{})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := tx.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	req := &fastpayv1.SubmitFastPayRequest{Tx: &fastpayv1.FastPayTx{
		ChainId:       &fastpayv1.ChainId{Value: devchain.DefaultChainID},
		TempoTx:       &fastpayv1.TempoTxBytes{Data: raw},
		Nonce:         &fastpayv1.Nonce2D{NonceKeyBe: make([]byte, 32), NonceSeq: nonce},
		Expiry:        &fastpayv1.Expiry{Kind: &fastpayv1.Expiry_MaxBlockHeight{MaxBlockHeight: 1_000_000}},
		TempoTxFormat: fastpayv1.TempoTxFormat_EVM_OPAQUE_BYTES_V1,
	}}
	if parent != nil {
		req.Tx.ParentQcHash = parent.Hash[:]
		req.ParentQcs = []*fastpayv1.QuorumCertificate{fastpayv1.NewQuorumCertificate(parent)}
	}
	p, err := validator.Decode(req, testDomain, 8)
	if err != nil {
		t.Fatal(err)
	}
	if p.Tx.TxHash != tx.Hash() {
		t.Fatalf("decoded chain hash %s, signed %s", p.Tx.TxHash, tx.Hash())
	}
	return p, certify(t, env.committee, env.signers, p)
}

// give hands a certified payment to the sidecar: the QC to the board (which
// the settler follows) and the raw payment to the settler.
func (env *devEnv) give(p *validator.Payment, q *qc.QC) {
	env.board.AddQC(q)
	env.s.Offer(p)
}

func (env *devEnv) status(tx qc.Hash) bulletin.TxStatus {
	st, _ := env.board.Status(tx)
	return st
}

func (env *devEnv) waitStage(tx qc.Hash, stage fastpayv1.TxLifecycleUpdate_Stage, timeout time.Duration) bulletin.TxStatus {
	env.t.Helper()
	testkit.Eventually(env.t, timeout, fmt.Sprintf("%s of %s", stage, tx), func() bool { return env.status(tx).Stage >= stage })
	return env.status(tx)
}

func (env *devEnv) balance(a devkit.Account) int64 {
	env.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := env.client.Latest(ctx)
	if err != nil {
		env.t.Fatal(err)
	}
	b, err := v.BalanceOf(ctx, devkit.TokenAddress, a.Address)
	if err != nil {
		env.t.Fatal(err)
	}
	return b.Int64()
}

func (env *devEnv) nonce(a devkit.Account) uint64 {
	env.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := env.client.Latest(ctx)
	if err != nil {
		env.t.Fatal(err)
	}
	n, err := v.NonceOf(ctx, a.Address, [32]byte{})
	if err != nil {
		env.t.Fatal(err)
	}
	return n
}

func (env *devEnv) wantBalances(alice, bob, carol int64) {
	env.t.Helper()
	got := [3]int64{env.balance(env.alice), env.balance(env.bob), env.balance(env.carol)}
	want := [3]int64{alice * devkit.Dollar, bob * devkit.Dollar, carol * devkit.Dollar}
	if got != want {
		env.t.Fatalf("balances alice/bob/carol = %v, want %v", got, want)
	}
}

func hasStage(st bulletin.TxStatus, stage fastpayv1.TxLifecycleUpdate_Stage) bool {
	_, ok := st.StageAt[stage]
	return ok
}

func devConfig() devchain.Config {
	return devchain.Config{BlockPeriod: 200 * time.Millisecond, LoadAccounts: -1}
}

func TestDevchainSettlesPayment(t *testing.T) {
	env := newDevEnv(t, devConfig())
	p, q := env.pay(env.alice, 0, env.bob, 1, nil)
	env.give(p, q)
	st := env.waitStage(p.TxHash, fastpayv1.TxLifecycleUpdate_FINALIZED, 30*time.Second)
	for _, stage := range []fastpayv1.TxLifecycleUpdate_Stage{fastpayv1.TxLifecycleUpdate_QUEUED_ONCHAIN, fastpayv1.TxLifecycleUpdate_INCLUDED, fastpayv1.TxLifecycleUpdate_FINALIZED} {
		if !hasStage(st, stage) {
			t.Errorf("stage %s never reported", stage)
		}
	}
	r, err := env.client.TransactionReceipt(context.Background(), p.Tx.TxHash)
	if err != nil || r == nil || !r.Succeeded() {
		t.Fatalf("receipt %+v, %v", r, err)
	}
	if st.BlockHeight != r.BlockNumber {
		t.Fatalf("board height %d, receipt block %d", st.BlockHeight, r.BlockNumber)
	}
	env.wantBalances(14, 6, 5)
	if got := testutil.ToFloat64(env.s.m.sent.WithLabelValues(attemptFirst)); got != 1 {
		t.Fatalf("first sends %v", got)
	}
	testkit.Eventually(t, 5*time.Second, "the settler to forget the finalized tx", func() bool { return env.s.Pending() == 0 })
}

func TestDevchainChainedPaymentsSettleInOrder(t *testing.T) {
	env := newDevEnv(t, devConfig())
	parent, parentQC := env.pay(env.alice, 0, env.bob, 10, nil)
	// Bob holds 5$ on chain: his 10$ payment only works after the parent.
	child, childQC := env.pay(env.bob, 0, env.carol, 10, parentQC)

	env.give(child, childQC)
	testkit.Eventually(t, 10*time.Second, "the child to be tracked", func() bool { return env.s.Pending() == 1 })
	from := env.s.lastHead.Load()
	testkit.Eventually(t, 20*time.Second, "three heads of settlement passes", func() bool { return env.s.lastHead.Load() >= from+3 })
	if st := env.status(child.TxHash); hasStage(st, fastpayv1.TxLifecycleUpdate_QUEUED_ONCHAIN) || st.Stage != fastpayv1.TxLifecycleUpdate_CERTIFIED {
		t.Fatalf("child reached %s before its parent was included", st.Stage)
	}
	if n := env.nonce(env.bob); n != 0 {
		t.Fatalf("bob's chain nonce %d: the child was sent early", n)
	}
	if got := testutil.ToFloat64(env.s.m.sent.WithLabelValues(attemptFirst)); got != 0 {
		t.Fatalf("%v sends before the parent was given", got)
	}

	env.give(parent, parentQC)
	pst := env.waitStage(parent.TxHash, fastpayv1.TxLifecycleUpdate_FINALIZED, 30*time.Second)
	cst := env.waitStage(child.TxHash, fastpayv1.TxLifecycleUpdate_FINALIZED, 30*time.Second)
	if cst.BlockHeight <= pst.BlockHeight {
		t.Fatalf("child included in block %d, parent in %d", cst.BlockHeight, pst.BlockHeight)
	}
	r, err := env.client.TransactionReceipt(context.Background(), child.Tx.TxHash)
	if err != nil || r == nil || !r.Succeeded() {
		t.Fatalf("child receipt %+v, %v", r, err)
	}
	env.wantBalances(5, 5, 15)
	if got := testutil.ToFloat64(env.s.m.failed.WithLabelValues(FailReverted)); got != 0 {
		t.Fatalf("%v reverts", got)
	}
}

func TestDevchainRevertedPaymentReported(t *testing.T) {
	env := newDevEnv(t, devConfig())
	failures := env.board.Subscribe(func(ev *bulletin.Event) bool { return ev.Kind == bulletin.EventSettlementFailure })
	defer failures.Close()
	// Carol holds 5$: honest validators would never certify 100$. Build the
	// QC directly.
	p, q := env.pay(env.carol, 0, env.alice, 100, nil)
	env.give(p, q)
	var ev bulletin.Event
	select {
	case ev = <-failures.C():
	case <-time.After(30 * time.Second):
		t.Fatal("no settlement failure event")
	}
	if ev.TxHash != p.TxHash || !strings.HasPrefix(ev.Reason, "reverted in block ") {
		t.Fatalf("failure event %+v", ev)
	}
	r, err := env.client.TransactionReceipt(context.Background(), p.Tx.TxHash)
	if err != nil || r == nil || r.Succeeded() {
		t.Fatalf("receipt %+v, %v", r, err)
	}
	if ev.Reason != "reverted in block "+strconv.FormatUint(r.BlockNumber, 10) {
		t.Fatalf("reason %q, receipt block %d", ev.Reason, r.BlockNumber)
	}
	if st := env.status(p.TxHash); st.Stage != fastpayv1.TxLifecycleUpdate_INCLUDED || st.BlockHeight != r.BlockNumber {
		t.Fatalf("stage %s at %d", st.Stage, st.BlockHeight)
	}
	if got := testutil.ToFloat64(env.s.m.reverted); got != 1 {
		t.Fatalf("reverted metric %v", got)
	}
	if got := testutil.ToFloat64(env.s.m.failed.WithLabelValues(FailReverted)); got != 1 {
		t.Fatalf("failed{reverted} %v", got)
	}
	env.wantBalances(15, 5, 5)
}

func TestDevchainRestartKeepsBacklog(t *testing.T) {
	cfg := devConfig()
	cfg.DataDir = t.TempDir()
	env := newDevEnv(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	p1, q1 := env.pay(env.alice, 0, env.bob, 1, nil)
	env.give(p1, q1)
	env.waitStage(p1.TxHash, fastpayv1.TxLifecycleUpdate_FINALIZED, 30*time.Second)

	// One payment given just before the node stops (it may or may not be
	// sent and mined before), more while it is down, one of them a child of
	// the first.
	p2, q2 := env.pay(env.alice, 1, env.carol, 2, nil)
	env.give(p2, q2)
	url := env.dc.HTTPEndpoint()
	port, err := strconv.Atoi(url[strings.LastIndex(url, ":")+1:])
	if err != nil {
		t.Fatal(err)
	}
	if err := env.dc.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	p3, q3 := env.pay(env.bob, 0, env.carol, 1, nil)
	p4, q4 := env.pay(env.carol, 0, env.alice, 6, q2) // Carol has 5$ without p2
	env.give(p3, q3)
	env.give(p4, q4)
	testkit.Eventually(t, 20*time.Second, "the settler to notice the outage", func() bool {
		return testutil.ToFloat64(env.s.m.unavailable) == 1
	})
	// The settler keeps trying while the node is down, logging the outage
	// once.
	passes := env.s.passes.Load()
	testkit.Eventually(t, 20*time.Second, "settlement passes during the outage", func() bool { return env.s.passes.Load() >= passes+3 })
	if n := env.logs.count("chain unavailable; settlement waits"); n != 1 || testutil.ToFloat64(env.s.m.unavailable) != 1 {
		t.Fatalf("outage logged %d times:\n%s", n, env.logs)
	}
	if env.s.Pending() < 2 {
		t.Fatalf("backlog %d during the outage", env.s.Pending())
	}

	cfg.HTTPPort = port
	env.dc = testkit.StartDevChain(t, cfg)
	for _, p := range []*validator.Payment{p2, p3, p4} {
		st := env.waitStage(p.TxHash, fastpayv1.TxLifecycleUpdate_FINALIZED, 40*time.Second)
		r, err := env.client.TransactionReceipt(ctx, p.Tx.TxHash)
		if err != nil || r == nil || !r.Succeeded() || r.BlockNumber != st.BlockHeight {
			t.Fatalf("receipt of %s: %+v, %v (board height %d)", p.TxHash, r, err, st.BlockHeight)
		}
	}
	if env.status(p4.TxHash).BlockHeight <= env.status(p2.TxHash).BlockHeight {
		t.Fatal("child mined no later than its parent")
	}
	// Alice 15-1-2+6, Bob 5+1-1, Carol 5+2+1-6.
	env.wantBalances(18, 5, 2)
	testkit.Eventually(t, 10*time.Second, "the settler to see the chain back", func() bool {
		return testutil.ToFloat64(env.s.m.unavailable) == 0
	})
	if n := env.logs.count("chain unavailable; settlement waits"); n < 1 || n > 2 {
		t.Fatalf("outage logged %d times:\n%s", n, env.logs)
	}
	var failed float64
	for _, r := range []string{FailReverted, FailNonceUsed, FailExpired, FailRejected} {
		failed += testutil.ToFloat64(env.s.m.failed.WithLabelValues(r))
	}
	if failed != 0 {
		t.Fatalf("%v settlement failures", failed)
	}
}
