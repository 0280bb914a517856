package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/bulletin"
	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/epoch"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/settlement"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/chain"
	"github.com/allegro-mesh/allegro/validator"
)

// Runner runs a sidecar across mesh epochs (SPEC §5a). A network whose
// committee file sets epoch_length changes epochs with the chain: when the
// chain's head reaches the next epoch's first block, the Runner closes the
// validator's epoch (it stops signing in it and makes its close), stops
// that epoch's node and starts the next epoch's, which signs once it holds
// closes from a quorum of the old committee. What the two epochs share
// lives in the Runner: the durable store (through the data directory), and
// one settler, so nothing certified in one epoch is dropped at the
// boundary. Without epoch_length the Runner runs one node, as New does.
type Runner struct {
	cfg  Config
	opts []Option
	file *committee.File
	id   *Identity
	log  *slog.Logger

	api      *apiListener      // the API socket every epoch's server shares (with epochs)
	heads    tempo.ChainReader // the head that drives the epochs
	client   *chain.Client     // heads, when dialled by the Runner
	settler  *settlement.Settler
	metrics  *prometheus.Registry // the settler's
	stages   *stagesRelay
	injected bool // the chain reader was given (WithChain)

	mu        sync.Mutex
	earlier   []apiserver.EpochBoard // boards of the last epochs before cur's, newest first
	cur       *Node                  // nil while this validator is in no committee
	waiting   *apiserver.Server      // the API served while cur is nil (waiting.go)
	nodeEpoch uint64                 // cur's epoch
	epoch     uint64                 // the chain's
	changed   chan struct{}          // closed and replaced at each epoch change

	// Committees by epoch: the file's members in each epoch's domain, or
	// derived from the chain's validator set and the bindings.
	resolver *committee.Resolver

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	fatal  chan error
}

// NewRunner checks cfg and the committee like New; nothing runs until
// Start.
func NewRunner(cfg Config, opts ...Option) (*Runner, error) {
	o := resolveOptions(opts)
	f, id, err := precheck(cfg, &o)
	if err != nil {
		return nil, err
	}
	r := &Runner{cfg: cfg, opts: opts, file: f, id: id, log: o.logger.With("component", "epochs"),
		heads: o.chain, injected: o.chain != nil, changed: make(chan struct{}), fatal: make(chan error, 1)}
	if r.Epochs() {
		r.api = newAPIListener(cfg.API.Listen)
		r.cfg.API.Listen = r.api.listen
	}
	if f.FromChain() {
		if _, ok := o.chain.(committee.ValidatorReader); o.chain != nil && !ok {
			return nil, errors.New("epochs: committee_source = \"chain\" needs a chain that serves the validator set")
		}
	}
	return r, nil
}

// Epochs reports whether the network changes epochs.
func (r *Runner) Epochs() bool { return r.file.EpochLength > 0 }

// Node returns the node of the current epoch.
func (r *Runner) Node() *Node {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur
}

// Epoch returns the current epoch and a channel closed at the next change.
func (r *Runner) Epoch() (uint64, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.epoch, r.changed
}

// Fatal delivers an error after which the sidecar must not go on: its
// node's (a doppelganger) or an epoch change that failed.
func (r *Runner) Fatal() <-chan error { return r.fatal }

// Start starts the node of the chain's current epoch (dialling the chain
// first when epochs are on) and follows the chain from there.
func (r *Runner) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil && r.api != nil {
			_ = r.api.close() // nothing serves it
		}
	}()
	if !r.Epochs() {
		n, err := New(r.cfg, append(r.opts, WithCommittee(r.file), WithIdentity(r.id.Name, r.id.Key))...)
		if err != nil {
			return err
		}
		if err := n.Start(ctx); err != nil {
			return err
		}
		r.setNode(n, r.file.Epoch, r.file.Epoch)
		r.watchFatal(n)
		return nil
	}
	if err := r.startChain(ctx); err != nil {
		return err
	}
	if err := r.newResolver(); err != nil {
		return err
	}
	head, err := r.headNumber(ctx)
	if err != nil {
		return fmt.Errorf("epochs: the chain's head: %w", err)
	}
	e := r.file.EpochOf(head)
	if r.member(e) {
		n, err := r.startEpoch(ctx, e, nil)
		if err != nil {
			return err
		}
		r.setNode(n, e, e)
	} else {
		r.log.Warn("this validator is not in the committee of the current epoch: waiting for an epoch whose committee holds it", "epoch", e, "sidecar_key", r.selfID().Hex())
		r.setNode(nil, 0, e)
		r.startWaiting(ctx, e)
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.done = make(chan struct{})
	go r.follow()
	return nil
}

