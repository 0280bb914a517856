package sidecar

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
)

// Bindings in the mesh (SPEC §5a). On a network whose committees come from
// the chain, a sidecar key binding reaches one sidecar (its API, or its
// bindings directory) and from there every other: each sidecar serves the
// bindings of its directory over a stream, and every BindingPullInterval
// asks its connected committee peers for those it lacks. A binding is kept
// when both its signatures verify for the chain and it takes effect after
// the current epoch (a committee already derived never changes); whether
// its consensus key is active is judged when a committee is derived.

const (
	maxBindingBundleBytes  = 8 << 20
	maxBindingRequestBytes = 1 << 20 // digests of up to ~30,000 bindings
	bindingPullTimeout     = 10 * time.Second
)

func bindingsProtocol(chainID uint64) protocol.ID {
	return protocol.ID(fmt.Sprintf("/allegro/%d/bindings/1", chainID))
}

func (s *Sidecar) startBindings() {
	if s.bindingsDir == "" {
		return
	}
	s.mesh.Host().LibP2P().SetStreamHandler(bindingsProtocol(s.domain.ChainID), s.handleBindings)
	s.wg.Add(1)
	go s.pullBindingsLoop()
}

func (s *Sidecar) stopBindings() {
	if s.bindingsDir != "" {
		s.mesh.Host().LibP2P().RemoveStreamHandler(bindingsProtocol(s.domain.ChainID))
	}
}

// localBindings returns the bindings of the directory (files that do not
// load are skipped: they are the operator's to fix, and are logged when a
// committee is derived).
func (s *Sidecar) localBindings() []qc.Binding {
	bs, _, err := committee.LoadBindings(s.bindingsDir)
	if err != nil {
		return nil
	}
	return bs
}

// AddBinding keeps a binding a client handed in, after the checks of a
// binding learned while the network runs: both signatures, the chain, and
// a first epoch at least two after the current one (committee.AcceptBinding).
// It reports whether the binding was new.
func (s *Sidecar) AddBinding(b qc.Binding) (bool, error) {
	if s.bindingsDir == "" {
		return false, ErrNoBindings
	}
	if err := committee.AcceptBinding(&b, s.domain.Epoch); err != nil {
		return false, err
	}
	return committee.AddBinding(s.bindingsDir, s.domain.ChainID, b)
}

// TakesBindings reports whether the network's committees come from the
// chain, so that the sidecar keeps bindings.
func (s *Sidecar) TakesBindings() bool { return s.bindingsDir != "" }

// Bindings returns the bindings this sidecar holds (nil on a network whose
// committee is a file).
func (s *Sidecar) Bindings() []qc.Binding {
	if s.bindingsDir == "" {
		return nil
	}
	return s.localBindings()
}

// ErrNoBindings: the network's committee is a file, not the chain's set.
var ErrNoBindings = fmt.Errorf("sidecar: this network's committee is a file: it takes no bindings")

func (s *Sidecar) handleBindings(st network.Stream) {
	if _, err := p2p.ValidatorIDFromPeerID(st.Conn().RemotePeer()); err != nil {
		_ = st.Reset()
		return
	}
	var have fastpayv1.BindingRequest
	answer(st, bindingPullTimeout, &have, maxBindingRequestBytes, func() proto.Message {
		known := make(map[qc.Hash]bool, len(have.Have))
		for _, h := range have.Have {
			if d, err := qc.HashFromBytes(h); err == nil {
				known[d] = true
			}
		}
		var out fastpayv1.BindingBundle
		for _, b := range s.localBindings() {
			if !known[b.Digest()] {
				out.Bindings = append(out.Bindings, fastpayv1.NewSidecarBinding(&b))
			}
		}
		return &out
	})
}

func (s *Sidecar) pullBindingsLoop() {
	defer s.wg.Done()
	ticker := time.NewTicker(s.cfg.BindingPullInterval)
	defer ticker.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-ticker.C:
		}
		have := s.localBindings()
		digests := make([][]byte, len(have))
		for i := range have {
			d := have[i].Digest()
			digests[i] = d[:]
		}
		for _, p := range s.mesh.Host().LibP2P().Network().Peers() {
			if !s.isCommitteePeer(p) {
				continue
			}
			got, err := s.pullBindings(s.ctx, p, digests)
			if err != nil {
				s.log.Debug("pull bindings", "peer", p, "err", err)
				continue
			}
			for _, b := range got {
				// A binding for the current epoch or an earlier one would
				// change a committee some members already derived.
				if b.FirstEpoch <= s.domain.Epoch {
					continue
				}
				if added, err := committee.AddBinding(s.bindingsDir, s.domain.ChainID, b); err != nil {
					s.log.Warn("refused a binding from a peer", "peer", p, "consensus_key", b.ConsensusKey.Hex(), "err", err)
				} else if added {
					s.log.Info("binding learned from the mesh", "consensus_key", b.ConsensusKey.Hex(), "sidecar_key", b.SidecarKey.Hex(), "first_epoch", b.FirstEpoch)
				}
			}
		}
	}
}

func (s *Sidecar) pullBindings(ctx context.Context, p peer.ID, have [][]byte) ([]qc.Binding, error) {
	var bundle fastpayv1.BindingBundle
	if err := s.ask(ctx, p, bindingsProtocol(s.domain.ChainID), bindingPullTimeout, &fastpayv1.BindingRequest{Have: have}, &bundle, maxBindingBundleBytes); err != nil {
		return nil, err
	}
	out := make([]qc.Binding, 0, len(bundle.Bindings))
	for _, w := range bundle.Bindings {
		if b, err := w.ToBinding(); err == nil {
			out = append(out, b)
		}
	}
	return out, nil
}
