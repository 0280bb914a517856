package sidecar

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
)

// Anti-entropy. Gossip delivers a message once, to the peers connected at
// that moment; a validator that was down or cut off misses the payments in
// flight, and without its certificate those may never reach a quorum. So
// when two validators connect, and whenever a transaction this validator
// signed stays without a QC (reannounce.go), a validator opens a direct
// stream to a committee peer and sends the transactions it holds that have
// no QC yet with the certificates it holds for them, and (on connect) the
// QCs it learned recently whose transactions are not yet included (one may
// have formed while the peer was away and reached nobody else). The peer
// handles them exactly like gossip — transactions go through validation,
// certificates and QCs are verified — and answers, on the same stream, with
// what it now holds for those transactions: its QC, or its certificates,
// its own among them. The answer matters because a certificate published
// once is not published again (gossip deduplicates it), so a validator that
// missed a peer's certificate could otherwise never collect it.

const (
	maxSyncTxs   = 1_000
	maxSyncQCs   = 1_000
	maxSyncBytes = 8 << 20
	syncTimeout  = 10 * time.Second
)

func syncProtocol(d qc.Domain) protocol.ID {
	return protocol.ID(fmt.Sprintf("/allegro/%d/%d/sync/2", d.ChainID, d.Epoch))
}

// syncState remembers the peers pushed to during their current connection
// session, so the several connections one peer may open (TCP and QUIC, both
// directions) trigger one push; the entry is cleared when the peer's last
// connection closes.
type syncState struct {
	mu     sync.Mutex
	pushed map[peer.ID]bool
}

// startSync registers the stream handler and the connection watcher.
func (s *Sidecar) startSync() {
	h := s.mesh.Host().LibP2P()
	s.syncs.pushed = make(map[peer.ID]bool)
	h.SetStreamHandler(syncProtocol(s.domain), s.handleSync)
	s.syncNotifiee = &network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		p := c.RemotePeer()
		if !s.isCommitteePeer(p) {
			return
		}
		s.syncs.mu.Lock()
		if s.syncs.pushed[p] {
			s.syncs.mu.Unlock()
			return
		}
		s.syncs.pushed[p] = true
		s.syncs.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.pushSync(p); err != nil && s.ctx.Err() == nil {
				s.log.Debug("sync push", "peer", p, "err", err)
			}
		}()
	}, DisconnectedF: func(n network.Network, c network.Conn) {
		p := c.RemotePeer()
		if len(n.ConnsToPeer(p)) > 0 {
			return
		}
		s.syncs.mu.Lock()
		delete(s.syncs.pushed, p)
		s.syncs.mu.Unlock()
	}}
	h.Network().Notify(s.syncNotifiee)
}

func (s *Sidecar) stopSync() {
	h := s.mesh.Host().LibP2P()
	h.RemoveStreamHandler(syncProtocol(s.domain))
	if s.syncNotifiee != nil {
		h.Network().StopNotify(s.syncNotifiee)
	}
}

func (s *Sidecar) isCommitteePeer(p peer.ID) bool {
	id, err := p2p.ValidatorIDFromPeerID(p)
	return err == nil && s.v.Committee().Contains(id) && id != s.v.Signer().ID()
}

// syncBatchOf collects the pending transactions txs that still have no QC
// here, with the certificates this node holds for them, and with
// recentQCs the recent QCs of transactions not yet included.
// Within the budget of one batch (syncBudget): the pending transactions,
// oldest first (a sender's earlier nonce before its later ones), each with
// its certificates, then the most recent QCs.
func (s *Sidecar) syncBatchOf(txs []qc.Hash, recentQCs bool) *fastpayv1.SyncBatch {
	batch := &fastpayv1.SyncBatch{}
	budget := newSyncBudget()
	if len(txs) > maxSyncTxs {
		txs = txs[len(txs)-maxSyncTxs:] // the most recent
	}
	for _, h := range txs {
		pt, ok := s.pending.Peek(h)
		if !ok {
			continue
		}
		if _, certified := s.board.QC(h); certified {
			s.pending.Remove(h)
			continue
		}
		if !budget.take(pt.p.Request) {
			break
		}
		batch.Txs = append(batch.Txs, pt.p.Request)
		batch.Certs = budget.appendCerts(batch.Certs, s.boardCerts(h))
	}
	if !recentQCs {
		return batch
	}
	keys := s.recentQCs.Keys() // oldest first
	for i := len(keys) - 1; i >= 0; i-- {
		h := keys[i]
		st, known := s.board.Status(h)
		switch {
		case !known || st.QC == nil:
			s.recentQCs.Remove(h) // no longer on the board
			continue
		case st.Stage >= fastpayv1.TxLifecycleUpdate_INCLUDED:
			s.recentQCs.Remove(h) // settled: every node learns it from the chain
			continue
		}
		wire := fastpayv1.NewCompactQuorumCertificate(st.QC)
		if !budget.take(wire) {
			break
		}
		batch.Qcs = append(batch.Qcs, wire)
	}
	return batch
}

