// Package settlement sends certified transactions to the chain in dependency
// order and follows them to inclusion and finality (SPEC §6).
//
// Every sidecar runs a Settler. It learns transactions from two sources:
// Offer hands it a payment whose raw bytes this sidecar holds, Certified a QC
// the board learned. A transaction is sent once both are known and its
// parent (the payment's parent_qc_hash) is included; sending is idempotent,
// so every sidecar holding the bytes sends, and settlement survives any
// minority of sidecars being down. A QC without raw bytes is still followed:
// the chain's nonce for the QC's (sender, nonce_key) passing its nonce_seq
// shows the transaction included, which sets the lifecycle stages.
//
// On every new head the settler reads the chain's nonces at that head (one
// read per account), fetches the receipts of transactions whose nonce has
// passed, reports INCLUDED / FINALIZED stages, reverts and nonces consumed by
// other transactions as settlement failures, and (re)sends what is due.
// Memory is bounded: at most Config.MaxPending transactions and
// Config.MaxRawBytes of raw bytes are held, and entries are dropped once
// finalized or failed.
package settlement

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/prometheus/client_golang/prometheus"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/chain"
)

// Chain is what the settler needs from the chain: consistent state views,
// sending, receipts and new heads. *chain.Client implements it.
type Chain interface {
	tempo.ChainReader
	// SendRawTransaction submits a signed transaction. An error wrapping
	// chain.ErrTxRejected means the node answered and refused it; any other
	// error means the node could not be reached (the send may be retried).
	SendRawTransaction(ctx context.Context, raw []byte) (common.Hash, error)
	// TransactionReceipt returns the receipt of an on-chain transaction hash,
	// or (nil, nil) while the node does not know it.
	TransactionReceipt(ctx context.Context, hash common.Hash) (*chain.Receipt, error)
	// SubscribeHeads delivers new heads until the returned function is
	// called.
	SubscribeHeads() (<-chan tempo.Head, func())
}

// Stages receives settlement outcomes. *bulletin.Board implements it.
type Stages interface {
	SetStage(txHash qc.Hash, stage fastpayv1.TxLifecycleUpdate_Stage, height uint64)
	ReportSettlementFailure(txHash qc.Hash, reason string)
}

// maxQCsPerTx bounds the distinct QC hashes remembered for one transaction
// (QCs of one transaction may differ in their certificate subsets).
const maxQCsPerTx = 8

