package node

import (
	"bufio"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/encoding/protodelim"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
)

// Anti-entropy on reconnect. Gossip delivers a message once, to the peers
// connected at that moment; a validator that was down or cut off misses the
// payments in flight, and without its certificate those may never reach a
// quorum. So when two validators connect, each sends the other, over a
// direct stream, the transactions it holds that have no QC yet and the
// certificates it holds for them, and the QCs it learned recently whose
// transactions are not yet included (one may have formed while the peer was
// away and reached nobody else). The receiver treats them exactly like
// gossip: transactions go through validation, certificates and QCs are
// verified.

const (
	maxSyncTxs   = 1_000
	maxSyncQCs   = 1_000
	maxSyncBytes = 8 << 20
	syncTimeout  = 10 * time.Second
)

func syncProtocol(d qc.Domain) protocol.ID {
	return protocol.ID(fmt.Sprintf("/allegro/%d/%d/sync/1", d.ChainID, d.Epoch))
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

// syncBatch collects the uncertified transactions this node holds and their
// certificates, and its recent QCs of transactions not yet included.
func (s *Sidecar) syncBatch() *fastpayv1.SyncBatch {
	batch := &fastpayv1.SyncBatch{}
	keys := s.pending.Keys()
	if len(keys) > maxSyncTxs {
		keys = keys[len(keys)-maxSyncTxs:] // the most recent
	}
	for _, h := range keys {
		req, ok := s.pending.Peek(h)
		if !ok {
			continue
		}
		if _, certified := s.board.QC(h); certified {
			s.pending.Remove(h)
			continue
		}
		batch.Txs = append(batch.Txs, req)
		if st, ok := s.board.Status(h); ok {
			for i := range st.Certs {
				batch.Certs = append(batch.Certs, fastpayv1.NewValidatorCertificate(&st.Certs[i]))
			}
		}
	}
	for _, h := range s.recentQCs.Keys() {
		q, ok := s.recentQCs.Peek(h)
		if !ok {
			continue
		}
		if st, known := s.board.Status(h); known && st.Stage >= fastpayv1.TxLifecycleUpdate_INCLUDED {
			s.recentQCs.Remove(h) // settled: every node learns it from the chain
			continue
		}
		batch.Qcs = append(batch.Qcs, fastpayv1.NewQuorumCertificate(q))
	}
	return batch
}

func (s *Sidecar) pushSync(p peer.ID) error {
	batch := s.syncBatch()
	if len(batch.Txs) == 0 && len(batch.Qcs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, syncTimeout)
	defer cancel()
	st, err := s.mesh.Host().LibP2P().NewStream(ctx, p, syncProtocol(s.domain))
	if err != nil {
		return err
	}
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(syncTimeout))
	w := bufio.NewWriter(st)
	if _, err := protodelim.MarshalTo(w, batch); err != nil {
		_ = st.Reset()
		return err
	}
	if err := w.Flush(); err != nil {
		_ = st.Reset()
		return err
	}
	s.metrics.syncs.WithLabelValues("sent").Inc()
	s.log.Debug("sent sync batch", "peer", p, "txs", len(batch.Txs), "certs", len(batch.Certs), "qcs", len(batch.Qcs))
	return nil
}

func (s *Sidecar) handleSync(st network.Stream) {
	defer st.Close()
	if !s.isCommitteePeer(st.Conn().RemotePeer()) {
		_ = st.Reset()
		return
	}
	_ = st.SetDeadline(time.Now().Add(syncTimeout))
	var batch fastpayv1.SyncBatch
	opts := protodelim.UnmarshalOptions{MaxSize: maxSyncBytes}
	if err := opts.UnmarshalFrom(bufio.NewReader(st), &batch); err != nil {
		s.metrics.syncs.WithLabelValues("invalid").Inc()
		_ = st.Reset()
		return
	}
	s.metrics.syncs.WithLabelValues("received").Inc()
	s.applySync(&batch)
}

// applySync handles a batch as if its items arrived by gossip. Invalid items
// are skipped.
func (s *Sidecar) applySync(batch *fastpayv1.SyncBatch) {
	committee := s.v.Committee()
	for _, wire := range batch.Certs {
		cert, err := wire.ToCertificate()
		if err != nil || committee.VerifyCertificate(&cert) != nil {
			continue
		}
		s.addCertificate(cert)
	}
	for i, wire := range batch.Qcs {
		if i >= maxSyncQCs {
			break
		}
		q, err := wire.ToQC()
		if err != nil || committee.VerifyQC(q) != nil {
			continue
		}
		s.onVerifiedQC(q)
	}
	for i, req := range batch.Txs {
		if i >= maxSyncTxs {
			break
		}
		p, err := s.v.Decode(req)
		if err != nil {
			continue
		}
		if _, certified := s.board.QC(p.TxHash); certified {
			continue
		}
		// As for gossip (onTx): the settler needs the raw bytes, or a QC
		// that forms here (this node's certificate completing a quorum
		// right after a restart) is never sent to the chain.
		s.offer(p)
		s.enqueue(p)
	}
}
