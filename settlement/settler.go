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
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/prometheus/client_golang/prometheus"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/chain"
	"github.com/allegro-mesh/allegro/validator"
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
	return &Settler{
		cfg:     cfg,
		chain:   ch,
		stages:  stages,
		log:     logger.With("component", "settlement"),
		m:       newMetrics(reg),
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

// Offer hands the settler a payment whose raw transaction this sidecar
// holds (the validator accepted it, or it arrived on the transaction topic).
// The bytes are kept until the transaction is included, fails, or gets no QC
// within MaxAge. A QC the request carries for the payment's parent is used to
// identify the parent once the payment itself is certified.
func (s *Settler) Offer(p *validator.Payment) {
	if p == nil || p.Tx == nil || len(p.Tx.Raw) == 0 {
		return
	}
	alias := parentAlias(p)
	effectsHash := p.Effects.Hash()
	now := s.now()

	s.mu.Lock()
	if s.doneTx.has(p.TxHash) {
		s.mu.Unlock()
		return
	}
	e := s.entries[p.TxHash]
	if e != nil && (e.raw != nil || e.included) {
		s.mu.Unlock()
		return
	}
	if e != nil && e.effectsHash != effectsHash {
		s.m.dropped.WithLabelValues(dropMismatch).Inc()
		s.mu.Unlock()
		s.log.Error("offered transaction does not match its QC's effects; raw bytes ignored", "tx", p.TxHash)
		return
	}
	if s.rawBytes+len(p.Tx.Raw) > s.cfg.MaxRawBytes {
		s.refuseLocked(dropBytes, p.TxHash)
		return
	}
	if e == nil {
		if len(s.entries) >= s.cfg.MaxPending {
			s.refuseLocked(dropFull, p.TxHash)
			return
		}
		e = &entry{txHash: p.TxHash, effects: p.Effects, effectsHash: effectsHash, offeredAt: now}
		e.uncertElem = s.uncert.PushBack(e)
		s.entries[p.TxHash] = e
		s.m.pending.Set(float64(len(s.entries)))
	}
	e.raw = p.Tx.Raw
	e.chainHash = p.Tx.TxHash
	if p.ParentQCHash != nil {
		h := *p.ParentQCHash
		e.parent = &h
		e.alias = alias
	}
	s.rawBytes += len(e.raw)
	s.full = false
	certified := e.certified
	s.mu.Unlock()
	if certified {
		s.poke()
	}
}

// Certified tells the settler a transaction's QC is known (formed or received
// by the board, or verified as a parent). The caller has verified it against
// the committee. QCs of one transaction with different certificate subsets
// are all remembered, so a child naming any of them finds its parent.
func (s *Settler) Certified(q *qc.QC) {
	if q == nil || len(q.Certs) == 0 {
		return
	}
	eff := q.Effects()
	if eff.Hash() != q.EffectsHash {
		s.log.Error("QC effects do not match its effects hash; ignored", "tx", q.TxHash)
		return
	}
	now := s.now()

	s.mu.Lock()
	if s.doneTx.has(q.TxHash) {
		s.doneQC.add(q.Hash)
		s.mu.Unlock()
		return
	}
	e := s.entries[q.TxHash]
	switch {
	case e == nil:
		if !s.makeRoomLocked() {
			s.refuseLocked(dropFull, q.TxHash)
			return
		}
		e = &entry{txHash: q.TxHash, effects: eff, effectsHash: q.EffectsHash, offeredAt: now}
		s.entries[q.TxHash] = e
		s.m.pending.Set(float64(len(s.entries)))
	case e.certified:
		s.addQCLocked(e, q.Hash)
		s.mu.Unlock()
		return
	default:
		if e.effectsHash != q.EffectsHash {
			// The offered bytes are not what the committee certified.
			s.m.dropped.WithLabelValues(dropMismatch).Inc()
			s.log.Error("offered transaction does not match its QC's effects; raw bytes dropped", "tx", q.TxHash)
			s.releaseRawLocked(e)
			e.parent, e.alias = nil, nil
			e.effects, e.effectsHash = eff, q.EffectsHash
		}
		s.uncert.Remove(e.uncertElem)
		e.uncertElem = nil
	}
	e.certified = true
	e.certifiedAt = now
	e.outageAt = s.outageClockLocked(now)
	s.addQCLocked(e, q.Hash)
	s.full = false
	s.mu.Unlock()
	s.poke()
}

func (s *Settler) addQCLocked(e *entry, h qc.Hash) {
	if _, ok := s.byQC[h]; ok || len(e.qcs) >= maxQCsPerTx {
		return
	}
	e.qcs = append(e.qcs, h)
	s.byQC[h] = e.txHash
}

// makeRoomLocked reports whether a new certified entry fits, evicting the
// oldest entry without a QC when full.
func (s *Settler) makeRoomLocked() bool {
	if len(s.entries) < s.cfg.MaxPending {
		return true
	}
	front := s.uncert.Front()
	if front == nil {
		return false
	}
	s.m.dropped.WithLabelValues(dropEvicted).Inc()
	s.removeLocked(front.Value.(*entry), false)
	return true
}

// refuseLocked counts a refused input, logs the first refusal of a full
// episode, and unlocks.
func (s *Settler) refuseLocked(reason string, txHash qc.Hash) {
	s.m.dropped.WithLabelValues(reason).Inc()
	first := !s.full
	s.full = true
	pending, bytes := len(s.entries), s.rawBytes
	s.mu.Unlock()
	if first {
		s.log.Warn("settlement backlog full; refusing transactions (other sidecars still settle them)",
			"reason", reason, "tx", txHash, "pending", pending, "raw_bytes", bytes)
	}
}

// parentAlias returns the parent named by p's parent_qc_hash as described by
// the QC the request carries for it. The QC's signatures are not checked
// here: its qc_hash (recomputed) commits to its tx hash and effects hash, and
// the child is only ever sent once certified, by validators that verified
// that very QC, so a QC hashing to parent_qc_hash is the genuine one.
func parentAlias(p *validator.Payment) *parentRef {
	if p.ParentQCHash == nil || p.Request == nil {
		return nil
	}
	for _, w := range p.Request.GetParentQcs() {
		if w == nil || !bytes.Equal(w.GetQcHash(), p.ParentQCHash[:]) {
			continue
		}
		q, err := w.ToQC()
		if err != nil || len(q.Certs) == 0 {
			continue
		}
		if qc.ComputeQCHash(q.TxHash, q.EffectsHash, q.Threshold, q.Certs) != q.Hash {
			continue
		}
		eff := q.Certs[0].Effects
		if eff.Hash() != q.EffectsHash {
			continue
		}
		return &parentRef{txHash: q.TxHash, effects: eff}
	}
	return nil
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

// Outcomes of a nonce check.
const (
	outNone        = iota // not done (pass cancelled)
	outPending            // nonce not consumed
	outPassedNoRaw        // nonce consumed; no raw bytes, so no receipt
	outReceipt            // nonce consumed; receipt found
	outNoReceipt          // nonce consumed; no receipt
	outError              // the chain did not answer
)

type acctKey struct {
	sender   qc.Address
	nonceKey qc.NonceKey
}

type check struct {
	e         *entry
	seq       uint64
	chainHash common.Hash
	hasRaw    bool
	alias     bool // checks e's alias parent, not e
}

type checkResult struct {
	check
	outcome int
	receipt *chain.Receipt
}

type sendItem struct {
	e     *entry
	raw   []byte
	first bool
}

type sendResult struct {
	sendItem
	done bool
	err  error
}

// calls counts a pass's chain requests, to tell outages from recoveries.
// State reads may be answered from the client's per-block cache, so they
// prove the node is back only at a head newer than the outage's; sends and
// receipts always reach the node.
type calls struct {
	reads, node, failed atomic.Int64
	errMu               sync.Mutex
	err                 error
}

// record counts a state read (fromNode false) or a request that reached the
// node (fromNode true).
func (c *calls) record(err error, fromNode bool) {
	switch {
	case err == nil && fromNode:
		c.node.Add(1)
	case err == nil:
		c.reads.Add(1)
	default:
		c.failed.Add(1)
		c.errMu.Lock()
		if c.err == nil {
			c.err = err
		}
		c.errMu.Unlock()
	}
}

// pass runs one settlement pass at the newest head.
func (s *Settler) pass(ctx context.Context) {
	s.scanMu.Lock()
	defer s.scanMu.Unlock()
	var c calls
	view, err := s.chain.Latest(ctx)
	if err != nil {
		c.record(err, false)
		s.availability(&c, tempo.Head{})
		return
	}
	head := view.Head()
	now := s.now()
	var notes []func()

	s.mu.Lock()
	s.expireUncertifiedLocked(now)
	work := s.collectChecksLocked(head)
	s.mu.Unlock()

	results := s.runChecks(ctx, view, work, &c)

	s.mu.Lock()
	s.applyChecksLocked(head, now, results, &notes)
	s.finalizeDueLocked(head, &notes)
	s.expireCertifiedLocked(head, now, &notes)
	sends := s.collectSendsLocked(head, now)
	s.mu.Unlock()
	runNotes(notes)
	notes = nil

	sent := s.runSends(ctx, sends, &c)

	s.mu.Lock()
	s.applySendsLocked(now, sent, &notes)
	s.mu.Unlock()
	runNotes(notes)

	s.availability(&c, head)
	s.lastHead.Store(head.Number)
	s.passes.Add(1)
}

func runNotes(notes []func()) {
	for _, n := range notes {
		n()
	}
}

// availability logs once per outage and once per recovery. A pass that made
// no request, or only read cached state at the head the outage began at, says
// nothing either way.
func (s *Settler) availability(c *calls, head tempo.Head) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	back := c.node.Load() > 0 || (c.reads.Load() > 0 && head != s.outageHead)
	switch {
	case c.failed.Load() > 0 && !s.outage:
		s.outage, s.outageSince, s.outageHead = true, now, head
		s.m.unavailable.Set(1)
		s.log.Warn("chain unavailable; settlement waits for it and retries on every head", "err", c.err)
	case c.failed.Load() == 0 && back && s.outage:
		s.outageTotal += max(now.Sub(s.outageSince), 0)
		s.outage = false
		s.m.unavailable.Set(0)
		s.log.Info("chain available again; settlement resumed", "outage", now.Sub(s.outageSince))
	}
}

// outageClockLocked returns the total time the chain has been unavailable.
func (s *Settler) outageClockLocked(now time.Time) time.Duration {
	if s.outage {
		return s.outageTotal + max(now.Sub(s.outageSince), 0)
	}
	return s.outageTotal
}

// ageLocked is how long e has been certified while the chain answered.
func (s *Settler) ageLocked(e *entry, now time.Time) time.Duration {
	return now.Sub(e.certifiedAt) - (s.outageClockLocked(now) - e.outageAt)
}

func (s *Settler) expireUncertifiedLocked(now time.Time) {
	for el := s.uncert.Front(); el != nil; {
		e := el.Value.(*entry)
		if now.Sub(e.offeredAt) <= s.cfg.MaxAge {
			return // the list is in offer order
		}
		el = el.Next()
		s.m.dropped.WithLabelValues(dropUncertified).Inc()
		s.removeLocked(e, false)
	}
}

// collectChecksLocked groups by account the nonce checks due at head: every
// certified pending transaction not yet checked at head, and the alias
// parents its children still wait for.
func (s *Settler) collectChecksLocked(head tempo.Head) map[acctKey][]check {
	work := make(map[acctKey][]check)
	for _, e := range s.entries {
		if !e.certified || e.included {
			continue
		}
		if e.checked != head {
			k := acctKey{e.effects.Sender, e.effects.NonceKey}
			work[k] = append(work[k], check{e: e, seq: e.effects.NonceSeq, chainHash: e.chainHash, hasRaw: e.raw != nil})
		}
		if e.alias != nil && !e.aliasDone && e.aliasChecked != head && !s.parentResolvedLocked(e) {
			pe := e.alias.effects
			k := acctKey{pe.Sender, pe.NonceKey}
			work[k] = append(work[k], check{e: e, seq: pe.NonceSeq, alias: true})
		}
	}
	return work
}

// runChecks reads each account's nonce at the view and the receipts of the
// transactions whose nonce has passed.
func (s *Settler) runChecks(ctx context.Context, view tempo.ChainView, work map[acctKey][]check, c *calls) []checkResult {
	keys := make([]acctKey, 0, len(work))
	offsets := make([]int, 0, len(work))
	n := 0
	for k, cs := range work {
		keys = append(keys, k)
		offsets = append(offsets, n)
		n += len(cs)
	}
	results := make([]checkResult, n)
	for i, k := range keys {
		for j, ch := range work[k] {
			results[offsets[i]+j].check = ch
		}
	}
	s.parallel(ctx, len(keys), func(i int) {
		k := keys[i]
		out := results[offsets[i] : offsets[i]+len(work[k])]
		next, err := view.NonceOf(ctx, common.Address(k.sender), k.nonceKey)
		c.record(err, false)
		for j := range out {
			r := &out[j]
			switch {
			case err != nil:
				r.outcome = outError
			case next <= r.seq:
				r.outcome = outPending
			case r.alias || !r.hasRaw:
				r.outcome = outPassedNoRaw
			default:
				rc, err := s.chain.TransactionReceipt(ctx, r.chainHash)
				c.record(err, true)
				switch {
				case err != nil:
					r.outcome = outError
				case rc == nil:
					r.outcome = outNoReceipt
				default:
					r.outcome, r.receipt = outReceipt, rc
				}
			}
		}
	})
	return results
}

func (s *Settler) applyChecksLocked(head tempo.Head, now time.Time, results []checkResult, notes *[]func()) {
	for i := range results {
		r := &results[i]
		e := r.e
		if r.outcome == outNone || s.entries[e.txHash] != e || e.included {
			continue
		}
		if r.alias {
			switch r.outcome {
			case outPending:
				e.aliasChecked = head
			case outPassedNoRaw:
				e.aliasDone = true
			}
			continue
		}
		switch r.outcome {
		case outPending:
			e.checked = head
			e.misses = 0
		case outPassedNoRaw:
			if e.raw != nil {
				continue // bytes arrived meanwhile: check the receipt next pass
			}
			s.includeLocked(e, head.Number, includedNoRaw, now, notes)
		case outReceipt:
			height := r.receipt.BlockNumber
			if r.receipt.Succeeded() {
				s.includeLocked(e, height, includedSuccess, now, notes)
				continue
			}
			s.includeLocked(e, height, includedReverted, now, notes)
			s.m.reverted.Inc()
			s.failLocked(e, FailReverted, fmt.Sprintf("reverted in block %d", height), notes)
		case outNoReceipt:
			if e.missHead != head {
				e.missHead = head
				e.misses++
			}
			if e.misses >= s.cfg.ReceiptRetries {
				s.failLocked(e, FailNonceUsed, "nonce used by another transaction", notes)
			}
		}
	}
}

func (s *Settler) includeLocked(e *entry, height uint64, result string, now time.Time, notes *[]func()) {
	e.included = true
	e.height = height
	s.releaseRawLocked(e)
	s.m.included.WithLabelValues(result).Inc()
	s.m.toIncluded.Observe(now.Sub(e.certifiedAt).Seconds())
	txHash, cb := e.txHash, s.onIncluded
	s.log.Debug("certified transaction included", "tx", txHash, "height", height, "result", result)
	*notes = append(*notes, func() {
		s.stages.SetStage(txHash, fastpayv1.TxLifecycleUpdate_INCLUDED, height)
		if cb != nil {
			cb(txHash, height)
		}
	})
}

func (s *Settler) finalizeDueLocked(head tempo.Head, notes *[]func()) {
	for _, e := range s.entries {
		if !e.included || head.Number < e.height+s.cfg.FinalityDepth {
			continue
		}
		s.m.finalized.Inc()
		txHash, height := e.txHash, e.height
		*notes = append(*notes, func() { s.stages.SetStage(txHash, fastpayv1.TxLifecycleUpdate_FINALIZED, height) })
		s.removeLocked(e, true)
	}
}

// expireCertifiedLocked fails certified transactions still pending after
// MaxAge. Only transactions the chain just answered for count, so an outage
// fails nothing.
func (s *Settler) expireCertifiedLocked(head tempo.Head, now time.Time, notes *[]func()) {
	for _, e := range s.entries {
		if !e.certified || e.included || e.checked != head || s.ageLocked(e, now) <= s.cfg.MaxAge {
			continue
		}
		reason := fmt.Sprintf("not included within %s", s.cfg.MaxAge)
		switch {
		case !s.parentResolvedLocked(e):
			reason += fmt.Sprintf(" (waiting for parent QC %s)", e.parent)
		case e.raw == nil:
			reason += " (raw transaction not held here)"
		}
		s.failLocked(e, FailExpired, reason, notes)
	}
}

// parentResolvedLocked reports whether e's parent is included (or settled
// otherwise: a failed parent does not hold its child back, the chain decides
// the child's fate and a revert is reported).
func (s *Settler) parentResolvedLocked(e *entry) bool {
	if e.parent == nil {
		return true
	}
	if tx, ok := s.byQC[*e.parent]; ok {
		if p := s.entries[tx]; p != nil && p.included {
			return true
		}
	}
	if s.doneQC.has(*e.parent) {
		return true
	}
	if e.alias == nil {
		return false
	}
	if p := s.entries[e.alias.txHash]; p != nil && p.included {
		return true
	}
	return s.doneTx.has(e.alias.txHash) || e.aliasDone
}

func (s *Settler) collectSendsLocked(head tempo.Head, now time.Time) []sendItem {
	var out []sendItem
	for _, e := range s.entries {
		if !e.certified || e.included || e.raw == nil || e.checked != head {
			continue
		}
		if !e.sentAt.IsZero() && now.Sub(e.sentAt) < s.cfg.ResendInterval {
			continue
		}
		if !s.parentResolvedLocked(e) {
			continue
		}
		out = append(out, sendItem{e: e, raw: e.raw, first: !e.queued})
	}
	return out
}

func (s *Settler) runSends(ctx context.Context, items []sendItem, c *calls) []sendResult {
	results := make([]sendResult, len(items))
	s.parallel(ctx, len(items), func(i int) {
		_, err := s.chain.SendRawTransaction(ctx, items[i].raw)
		if errors.Is(err, chain.ErrTxRejected) {
			c.record(nil, true) // the node answered
		} else {
			c.record(err, true)
		}
		results[i] = sendResult{sendItem: items[i], done: true, err: err}
	})
	return results
}

func (s *Settler) applySendsLocked(now time.Time, results []sendResult, notes *[]func()) {
	for i := range results {
		r := &results[i]
		e := r.e
		if !r.done || s.entries[e.txHash] != e || e.included {
			continue
		}
		switch {
		case r.err == nil:
			attempt := attemptResend
			if r.first {
				attempt = attemptFirst
			}
			s.m.sent.WithLabelValues(attempt).Inc()
			e.sentAt = now
			if !e.queued {
				e.queued = true
				txHash := e.txHash
				*notes = append(*notes, func() { s.stages.SetStage(txHash, fastpayv1.TxLifecycleUpdate_QUEUED_ONCHAIN, 0) })
			}
		case errors.Is(r.err, chain.ErrTxRejected) && transientRejection(r.err):
			s.m.sendErrors.WithLabelValues(sendTransient).Inc()
			e.sentAt = now // retried after ResendInterval
			s.log.Debug("node refused the transaction for now; will retry", "tx", e.txHash, "err", r.err)
		case errors.Is(r.err, chain.ErrTxRejected):
			s.m.sendErrors.WithLabelValues(sendPermanent).Inc()
			s.failLocked(e, FailRejected, "rejected by the node: "+r.err.Error(), notes)
		default:
			// Unreachable node: retried on the next pass, logged once per
			// outage by availability.
			s.m.sendErrors.WithLabelValues(sendUnavailable).Inc()
		}
	}
}

// transientRejection reports whether a node's refusal may go away: the
// nonce already used (most likely by this very transaction, included since
// the nonce was read), a pool that is full or holds a competing transaction,
// fee conditions. Anything else (invalid signature, chain id, gas...) is
// permanent.
func transientRejection(err error) bool {
	msg := strings.ToLower(err.Error())
	for _, s := range []string{
		"nonce too low", "nonce too high", "underpriced", "replacement", "pool is full", "txpool is full",
		"account limit", "gapped", "future transaction", "fee cap less than block base fee",
		"max fee per gas less than block base fee", "temporarily", "try again", "busy", "rate limit",
	} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func (s *Settler) failLocked(e *entry, label, reason string, notes *[]func()) {
	s.m.failed.WithLabelValues(label).Inc()
	eff := e.effects
	txHash := e.txHash
	s.removeLocked(e, true)
	*notes = append(*notes, func() {
		s.log.Warn("settlement failed", "tx", txHash, "reason", reason, "sender", common.Address(eff.Sender),
			"nonce_seq", eff.NonceSeq, "amount", eff.Amount)
		s.stages.ReportSettlementFailure(txHash, reason)
	})
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

// parallel runs fn(0..n-1) on at most Workers goroutines, skipping the
// rest once ctx ends.
func (s *Settler) parallel(ctx context.Context, n int, fn func(i int)) {
	if n == 0 {
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(s.cfg.Workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				fn(i)
			}
		})
	}
	wg.Wait()
}