// Settler sends certified transactions to the chain and reports their
// settlement. Create it with New, feed it with Offer and Certified, and run
// it with Start. It is safe for concurrent use.
type Settler struct {
	cfg    Config
	chain  Chain
	stages Stages
	log    *slog.Logger
	m      *metrics
	now    func() time.Time // tests replace it
	tick   time.Duration    // pass interval when no head arrives

	kick chan struct{}

	mu         sync.Mutex
	entries    map[qc.Hash]*entry  // by FastPay tx hash
	byQC       map[qc.Hash]qc.Hash // QC hash → tx hash, for tracked transactions
	uncert     *list.List          // tracked transactions without a QC, oldest first
	doneTx     *fifoSet            // tx hashes settled or failed recently
	doneQC     *fifoSet            // their QC hashes, so children find them
	rawBytes   int
	full       bool // a refusal was logged since the last successful add
	onIncluded func(txHash qc.Hash, height uint64)

	// Outage accounting (guarded by mu): time the chain did not answer does
	// not count against MaxAge.
	outage      bool
	outageSince time.Time
	outageHead  tempo.Head
	outageTotal time.Duration

	scanMu   sync.Mutex // one pass at a time
	lastHead atomic.Uint64
	passes   atomic.Uint64

	runMu   sync.Mutex
	started bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// entry is one tracked transaction. Fields are guarded by Settler.mu.
type entry struct {
	txHash      qc.Hash
	qcs         []qc.Hash
	effects     qc.Effects
	effectsHash qc.Hash
	offeredAt   time.Time
	certified   bool
	certifiedAt time.Time
	outageAt    time.Duration // the outage clock at certification
	uncertElem  *list.Element

	// From Offer.
	raw       []byte
	chainHash common.Hash
	parent    *qc.Hash   // parent_qc_hash
	alias     *parentRef // the parent as named by the QC the request carried

	aliasDone    bool       // the alias parent's nonce was seen consumed
	aliasChecked tempo.Head // head the alias parent was last seen pending at

	checked  tempo.Head // head at which the nonce was last seen unconsumed
	missHead tempo.Head
	misses   int // heads with the nonce consumed but no receipt

	queued bool // QUEUED_ONCHAIN reported
	sentAt time.Time

	included bool
	height   uint64
}

// parentRef identifies a parent transaction from the QC carried in its
// child's request.
type parentRef struct {
	txHash  qc.Hash
	effects qc.Effects
}

// New returns a settler for chain that reports to stages. reg receives the
// metrics (nil: not registered); a nil logger discards logs.
func New(cfg Config, ch Chain, stages Stages, reg prometheus.Registerer, logger *slog.Logger) (*Settler, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if ch == nil {
		return nil, errors.New("settlement: chain is nil")
	}
	if stages == nil {
		return nil, errors.New("settlement: stages is nil")
	}
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Settler{
		cfg:     cfg,
		chain:   ch,
		stages:  stages,
		log:     logger.With("component", "settlement"),
		m:       m,
		now:     time.Now,
		tick:    min(cfg.ResendInterval, time.Second),
		kick:    make(chan struct{}, 1),
		entries: make(map[qc.Hash]*entry),
		byQC:    make(map[qc.Hash]qc.Hash),
		uncert:  list.New(),
		doneTx:  newFIFOSet(cfg.MaxPending),
		doneQC:  newFIFOSet(cfg.MaxPending),
	}, nil
}

// OnIncluded sets a function called (outside the settler's locks, from its
// pass goroutine) when a certified transaction is seen included, reverted or
// not, at its block height. The sidecar's validator may prune its overlay on
// it. Set it before Start.
func (s *Settler) OnIncluded(fn func(txHash qc.Hash, height uint64)) {
	s.mu.Lock()
	s.onIncluded = fn
	s.mu.Unlock()
}

// Pending returns the number of transactions tracked.
func (s *Settler) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Start subscribes to new heads and runs settlement passes until Stop. ctx
// is not retained.
func (s *Settler) Start(context.Context) error {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.started {
		return errors.New("settlement: already started")
	}
	s.started = true
	ctx, cancel := context.WithCancel(context.Background())
	heads, unsubscribe := s.chain.SubscribeHeads()
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		defer unsubscribe()
		s.run(ctx, heads)
	}()
	return nil
}

// Stop ends the passes and waits for the current one (bounded by ctx). The
// backlog is not persisted. Stop is idempotent.
func (s *Settler) Stop(ctx context.Context) error {
	s.runMu.Lock()
	cancel, done := s.cancel, s.done
	s.runMu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("settlement: stop: %w", ctx.Err())
	}
}

// poke asks for a pass soon (coalesced).
func (s *Settler) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Settler) run(ctx context.Context, heads <-chan tempo.Head) {
	ticker := time.NewTicker(s.tick)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-heads:
			if !ok {
				heads = nil // the chain client stopped; passes continue on the ticker
				continue
			}
			drainHeads(heads)
		case <-s.kick:
		case <-ticker.C:
		}
		s.pass(ctx)
	}
}

// drainHeads discards heads that queued up during a pass: a pass always
// reads the newest head.
func drainHeads(heads <-chan tempo.Head) {
	for range 64 {
		select {
		case _, ok := <-heads:
			if !ok {
				return
			}
		default:
			return
		}
	}
}

// removeLocked forgets e. A resolved transaction (finalized or failed) is
// remembered in the bounded done sets, so children naming it go ahead and a
// late QC or Offer does not track it again.
func (s *Settler) removeLocked(e *entry, resolved bool) {
	delete(s.entries, e.txHash)
	for _, h := range e.qcs {
		delete(s.byQC, h)
		if resolved {
			s.doneQC.add(h)
		}
	}
	if resolved {
		s.doneTx.add(e.txHash)
	}
	if e.uncertElem != nil {
		s.uncert.Remove(e.uncertElem)
		e.uncertElem = nil
	}
	s.releaseRawLocked(e)
	s.m.pending.Set(float64(len(s.entries)))
}

func (s *Settler) releaseRawLocked(e *entry) {
	s.rawBytes -= len(e.raw)
	e.raw = nil
}