// syncBudget keeps a sync batch within maxSyncBytes, the most a peer
// reads: a larger batch would be refused whole. With many members a QC
// holds hundreds of certificates, so a thousand recent QCs would not fit;
// what is left out travels in a later exchange (the next re-announcement
// or connection), or settles meanwhile.
type syncBudget struct{ left int }

// syncBatchSlack covers the batch's own length prefix.
const syncBatchSlack = 16

func newSyncBudget() *syncBudget { return &syncBudget{left: maxSyncBytes - syncBatchSlack} }

// take counts m as a field of the batch if it fits, and reports whether it
// did.
func (b *syncBudget) take(m proto.Message) bool {
	n := proto.Size(m)
	n += 1 + protowire.SizeVarint(uint64(n)) // the field's tag and length
	if n > b.left {
		return false
	}
	b.left -= n
	return true
}

// appendCerts appends the certificates that fit.
func (b *syncBudget) appendCerts(to, certs []*fastpayv1.ValidatorCertificate) []*fastpayv1.ValidatorCertificate {
	for _, c := range certs {
		if !b.take(c) {
			break
		}
		to = append(to, c)
	}
	return to
}

// boardCerts returns the certificates the board holds for a transaction.
func (s *Sidecar) boardCerts(h qc.Hash) []*fastpayv1.ValidatorCertificate {
	st, ok := s.board.Status(h)
	if !ok {
		return nil
	}
	out := make([]*fastpayv1.ValidatorCertificate, 0, len(st.Certs))
	for i := range st.Certs {
		out = append(out, fastpayv1.NewCompactValidatorCertificate(&st.Certs[i]))
	}
	return out
}

// pushSync sends a newly connected peer everything it may have missed.
func (s *Sidecar) pushSync(p peer.ID) error {
	batch := s.syncBatchOf(s.pending.Keys(), true)
	if len(batch.Txs) == 0 && len(batch.Qcs) == 0 {
		return nil
	}
	return s.exchangeSync(s.ctx, p, batch)
}

// exchangeSync sends batch to p over a sync stream and applies p's answer.
func (s *Sidecar) exchangeSync(ctx context.Context, p peer.ID, batch *fastpayv1.SyncBatch) error {
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	st, err := s.mesh.Host().LibP2P().NewStream(ctx, p, syncProtocol(s.domain))
	if err != nil {
		return err
	}
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(syncTimeout))
	if err := writeSyncBatch(st, batch); err != nil {
		_ = st.Reset()
		return err
	}
	if err := st.CloseWrite(); err != nil {
		_ = st.Reset()
		return err
	}
	s.metrics.syncs.WithLabelValues("sent").Inc()
	s.log.Debug("sent sync batch", "peer", p, "txs", len(batch.Txs), "certs", len(batch.Certs), "qcs", len(batch.Qcs))
	var answer fastpayv1.SyncBatch
	if err := readSyncBatch(st, &answer); err != nil {
		s.metrics.syncs.WithLabelValues("invalid").Inc()
		return fmt.Errorf("read answer: %w", err)
	}
	s.metrics.syncs.WithLabelValues("answered").Inc()
	s.applySync(&answer, false)
	return nil
}

