package settlement

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/chain"
	"github.com/allegro-mesh/allegro/validator"
)

// fakeChain is a scripted Chain: tests set the head, nonces, receipts and
// errors, and read back what was sent.
type fakeChain struct {
	mu         sync.Mutex
	head       tempo.Head
	nonces     map[acctKey]uint64
	receipts   map[common.Hash]*chain.Receipt
	sends      map[common.Hash]int // chain hash → successful sends
	latestErr  error
	nonceErr   error
	receiptErr error
	sendErr    func(hash common.Hash) error
	heads      chan tempo.Head
}

func newFakeChain() *fakeChain {
	return &fakeChain{
		head:     tempo.Head{Number: 1, Hash: common.Hash{1}},
		nonces:   make(map[acctKey]uint64),
		receipts: make(map[common.Hash]*chain.Receipt),
		sends:    make(map[common.Hash]int),
		heads:    make(chan tempo.Head, 16),
	}
}

type fakeView struct {
	head   tempo.Head
	nonces map[acctKey]uint64
	err    error
}

func (v *fakeView) Head() tempo.Head { return v.head }

func (v *fakeView) BalanceOf(context.Context, common.Address, common.Address) (*big.Int, error) {
	return nil, errors.New("fake: no balances")
}

func (v *fakeView) FeeTokenOf(context.Context, common.Address) (common.Address, error) {
	return common.Address{}, nil
}

func (v *fakeView) NonceOf(_ context.Context, account common.Address, key [32]byte) (uint64, error) {
	if v.err != nil {
		return 0, v.err
	}
	return v.nonces[acctKey{qc.Address(account), qc.NonceKey(key)}], nil
}

func (f *fakeChain) Latest(context.Context) (tempo.ChainView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.latestErr != nil {
		return nil, f.latestErr
	}
	nonces := make(map[acctKey]uint64, len(f.nonces))
	for k, v := range f.nonces {
		nonces[k] = v
	}
	return &fakeView{head: f.head, nonces: nonces, err: f.nonceErr}, nil
}

func (f *fakeChain) SendRawTransaction(_ context.Context, raw []byte) (common.Hash, error) {
	h := crypto.Keccak256Hash(raw)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sendErr != nil {
		if err := f.sendErr(h); err != nil {
			return common.Hash{}, err
		}
	}
	f.sends[h]++
	return h, nil
}

func (f *fakeChain) TransactionReceipt(_ context.Context, hash common.Hash) (*chain.Receipt, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.receiptErr != nil {
		return nil, f.receiptErr
	}
	return f.receipts[hash], nil
}

func (f *fakeChain) SubscribeHeads() (<-chan tempo.Head, func()) {
	return f.heads, func() {}
}

// advance moves the head forward n blocks and returns it.
func (f *fakeChain) advance(n uint64) tempo.Head {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.head.Number += n
	binary.BigEndian.PutUint64(f.head.Hash[:8], f.head.Number)
	return f.head
}

func (f *fakeChain) setNonce(e qc.Effects, next uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nonces[acctKey{e.Sender, e.NonceKey}] = next
}

// include marks p mined at the current head: its nonce consumed and a
// receipt with status.
func (f *fakeChain) include(p *validator.Payment, status uint64) uint64 {
	f.setNonce(p.Effects, p.Effects.NonceSeq+1)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.receipts[p.Tx.TxHash] = &chain.Receipt{TxHash: p.Tx.TxHash, Status: status, BlockNumber: f.head.Number}
	return f.head.Number
}

func (f *fakeChain) sent(p *validator.Payment) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sends[p.Tx.TxHash]
}

func (f *fakeChain) set(fn func(f *fakeChain)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// recStages records what the settler reports.
type recStages struct {
	mu     sync.Mutex
	events []stageEvent
}

type stageEvent struct {
	tx     qc.Hash
	stage  fastpayv1.TxLifecycleUpdate_Stage // 0 for a failure
	height uint64
	reason string
}

func (r *recStages) SetStage(tx qc.Hash, stage fastpayv1.TxLifecycleUpdate_Stage, height uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, stageEvent{tx: tx, stage: stage, height: height})
}

