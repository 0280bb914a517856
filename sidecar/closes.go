package sidecar

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/epoch"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
)

// Closes (SPEC §5a). A close lists every unsettled key of its signer, so it
// can be far larger than a gossip frame; closes travel over a direct stream
// instead. While its handover is not complete, a member asks every connected
// peer of the old or the new committee for the closes of the old epoch it
// holds, and every sidecar answers with its own and those it adopted, so a
// close reaches the new committee through any member that has it, and a
// member that restarts gets them again from its peers.

const (
	maxCloseBundleBytes  = 64 << 20
	maxCloseRequestBytes = 64 << 10 // an epoch and up to ~1,500 signers
	closeFetchTimeout    = 10 * time.Second
)

func closesProtocol(chainID uint64) protocol.ID {
	return protocol.ID(fmt.Sprintf("/allegro/%d/closes/1", chainID))
}

// closeBook holds the closes this sidecar serves: by epoch, then signer.
type closeBook struct {
	mu      sync.Mutex
	byEpoch map[uint64]map[qc.ValidatorID]*fastpayv1.EpochClose
}

func (b *closeBook) add(cl *qc.Close) error {
	wire, err := fastpayv1.NewEpochClose(cl)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.byEpoch == nil {
		b.byEpoch = make(map[uint64]map[qc.ValidatorID]*fastpayv1.EpochClose)
	}
	m := b.byEpoch[cl.Epoch]
	if m == nil {
		m = make(map[qc.ValidatorID]*fastpayv1.EpochClose)
		b.byEpoch[cl.Epoch] = m
	}
	if _, ok := m[cl.Signer]; !ok {
		m[cl.Signer] = wire
	}
	return nil
}

// of returns the closes of epoch held, but those of the signers in have.
func (b *closeBook) of(epoch uint64, have map[qc.ValidatorID]bool) []*fastpayv1.EpochClose {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*fastpayv1.EpochClose, 0, len(b.byEpoch[epoch]))
	for signer, w := range b.byEpoch[epoch] {
		if !have[signer] {
			out = append(out, w)
		}
	}
	return out
}

// HoldClose makes the sidecar serve cl (its own close, made when its epoch
// ended) to the members of the next committee.
func (s *Sidecar) HoldClose(cl *qc.Close) error { return s.closes.add(cl) }

// Handover returns the handover the sidecar entered its epoch with (nil:
// none).
func (s *Sidecar) Handover() *epoch.Handover { return s.handover }

// HandoverDone is closed when the handover into this epoch completed (at
// once without one).
func (s *Sidecar) HandoverDone() <-chan struct{} { return s.handoverDone }

func (s *Sidecar) startCloses() {
	s.mesh.Host().LibP2P().SetStreamHandler(closesProtocol(s.domain.ChainID), s.handleCloses)
	if s.handover == nil {
		close(s.handoverDone)
		s.resignEarlier()
		return
	}
	// What was adopted before a restart (and this validator's own close)
	// is adopted again at once.
	stored, err := s.v.AdoptedCloses()
	if err != nil {
		s.log.Warn("cannot read the closes adopted before a restart; asking peers again", "err", err)
	}
	for _, cl := range stored {
		if _, err := s.handover.AddClose(cl); err == nil {
			_ = s.closes.add(cl)
		}
	}
	s.wg.Add(1)
	go s.handoverLoop()
}

func (s *Sidecar) stopCloses() {
	s.mesh.Host().LibP2P().RemoveStreamHandler(closesProtocol(s.domain.ChainID))
}

// isClosePeer reports whether p may ask for and serve closes: a member of
// this committee or of the one this sidecar takes over from.
func (s *Sidecar) isClosePeer(p peer.ID) bool {
	id, err := p2p.ValidatorIDFromPeerID(p)
	if err != nil || id == s.v.Signer().ID() {
		return false
	}
	if s.v.Committee().Contains(id) {
		return true
	}
	return s.handover != nil && s.handover.Previous().Contains(id)
}

func (s *Sidecar) handleCloses(st network.Stream) {
	if !s.isClosePeer(st.Conn().RemotePeer()) && !s.servesPreviousMembers(st.Conn().RemotePeer()) {
		_ = st.Reset()
		return
	}
	var req fastpayv1.CloseRequest
	answer(st, closeFetchTimeout, &req, maxCloseRequestBytes, func() proto.Message {
		have := make(map[qc.ValidatorID]bool, len(req.Have))
		for _, b := range req.Have {
			if id, err := qc.ValidatorIDFromBytes(b); err == nil {
				have[id] = true
			}
		}
		return &fastpayv1.CloseBundle{Closes: s.closes.of(req.Epoch, have)}
	})
}

// servesPreviousMembers: a sidecar whose epoch ended keeps answering the
// next committee, whose members it may not know; any validator key may ask
// it (closes are public and self-authenticating).
func (s *Sidecar) servesPreviousMembers(p peer.ID) bool {
	_, err := p2p.ValidatorIDFromPeerID(p)
	return err == nil && s.v.Stopped()
}

// fetchCloses asks p for the closes of epoch it holds, but those of the
// signers in have.
func (s *Sidecar) fetchCloses(ctx context.Context, p peer.ID, epoch uint64, have [][]byte) ([]*qc.Close, error) {
	var bundle fastpayv1.CloseBundle
	if err := s.ask(ctx, p, closesProtocol(s.domain.ChainID), closeFetchTimeout, &fastpayv1.CloseRequest{Epoch: epoch, Have: have}, &bundle, maxCloseBundleBytes); err != nil {
		return nil, fmt.Errorf("closes: %w", err)
	}
	out := make([]*qc.Close, 0, len(bundle.Closes))
	for _, w := range bundle.Closes {
		cl, err := w.ToClose()
		if err != nil {
			continue // malformed: the handover would refuse it anyway
		}
		out = append(out, cl)
	}
	return out, nil
}