// Stop stops the current node, the settler and the chain client.
func (r *Runner) Stop(ctx context.Context) error {
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
	r.stopWaiting()
	var errs []error
	if n := r.Node(); n != nil {
		errs = append(errs, n.Stop(ctx))
	}
	if r.settler != nil {
		errs = append(errs, r.settler.Stop(ctx))
	}
	if r.client != nil {
		errs = append(errs, r.client.Stop(ctx))
	}
	if r.api != nil {
		errs = append(errs, r.api.close())
	}
	return errors.Join(errs...)
}

func (r *Runner) setNode(n *Node, nodeEpoch, e uint64) {
	r.mu.Lock()
	r.cur, r.nodeEpoch, r.epoch = n, nodeEpoch, e
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

func (r *Runner) watchFatal(n *Node) {
	go func() {
		select {
		case err := <-n.Sidecar.Fatal():
			select {
			case r.fatal <- err:
			default:
			}
		case <-n.stopped:
		}
	}()
}

// startChain dials the chain for heads and builds the settler the epochs
// share (none on a chain that cannot take transactions).
func (r *Runner) startChain(ctx context.Context) error {
	if r.heads == nil {
		ccfg := r.cfg.Chain
		if ccfg.ExpectedChainID == 0 {
			ccfg.ExpectedChainID = r.file.ChainID
		}
		c, err := chain.New(ccfg, r.log)
		if err != nil {
			return plain(err)
		}
		if err := c.Start(ctx); err != nil {
			return fmt.Errorf("epochs: chain: %w", err)
		}
		r.client, r.heads = c, c
	}
	sc, ok := r.heads.(settlement.Chain)
	if !ok {
		return nil
	}
	r.stages = &stagesRelay{}
	r.metrics = prometheus.NewRegistry()
	s, err := settlement.New(r.cfg.Settlement, sc, r.stages, r.metrics, r.log)
	if err != nil {
		return err
	}
	if err := s.Start(ctx); err != nil {
		return err
	}
	r.settler = s
	return nil
}

func (r *Runner) headNumber(ctx context.Context) (uint64, error) {
	view, err := r.heads.Latest(ctx)
	if err != nil {
		return 0, err
	}
	return view.Head().Number, nil
}

// newResolver builds the resolver of the network's committees once the
// chain is known.
func (r *Runner) newResolver() error {
	vs, _ := r.heads.(committee.ValidatorReader)
	res, err := committee.NewResolver(r.file, vs, r.cfg.BindingsPath())
	if err != nil {
		return err
	}
	res.OnDerived = func(e, block uint64, c *qc.Committee, report committee.DeriveReport, bad []committee.BindingFileError) {
		r.log.Info("committee derived from the chain", "epoch", e, "block", block, "seats", c.N(), "members", len(c.Members()), "quorum", c.Quorum(),
			"unbound_seats", len(report.Unbound), "refused_bindings", len(report.Refused)+len(bad), "hash", c.Hash())
		for _, rb := range report.Refused {
			r.log.Warn("binding refused", "epoch", e, "consensus_key", rb.Binding.ConsensusKey.Hex(), "sidecar_key", rb.Binding.SidecarKey.Hex(), "err", rb.Err)
		}
		for _, b := range bad {
			r.log.Warn("binding file refused", "epoch", e, "err", b.Error())
		}
	}
	r.resolver = res
	return nil
}

// committeeAt returns the committee of epoch e (nil when it cannot be
// known: before the network's first epoch, or the chain cannot tell yet,
// in which case it is asked again at the next tick).
func (r *Runner) committeeAt(e uint64) *qc.Committee {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := r.resolver.Committee(ctx, e)
	if err != nil {
		r.log.Debug("committee of an epoch not known yet", "epoch", e, "err", err)
		return nil
	}
	return c
}

func (r *Runner) selfID() qc.ValidatorID {
	var id qc.ValidatorID
	copy(id[:], r.id.Key.Public().(ed25519.PublicKey))
	return id
}

func (r *Runner) member(e uint64) bool {
	c := r.committeeAt(e)
	return c != nil && c.Contains(r.selfID())
}

// startEpoch builds and starts the node of epoch e. own is this
// validator's close of e−1 when it just made it; after a restart it is read
// from the store (and made there if the validator was a member of e−1 and
// never closed it).
func (r *Runner) startEpoch(ctx context.Context, e uint64, own *qc.Close) (*Node, error) {
	f := *r.file
	f.Epoch = e
	f.CommitteeSource = ""
	c := r.committeeAt(e)
	if c == nil {
		return nil, fmt.Errorf("epochs: the committee of epoch %d is not known", e)
	}
	cfg := r.cfg
	if r.Node() != nil {
		// The doppelganger check belongs to the process's start: a node of
		// a later epoch would otherwise not sign for the window after
		// every boundary.
		cfg.Sidecar.DoppelgangerWindow = 0
	}
	opts := append(append([]Option(nil), r.opts...), WithCommittee(&f), WithIdentity(r.id.Name, r.id.Key), WithQCCommittee(c), WithResolver(r.resolver),
		WithEarlierBoards(r.earlierBoards))
	if r.file.FromChain() {
		opts = append(opts, WithBindingsDir(r.cfg.BindingsPath()))
	}
	if end, err := (committee.Schedule{EpochLength: r.file.EpochLength}).FirstBlock(e + 1); err == nil {
		opts = append(opts, WithEpochEnd(end))
	}
	if r.settler != nil {
		opts = append(opts, WithSettler(r.settler, r.metrics))
	}
	if e > r.file.Epoch {
		if own == nil && r.member(e-1) {
			var err error
			if own, err = r.closeMissedEpoch(ctx, e-1); err != nil {
				return nil, err
			}
		}
		h, err := epoch.NewHandover(r.committeeAt(e-1), r.committeeAt, validator.CloseRequestCheck(r.file.ChainID))
		if err != nil {
			return nil, err
		}
		if own != nil {
			if _, err := h.AddClose(own); err != nil {
				return nil, fmt.Errorf("epochs: own close of epoch %d: %w", e-1, err)
			}
			opts = append(opts, WithCloses(own))
		}
		opts = append(opts, WithHandover(h))
	}
	n, err := New(cfg, opts...)
	if err != nil {
		return nil, err
	}
	if err := n.Start(ctx); err != nil {
		return nil, err
	}
	if r.stages != nil {
		r.stages.board.Store(n.Sidecar.Board())
	}
	r.watchFatal(n)
	return n, nil
}

// closeMissedEpoch makes this validator's close of epoch e when it was not
// made at the boundary (the sidecar was down then): a validator of epoch e
// on the store closes it, carrying forward what it adopted entering e.
func (r *Runner) closeMissedEpoch(ctx context.Context, e uint64) (*qc.Close, error) {
	store, err := validator.OpenStore(StateDir(r.cfg.DataDir), r.cfg.Validator.GroupCommitWindow, r.log)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	c := r.committeeAt(e)
	signer, err := newSigner(r.id, c)
	if err != nil {
		return nil, err
	}
	vcfg, err := validatorConfig(r.cfg, r.file)
	if err != nil {
		return nil, err
	}
	v, err := validator.New(vcfg, signer, c, r.heads, store, nil, r.log)
	if err != nil {
		return nil, err
	}
	var carried []qc.CloseEntry
	if prev := r.committeeAt(e - 1); e > r.file.Epoch && prev != nil {
		h, err := epoch.NewHandover(prev, r.committeeAt, validator.CloseRequestCheck(r.file.ChainID))
		if err != nil {
			return nil, err
		}
		adopted, err := v.AdoptedCloses()
		if err != nil {
			return nil, err
		}
		for _, cl := range adopted {
			_, _ = h.AddClose(cl) // a stored close verified when it was adopted
		}
		carried = h.CarryForward()
	}
	_, stored, err := store.EpochClose(e)
	if err != nil {
		return nil, err
	}
	cl, err := v.CloseEpoch(ctx, carried)
	if err != nil {
		return nil, fmt.Errorf("epochs: close epoch %d missed at its boundary: %w", e, err)
	}
	if stored == nil {
		r.log.Info("closed an epoch missed at its boundary", "epoch", e, "entries", len(cl.Entries))
	}
	return cl, nil
}

// follow watches the head and moves to the next epoch at each boundary.
func (r *Runner) follow() {
	defer close(r.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-tick.C:
		}
		head, err := r.headNumber(r.ctx)
		if err != nil {
			continue
		}
		r.mu.Lock()
		e, running := r.epoch, r.cur != nil && r.nodeEpoch == r.epoch
		r.mu.Unlock()
		next := r.file.EpochOf(head)
		// A new epoch, or this one when the validator runs no node for it
		// and its committee (now known) holds it.
		if next < e || next == e && (running || !r.member(e)) {
			continue
		}
		if err := r.advance(e, next); err != nil {
			if r.ctx.Err() != nil {
				return
			}
			r.log.Error("epoch change failed; the sidecar stops", "from", e, "to", next, "err", err)
			select {
			case r.fatal <- err:
			default:
			}
			return
		}
	}
}

