package settlement

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum/common"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/chain"
)

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