// handoverLoop gathers closes of the previous epoch from connected peers
// until the handover completes, then signs again what this validator
// signed in the previous epoch and still holds, and from then on releases
// listed keys the chain has settled.
func (s *Sidecar) handoverLoop() {
	defer s.wg.Done()
	h := s.handover
	closed := h.Next() - 1
	start := time.Now()
	ticker := time.NewTicker(s.cfg.CloseFetchInterval)
	defer ticker.Stop()
	var releasedAt uint64 // head of the last release
	for done := false; ; {
		if !done {
			if !h.Complete(s.head()) {
				s.askForCloses(closed)
			}
			if h.Complete(s.head()) {
				done = true
				st := h.Status()
				s.log.Info("handover complete: signing in the new epoch", "epoch", h.Next(), "closes", st.Closes, "quorum", st.Quorum,
					"close_height", st.CloseHeight, "listed_keys", st.ListedKeys, "dropped_entries", st.DroppedEntry, "took", time.Since(start).Round(time.Millisecond))
				close(s.handoverDone)
				// Mesh transactions refused while the handover was pending
				// are decided now, not when their retry falls due.
				s.parked.wakeRetries(s.enqueue)
				s.resignEarlier()
			}
		} else {
			s.releaseSettled(h, &releasedAt)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// askForCloses asks every connected close peer for the closes of epoch
// closed this sidecar does not hold yet, and adopts what they send.
func (s *Sidecar) askForCloses(closed uint64) {
	signers := s.handover.Signers()
	have := make([][]byte, len(signers))
	for i := range signers {
		have[i] = signers[i][:]
	}
	var wg sync.WaitGroup
	for _, p := range s.mesh.Host().LibP2P().Network().Peers() {
		if !s.isClosePeer(p) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			closes, err := s.fetchCloses(s.ctx, p, closed, have)
			if err != nil {
				s.log.Debug("ask for closes", "peer", p, "epoch", closed, "err", err)
				return
			}
			for _, cl := range closes {
				s.adoptClose(cl)
			}
		}()
	}
	wg.Wait()
}

// adoptClose adds a close to the handover and, when new, serves it on.
func (s *Sidecar) adoptClose(cl *qc.Close) {
	got, err := s.handover.AddClose(cl)
	switch {
	case err != nil:
		s.metrics.closes.WithLabelValues("refused").Inc()
		s.log.Warn("refused a close", "epoch", cl.Epoch, "signer", cl.Signer.Hex(), "err", err)
	case got.New:
		s.metrics.closes.WithLabelValues("adopted").Inc()
		if got.Dropped > 0 {
			s.log.Warn("close entries that do not verify were dropped", "signer", cl.Signer.Hex(), "dropped", got.Dropped)
		}
		if err := s.closes.add(cl); err != nil {
			s.log.Warn("cannot serve an adopted close", "err", err)
		}
		if err := s.v.RecordAdoptedClose(cl); err != nil {
			s.log.Warn("cannot store an adopted close (adopted again from peers after a restart)", "err", err)
		}
	}
}

// releaseSettled forgets listed keys the chain's nonce has passed, once per
// new head, reading each (sender, nonce key)'s nonce once.
func (s *Sidecar) releaseSettled(h *epoch.Handover, lastHead *uint64) {
	view, err := s.chain.Latest(s.ctx)
	if err != nil || view.Head().Number == *lastHead {
		return
	}
	*lastHead = view.Head().Number
	type slot struct {
		sender qc.Address
		key    qc.NonceKey
	}
	// The chain is read outside the handover's lock: signing consults it.
	nonces := make(map[slot]uint64)
	for _, k := range h.Keys() {
		sl := slot{k.Sender, k.NonceKey}
		n, ok := nonces[sl]
		if !ok {
			if n, err = view.NonceOf(s.ctx, common.Address(k.Sender), k.NonceKey); err != nil {
				continue
			}
			nonces[sl] = n
		}
		if n > k.NonceSeq {
			h.Release(k)
		}
	}
}

func (s *Sidecar) head() uint64 {
	view, err := s.chain.Latest(s.ctx)
	if err != nil {
		return 0
	}
	return view.Head().Number
}

// resignEarlier signs again, in this epoch, the transactions this
// validator signed in the previous one that still have no QC, and
// announces them on this epoch's topics with the new certificates.
func (s *Sidecar) resignEarlier() {
	s.earlierMu.Lock()
	earlier := s.earlier
	s.earlier = nil
	s.earlierMu.Unlock()
	for _, p := range earlier {
		cert, err := s.v.SubmitDecoded(s.ctx, p)
		if err != nil {
			s.log.Info("transaction of the previous epoch not signed again", "tx", p.TxHash, "err", err)
			continue
		}
		s.addOwnCertificate(p, cert)
		s.announce(p.TxHash, p.Request)
		s.pending.Add(p.TxHash, s.newPending(p, s.cfg.ReannounceInterval))
	}
	if len(earlier) > 0 {
		s.log.Info("transactions of the previous epoch signed again and announced", "count", len(earlier))
	}
}
