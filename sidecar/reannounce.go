package sidecar

import (
	"time"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/validator"
)

// A transaction this validator signed must reach a quorum even when the
// first announcement did not: the validator was cut off from the others
// when it signed, it restarted before the others learned the transaction,
// or a peer dropped or parked it. So every signed transaction without a QC
// is kept in pending (refilled from the durable store after a restart) and
// sent again, with the certificates this node holds for it, to every
// connected committee peer, each of which answers with its own (sync.go).
// The wait between attempts doubles, so a transaction that can never be
// certified (its sender equivocated) costs little; it is dropped once its
// QC is known, or it settles or expires.
//
// A transaction whose certificates are still coming in is not stalled, only
// slow: under load a QC can take longer than ReannounceInterval, and
// announcing it again then would cost every member a sync exchange with
// every other, with all their certificates, n² exchanges for nothing, which
// slows the mesh further until it collapses. So a due transaction that
// gained certificates since it was last looked at waits another interval
// instead, at most maxProgressWaits times in a row: a member that trickles
// its certificates out can delay an announcement that little.

// pendingTx is a transaction this validator signed that has no QC yet.
type pendingTx struct {
	p *validator.Payment
	// next, gap, wait, certs and progressWaits are read and written by
	// reannounceLoop only (and set when the entry is made).
	next time.Time
	// gap is how long before next the look at next was scheduled: a
	// transaction let wait for its progress is looked at again after as
	// long (short while the mesh forms, see addPending).
	gap time.Duration
	// wait is the delay after the next announcement; it doubles with each.
	wait time.Duration
	// certs is how many certificates the board held for the transaction
	// when it was last looked at; progressWaits counts the looks in a row
	// it was let wait because that number grew.
	certs         int
	progressWaits int
}

// maxProgressWaits bounds how many intervals in a row a transaction that
// is still gaining certificates waits instead of being announced again.
const maxProgressWaits = 3

// waitForProgress decides for a due transaction whose board now holds
// certs certificates: when that is more than at the last look, and it has
// not waited maxProgressWaits times in a row already, it is looked at again
// one gap later (true); otherwise it is announced (false).
func (pt *pendingTx) waitForProgress(certs int, now time.Time) bool {
	gained := certs > pt.certs
	pt.certs = max(pt.certs, certs)
	if gained && pt.progressWaits < maxProgressWaits {
		pt.progressWaits++
		pt.next = now.Add(pt.gap)
		return true
	}
	pt.progressWaits = 0
	return false
}

// announced schedules the look after an announcement at now: the wait
// doubles, up to maxWait.
func (pt *pendingTx) announced(now time.Time, maxWait time.Duration) {
	pt.wait = min(2*pt.wait, maxWait)
	pt.gap, pt.next = pt.wait, now.Add(pt.wait)
}

// newPending makes the pending entry of p, first looked at after gap.
func (s *Sidecar) newPending(p *validator.Payment, gap time.Duration) *pendingTx {
	return &pendingTx{p: p, next: time.Now().Add(gap), gap: gap, wait: s.cfg.ReannounceInterval,
		certs: s.board.CertificateCount(p.TxHash)}
}

// addPending records a transaction this validator just signed. When fewer
// peers are subscribed to the tx topic than the mesh will hold (a quorum
// of the committee, or on a sparse mesh every neighbour this node dials:
// the rest hear it through them), as just after a start or an epoch
// change, the first announcement again is due soon rather than after
// ReannounceInterval.
func (s *Sidecar) addPending(p *validator.Payment) {
	first := s.cfg.ReannounceInterval
	// Asking pubsub for the topic's peers goes through its event loop: only
	// while the mesh may still be forming.
	if time.Since(s.startedAt) < meshFormingTime {
		formed := min(s.v.Committee().Quorum()-1, s.mesh.Host().ExpectedPeers())
		if len(s.mesh.ListPeers(p2p.TxTopic(s.domain.ChainID, s.domain.Epoch))) < formed {
			first = min(first, meshFormingRetry)
		}
	}
	s.pending.Add(p.TxHash, s.newPending(p, first))
}

// meshFormingRetry is how soon a transaction announced while the mesh was
// still forming (within meshFormingTime of the start) is announced again.
const (
	meshFormingRetry = 250 * time.Millisecond
	meshFormingTime  = 30 * time.Second
)

// announce queues a client's transaction for the tx topic. When the queue
// is full the announcement is dropped and counted; the transaction is
// announced again by reannounceLoop.
func (s *Sidecar) announce(txHash qc.Hash, req *fastpayv1.SubmitFastPayRequest) {
	select {
	case s.announcements <- req:
	default:
		s.metrics.dropped.WithLabelValues("announce_queue_full").Inc()
		s.log.Debug("announcement queue full; the transaction will be announced again", "tx", txHash)
	}
}

