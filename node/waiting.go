package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/bulletin"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/validator"
)

// A sidecar whose key is in no committee yet (an operator who joins: its
// binding made, its consensus key not yet active on chain) runs no node.
// It serves a waiting API on the node's address meanwhile, so its
// operator sees why: /readyz answers 503 naming the epoch and the key,
// /api/v1/info, /api/v1/committee (and ?epoch=), /api/v1/chain/head and the
// dashboard answer, and a payment is refused with a retryable error. The
// Runner stops it before the node of the first epoch whose committee holds
// the key starts on the same address.

// errNotInCommittee is the waiting sidecar's signing health.
var errNotInCommittee = errors.New("not in the committee")

// waitingBackend is the apiserver backend of a waiting sidecar.
type waitingBackend struct {
	r     *Runner
	board *bulletin.Board // empty: the sidecar takes part in nothing
	reg   *prometheus.Registry
}

var (
	_ apiserver.Backend         = (*waitingBackend)(nil)
	_ apiserver.EpochCommittees = (*waitingBackend)(nil)
)

// newWaitingAPI builds the waiting API of r in epoch e.
func (r *Runner) newWaitingAPI(e uint64) (*apiserver.Server, error) {
	reg := prometheus.NewRegistry()
	// The board stays empty; it needs a committee, and the epoch's may not
	// be known yet (the chain below its committee block).
	c, err := qc.NewCommittee(qc.Domain{ChainID: r.file.ChainID, Epoch: e}, []qc.Member{{Name: r.id.Name, ID: r.selfID()}})
	if err != nil {
		return nil, err
	}
	board, err := bulletin.New(bulletin.DefaultConfig(), c, r.selfID(), nil, reg, r.log)
	if err != nil {
		return nil, err
	}
	return apiserver.New(r.cfg.API, &waitingBackend{r: r, board: board, reg: reg}, r.log)
}

func (w *waitingBackend) notIn() error {
	e, _ := w.r.Epoch()
	return fmt.Errorf("%w of epoch %d: sidecar key %s signs from the first epoch whose committee holds it (its consensus key active on chain at that epoch's committee block, with a binding to this key)",
		errNotInCommittee, e, w.r.selfID().Hex())
}

func (w *waitingBackend) Submit(context.Context, *fastpayv1.SubmitFastPayRequest) (qc.Certificate, error) {
	return qc.Certificate{}, &validator.Reject{Code: fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE, Message: w.notIn().Error(), Cause: errNotInCommittee}
}

func (w *waitingBackend) Board() *bulletin.Board { return w.board }

func (w *waitingBackend) ChainHead(ctx context.Context) (tempo.Head, error) {
	view, err := w.r.heads.Latest(ctx)
	if err != nil {
		return tempo.Head{}, err
	}
	return view.Head(), nil
}

// ChainHealth reports the chain unreachable when the newest head cannot be
// read within a short bound.
func (w *waitingBackend) ChainHealth() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := w.r.heads.Latest(ctx)
	return err
}

func (w *waitingBackend) StoreHealth() error { return nil }

func (w *waitingBackend) SigningHealth() error { return w.notIn() }

func (w *waitingBackend) Info() apiserver.NodeInfo {
	e, _ := w.r.Epoch()
	id := w.r.selfID()
	info := apiserver.NodeInfo{Name: w.r.id.Name, ID: id, ChainID: w.r.file.ChainID, Epoch: e}
	if pid, err := p2p.PeerIDFromValidatorID(id); err == nil {
		info.PeerID = pid.String()
	}
	return info
}

// Committee describes the current epoch's committee, without link states:
// a waiting sidecar has no peers.
func (w *waitingBackend) Committee() apiserver.CommitteeInfo {
	e, _ := w.r.Epoch()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := committeeInfoAt(ctx, w.r.resolver, w.r.file, e)
	if err != nil {
		return apiserver.CommitteeInfo{ChainID: w.r.file.ChainID, Epoch: e, EpochLength: w.r.file.EpochLength}
	}
	return info
}

func (w *waitingBackend) CommitteeAt(ctx context.Context, e uint64) (apiserver.CommitteeInfo, error) {
	return committeeInfoAt(ctx, w.r.resolver, w.r.file, e)
}

func (w *waitingBackend) Gatherer() prometheus.Gatherer { return w.reg }

// startWaiting serves the waiting API while no node of r runs; it is a
// no-op when it already runs.
func (r *Runner) startWaiting(ctx context.Context, e uint64) {
	r.mu.Lock()
	running := r.waiting != nil
	r.mu.Unlock()
	if running {
		return
	}
	srv, err := r.newWaitingAPI(e)
	if err == nil {
		err = srv.Start(ctx)
	}
	if err != nil {
		r.log.Warn("cannot serve the API while waiting to join the committee", "err", err)
		return
	}
	r.mu.Lock()
	r.waiting = srv
	r.mu.Unlock()
	r.log.Info("waiting to join: serving the API (readiness 503 until this key is in an epoch's committee)", "addr", srv.Addr().String(), "epoch", e)
}

// stopWaiting stops the waiting API, so a node can take its address.
func (r *Runner) stopWaiting() {
	r.mu.Lock()
	srv := r.waiting
	r.waiting = nil
	r.mu.Unlock()
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Stop(ctx); err != nil {
		r.log.Warn("stopping the waiting API", "err", err)
	}
}

// APIAddr is the address the sidecar's API listens on now: its node's, or
// the waiting API's while it is in no committee (nil when neither runs).
func (r *Runner) APIAddr() net.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.cur != nil && r.cur.API != nil:
		return r.cur.API.Addr()
	case r.waiting != nil:
		return r.waiting.Addr()
	}
	return nil
}