// handleSync applies a peer's batch, deciding its transactions at once, and
// answers with what this node then holds for them.
func (s *Sidecar) handleSync(st network.Stream) {
	defer st.Close()
	if !s.isCommitteePeer(st.Conn().RemotePeer()) {
		_ = st.Reset()
		return
	}
	_ = st.SetDeadline(time.Now().Add(syncTimeout))
	var batch fastpayv1.SyncBatch
	if err := readSyncBatch(st, &batch); err != nil {
		s.metrics.syncs.WithLabelValues("invalid").Inc()
		_ = st.Reset()
		return
	}
	s.metrics.syncs.WithLabelValues("received").Inc()
	decided := s.applySync(&batch, true)
	answer := &fastpayv1.SyncBatch{}
	budget := newSyncBudget()
	for _, h := range decided {
		if q, ok := s.board.QC(h); ok {
			if wire := fastpayv1.NewCompactQuorumCertificate(q); budget.take(wire) {
				answer.Qcs = append(answer.Qcs, wire)
			}
			continue
		}
		answer.Certs = budget.appendCerts(answer.Certs, s.boardCerts(h))
	}
	if err := writeSyncBatch(st, answer); err != nil {
		_ = st.Reset()
	}
}

func writeSyncBatch(w io.Writer, batch *fastpayv1.SyncBatch) error {
	bw := bufio.NewWriter(w)
	if _, err := protodelim.MarshalTo(bw, batch); err != nil {
		return err
	}
	return bw.Flush()
}

func readSyncBatch(r io.Reader, batch *fastpayv1.SyncBatch) error {
	opts := protodelim.UnmarshalOptions{MaxSize: maxSyncBytes}
	return opts.UnmarshalFrom(bufio.NewReader(r), batch)
}

// applySync handles a batch as if its items arrived by gossip; invalid items
// are skipped. With decide, its transactions are decided here and now (the
// peer waits for the answer) rather than queued for the workers, and the
// hashes of the transactions that decoded are returned.
func (s *Sidecar) applySync(batch *fastpayv1.SyncBatch, decide bool) []qc.Hash {
	certs, qcs := s.verifiedSyncItems(batch)
	for i := range certs {
		s.addCertificate(certs[i])
	}
	for _, q := range qcs {
		s.onVerifiedQC(q)
	}
	var decided []qc.Hash
	for i, req := range batch.Txs {
		if i >= maxSyncTxs {
			break
		}
		p, err := s.v.Decode(req)
		if err != nil {
			continue
		}
		decided = append(decided, p.TxHash)
		if _, certified := s.board.QC(p.TxHash); certified {
			continue
		}
		if s.v.IngestParentQCs(req) != nil {
			continue
		}
		// As for gossip (onTx): the settler needs the raw bytes, or a QC
		// that forms here (this node's certificate completing a quorum
		// right after a restart) is never sent to the chain.
		s.offer(p)
		if decide {
			s.process(p)
		} else {
			s.enqueue(p)
		}
	}
	return decided
}

// verifiedSyncItems returns the certificates and QCs of a batch that
// verify against the committee. Their signatures are checked together in
// one batch, as a gossip frame's; only when that fails (a peer sent
// something invalid) is each item checked alone, so the valid ones are
// still applied.
func (s *Sidecar) verifiedSyncItems(batch *fastpayv1.SyncBatch) ([]qc.Certificate, []*qc.QC) {
	committee := s.v.Committee()
	b := committee.NewBatch()
	var certs []qc.Certificate
	for _, wire := range batch.GetCerts() {
		cert, err := wire.ToCertificate()
		if err != nil {
			continue
		}
		if b.AddCertificate(&cert) == nil {
			certs = append(certs, cert)
		}
	}
	var qcs []*qc.QC
	for i, wire := range batch.GetQcs() {
		if i >= maxSyncQCs {
			break
		}
		q, err := wire.ToQC()
		if err != nil {
			continue
		}
		if b.AddQC(q) == nil {
			qcs = append(qcs, q)
		}
	}
	if b.Verify() == nil {
		return certs, qcs
	}
	s.metrics.syncs.WithLabelValues("invalid_items").Inc()
	good := certs[:0]
	for i := range certs {
		if committee.VerifyCertificate(&certs[i]) == nil {
			good = append(good, certs[i])
		}
	}
	goodQCs := qcs[:0]
	for _, q := range qcs {
		if committee.VerifyQC(q) == nil {
			goodQCs = append(goodQCs, q)
		}
	}
	return good, goodQCs
}