// publishLoop publishes queued announcements on the tx topic. It runs on
// the sidecar's context, so neither a client that disconnects nor pubsub's
// back-pressure affects the request that produced the announcement.
func (s *Sidecar) publishLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case req := <-s.announcements:
			if err := s.mesh.PublishTx(s.ctx, req); err != nil && s.ctx.Err() == nil {
				s.log.Warn("publish transaction to the mesh", "err", err)
			}
		}
	}
}

// restorePending reloads, after a restart, the transactions this validator
// signed whose QC it does not know: their own certificates go back on the
// board, their raw bytes to the settler, and they are due for announcement
// at once.
func (s *Sidecar) restorePending() error {
	signed, err := s.v.UncertifiedSigned()
	if err != nil {
		return err
	}
	for _, sr := range signed {
		p, err := s.v.Decode(sr.Request)
		if sr.Earlier && err == nil {
			// Signed in the previous epoch: signed again, and announced,
			// once the handover into this one completes (closes.go).
			s.offer(p)
			s.earlierMu.Lock()
			s.earlier = append(s.earlier, p)
			s.earlierMu.Unlock()
			continue
		}
		if err != nil || p.TxHash != sr.Cert.TxHash {
			s.log.Warn("stored signed request does not decode to its certificate; not announced again", "tx", sr.Cert.TxHash, "err", err)
			continue
		}
		s.offer(p)
		s.board.SetStage(p.TxHash, fastpayv1.TxLifecycleUpdate_ACCEPTED, 0)
		s.addOwnCertificate(p, sr.Cert)
		s.pending.Add(p.TxHash, s.newPending(p, 0))
	}
	if len(signed) > 0 {
		s.log.Info("signed transactions without a QC will be announced again", "count", len(signed))
	}
	return nil
}

// reannounceLoop sends due pending transactions to the committee.
func (s *Sidecar) reannounceLoop() {
	defer s.wg.Done()
	tick := max(min(s.cfg.ReannounceInterval/4, meshFormingRetry), 10*time.Millisecond)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-ticker.C:
			if due := s.duePending(now); len(due) > 0 {
				s.metrics.reannounced.Add(float64(len(due)))
				s.pushToCommittee(due)
			}
		}
	}
}

// duePending returns the hashes of pending transactions due for another
// announcement, schedules their next one, and forgets those that no longer
// need one.
func (s *Sidecar) duePending(now time.Time) []qc.Hash {
	var head uint64
	if view, err := s.chain.Latest(s.ctx); err == nil {
		head = view.Head().Number
	}
	var due []qc.Hash
	for _, h := range s.pending.Keys() {
		pt, ok := s.pending.Peek(h)
		if !ok {
			continue
		}
		if s.pendingDone(pt.p, head, now) {
			s.pending.Remove(h)
			continue
		}
		if now.Before(pt.next) {
			continue
		}
		if pt.waitForProgress(s.board.CertificateCount(h), now) {
			continue
		}
		pt.announced(now, s.cfg.ReannounceMaxInterval)
		due = append(due, h)
	}
	return due
}

// pendingDone reports whether p needs no further announcement: its QC is
// known, another transaction's QC took its nonce (learnQC's rule, for a
// QC learned before a restart restored p), its key was pruned as settled
// (the guard is gone), or it expired (head 0: the chain is unreachable,
// block expiry not judged).
func (s *Sidecar) pendingDone(p *validator.Payment, head uint64, now time.Time) bool {
	if _, certified := s.board.QC(p.TxHash); certified {
		return true
	}
	key := p.Effects.ContentionKey()
	if other, ok := s.v.CertifiedTx(key); ok && other != p.TxHash {
		return true
	}
	if signed, ok := s.v.SignedTx(key); !ok || signed != p.TxHash {
		return true
	}
	switch p.Expiry.Kind {
	case qc.ExpiryMaxBlockHeight:
		return head > 0 && head >= p.Expiry.Value
	case qc.ExpiryUnixMillis:
		return uint64(now.UnixMilli()) >= p.Expiry.Value
	}
	return false
}

// pushToCommittee sends the pending transactions txs, with their
// certificates, to every connected committee peer and applies the answers.
func (s *Sidecar) pushToCommittee(txs []qc.Hash) {
	batch := s.syncBatchOf(txs, false)
	if len(batch.Txs) == 0 {
		return
	}
	for _, p := range s.mesh.Host().LibP2P().Network().Peers() {
		if !s.isCommitteePeer(p) {
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.exchangeSync(s.ctx, p, batch); err != nil && s.ctx.Err() == nil {
				s.log.Debug("announce again", "peer", p, "err", err)
			}
		}()
	}
}