// advance moves from epoch e to next (e+1, or later when the chain moved
// on while the sidecar could not follow): the running node, if its epoch
// is e, closes it; then the node of next starts if this validator is in
// its committee. Otherwise the old node stays up, signing nothing, to
// serve its close to the new committee.
func (r *Runner) advance(e, next uint64) error {
	start := time.Now()
	r.mu.Lock()
	n, nodeEpoch := r.cur, r.nodeEpoch
	r.mu.Unlock()
	var own *qc.Close
	if n != nil && nodeEpoch == e && next > e && !n.Sidecar.Validator().Stopped() {
		var carried []qc.CloseEntry
		if h := n.Sidecar.Handover(); h != nil {
			carried = h.CarryForward()
		}
		var err error
		if own, err = n.Sidecar.Validator().CloseEpoch(r.ctx, carried); err != nil {
			return fmt.Errorf("close epoch %d: %w", e, err)
		}
		if err := n.Sidecar.HoldClose(own); err != nil {
			r.log.Warn("cannot serve the close", "epoch", e, "err", err)
		}
	}
	closed := time.Since(start)
	if !r.member(next) {
		if n != nil && nodeEpoch == e && next > e {
			r.log.Info("not in the committee of the new epoch: the old epoch's node stays up, signing nothing, to serve its close", "from", e, "to", next)
		}
		r.setNode(n, nodeEpoch, next)
		if n == nil {
			r.startWaiting(r.ctx, next)
		}
		return nil
	}
	r.stopWaiting()
	if n != nil {
		r.keepBoard(nodeEpoch, n.Sidecar.Board())
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := n.Stop(stopCtx)
		cancel()
		if err != nil {
			r.log.Warn("stopping the old epoch's node", "epoch", nodeEpoch, "err", err)
		}
	}
	if next != e+1 || nodeEpoch != e {
		own = nil // startEpoch reads or makes the close of next−1
	}
	nn, err := r.startEpochRetrying(next, own)
	if err != nil {
		return fmt.Errorf("start epoch %d: %w", next, err)
	}
	r.setNode(nn, next, next)
	entries := 0
	if own != nil {
		entries = len(own.Entries)
	}
	if next == e {
		r.log.Info("in the committee of the current epoch: signing once the handover completes", "epoch", next, "took", time.Since(start).Round(time.Millisecond))
		return nil
	}
	r.log.Info("epoch changed", "from", e, "to", next, "close_entries", entries, "closed_in", closed.Round(time.Millisecond), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// epochStartRetryFor bounds how long a boundary's node start is retried.
// The old epoch's node has just released the mesh and API ports, and
// another process may hold one of them for a moment; a validator that
// joins late costs its committee one signer for a while, whereas one that
// stops costs it for good.
const epochStartRetryFor = 2 * time.Minute

// startEpochRetrying starts the node of epoch e, trying again with a
// doubling pause (from 250 ms, at most 8 s) while a start fails, for at
// most epochStartRetryFor. A failed start has stopped what it started
// (the node's components roll back), so each attempt begins afresh.
func (r *Runner) startEpochRetrying(e uint64, own *qc.Close) (*Node, error) {
	ctx, cancel := context.WithTimeout(r.ctx, epochStartRetryFor)
	defer cancel()
	pause := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		n, err := r.startEpoch(ctx, e, own)
		if err == nil {
			if attempt > 1 {
				r.log.Info("the epoch's node started after failed attempts", "epoch", e, "attempts", attempt)
			}
			return n, nil
		}
		r.log.Warn("starting the epoch's node failed; trying again", "epoch", e, "attempt", attempt, "in", pause, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (gave up after %d attempts: %w)", err, attempt, context.Cause(ctx))
		case <-time.After(pause):
		}
		pause = min(2*pause, 8*time.Second)
	}
}

// keptBoards bounds the earlier epochs whose boards stay readable: enough
// for a wallet to find a payment certified just before a boundary, while
// memory stays bounded by a few boards.
const keptBoards = 3

// keepBoard keeps the board of epoch e, whose node is stopping, readable
// through the next nodes' APIs.
func (r *Runner) keepBoard(e uint64, b *bulletin.Board) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.earlier = slices.DeleteFunc(r.earlier, func(eb apiserver.EpochBoard) bool { return eb.Epoch == e })
	r.earlier = append([]apiserver.EpochBoard{{Epoch: e, Board: b}}, r.earlier...)
	if len(r.earlier) > keptBoards {
		r.earlier = r.earlier[:keptBoards]
	}
}

// earlierBoards returns the boards kept, newest first.
func (r *Runner) earlierBoards() []apiserver.EpochBoard {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.earlier)
}

// stagesRelay reports the shared settler's stages to the board of the
// epoch running now.
type stagesRelay struct {
	board atomic.Pointer[bulletin.Board]
}

func (s *stagesRelay) SetStage(txHash qc.Hash, stage fastpayv1.TxLifecycleUpdate_Stage, height uint64) {
	if b := s.board.Load(); b != nil {
		b.SetStage(txHash, stage, height)
	}
}

func (s *stagesRelay) ReportSettlementFailure(txHash qc.Hash, reason string) {
	if b := s.board.Load(); b != nil {
		b.ReportSettlementFailure(txHash, reason)
	}
}