func (r *recStages) ReportSettlementFailure(tx qc.Hash, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, stageEvent{tx: tx, reason: reason})
}

func (r *recStages) of(tx qc.Hash) []stageEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []stageEvent
	for _, e := range r.events {
		if e.tx == tx {
			out = append(out, e)
		}
	}
	return out
}

// describe renders tx's events as "QUEUED_ONCHAIN INCLUDED@7 FINALIZED@7
// fail(reason)".
func (r *recStages) describe(tx qc.Hash) string {
	var parts []string
	for _, e := range r.of(tx) {
		switch {
		case e.stage == 0:
			parts = append(parts, "fail("+e.reason+")")
		case e.height > 0:
			parts = append(parts, fmt.Sprintf("%s@%d", e.stage, e.height))
		default:
			parts = append(parts, e.stage.String())
		}
	}
	return strings.Join(parts, " ")
}

// fakeClock is a settable time source.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// lockedBuffer is a goroutine-safe log sink.
type lockedBuffer struct{ testkit.SyncBuffer }

func (l *lockedBuffer) count(s string) int { return strings.Count(l.String(), s) }

// harness is a settler over a fake chain with a fake clock, driven pass by
// pass.
type harness struct {
	t     *testing.T
	chain *fakeChain
	st    *recStages
	clock *fakeClock
	logs  *lockedBuffer
	s     *Settler
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, chain: newFakeChain(), st: &recStages{}, clock: &fakeClock{t: time.Unix(1_800_000_000, 0)}, logs: &lockedBuffer{}}
	logger := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(cfg, h.chain, h.st, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	s.now = h.clock.Now
	h.s = s
	return h
}

func (h *harness) pass() { h.s.pass(context.Background()) }

// block advances the chain one block and runs a pass.
func (h *harness) block() {
	h.chain.advance(1)
	h.pass()
}

// fakePayment returns a payment of sender's nonce seq and its QC. The raw
// bytes are opaque to the settler; parent, when set, is the parent's QC,
// carried in the request if carry is set.
func fakePayment(sender byte, seq uint64, parent *qc.QC, carry bool) (*validator.Payment, *qc.QC) {
	eff := qc.Effects{
		Sender: qc.Address{sender}, Recipient: qc.Address{0xee}, Amount: 1_000_000,
		Asset: qc.Address{0x20, 0xc0}, NonceSeq: seq,
	}
	raw := fmt.Appendf(nil, "raw tx of %x/%d", sender, seq)
	txHash := qc.Hash(sha256.Sum256(raw))
	p := &validator.Payment{
		TxHash: txHash, Effects: eff,
		Tx:      &tempo.DecodedTx{TxHash: crypto.Keccak256Hash(raw), Raw: raw},
		Request: &fastpayv1.SubmitFastPayRequest{},
	}
	if parent != nil {
		h := parent.Hash
		p.ParentQCHash = &h
		if carry {
			p.Request.ParentQcs = []*fastpayv1.QuorumCertificate{fastpayv1.NewQuorumCertificate(parent)}
		}
	}
	return p, fakeQC(txHash, eff, 0)
}

// fakeQC builds an unsigned but hash-consistent QC; variant changes its
// certificate set (another QC for the same transaction).
func fakeQC(txHash qc.Hash, eff qc.Effects, variant byte) *qc.QC {
	q := &qc.QC{TxHash: txHash, EffectsHash: eff.Hash(), Threshold: 1}
	q.Certs = []qc.Certificate{{Signer: qc.ValidatorID{1 + variant}, TxHash: txHash, EffectsHash: q.EffectsHash, Effects: eff}}
	q.Hash = qc.ComputeQCHash(q.TxHash, q.EffectsHash, q.Threshold, q.Certs)
	return q
}
