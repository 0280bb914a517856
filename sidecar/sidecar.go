// Package sidecar is a validator's part of the mesh protocol: it decides
// client submissions and transactions from the mesh with its validator,
// shares certificates and QCs through the mesh, credits recipients, parks
// transactions that arrive early, catches up peers that were away
// (anti-entropy) and announces again what it signed until its QC forms. It
// is composed with the other components by package node.
package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/bulletin"
	"github.com/allegro-mesh/allegro/epoch"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/settlement"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/validator"
)

// Config tunes how the sidecar processes mesh traffic.
type Config struct {
	// Workers validate transactions from the mesh concurrently, so durable
	// writes of different senders share fsyncs (default 64).
	Workers int `toml:"workers"`
	// QueueSize bounds transactions waiting for a worker (default 16,384);
	// beyond it they are dropped and counted.
	QueueSize int `toml:"queue_size"`
	// MaxParked bounds transactions waiting for an earlier nonce or a parent
	// QC to arrive (default 10,000).
	MaxParked int `toml:"max_parked"`
	// ParkTTL is how long a parked transaction waits (default 30 s).
	ParkTTL time.Duration `toml:"park_ttl"`
	// RetryUnavailable is the delay before retrying a transaction that could
	// not be decided because the chain was unavailable (default 1 s).
	RetryUnavailable time.Duration `toml:"retry_unavailable"`
	// PruneInterval is how often settled overlay entries are pruned when no
	// new-head notifications are available (default 1 s).
	PruneInterval time.Duration `toml:"prune_interval"`
	// ReannounceInterval is how long a transaction this validator signed
	// may stay without a QC before it is sent again, with the certificates
	// this node holds for it, to every connected committee peer (which
	// answer with theirs). Each further attempt waits twice as long, up to
	// ReannounceMaxInterval, until the QC is known or the transaction
	// settles or expires. A transaction that gained certificates since it
	// was last looked at is only slow, not lost: it waits another interval
	// instead, up to 3 times in a row. Default 5 s.
	ReannounceInterval time.Duration `toml:"reannounce_interval"`
	// ReannounceMaxInterval caps the wait between announcements of one
	// transaction. Default 2 min.
	ReannounceMaxInterval time.Duration `toml:"reannounce_max_interval"`
	// DoppelgangerWindow is how long after start the sidecar signs nothing
	// and watches the mesh for certificates by its own key that its data
	// directory never signed: another process running with the same key
	// (doppelganger.go). Seeing one, it never signs and the command exits.
	// 0 disables the check (so does a Byzantine test mode); at most 10 min.
	// Default 5 s.
	DoppelgangerWindow time.Duration `toml:"doppelganger_window"`
	// CloseFetchInterval is how often, while entering a new epoch, the
	// sidecar asks connected peers for the previous committee's closes
	// until it holds a quorum of them (SPEC §5a); a peer answers only with
	// closes the asker lacks. Default 100 ms.
	CloseFetchInterval time.Duration `toml:"close_fetch_interval"`
	// BindingPullInterval is how often, on a network whose committees come
	// from the chain, the sidecar asks its committee peers for sidecar key
	// bindings it lacks. Default 5 s.
	BindingPullInterval time.Duration `toml:"binding_pull_interval"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Workers: 64, QueueSize: 16_384, MaxParked: 10_000, ParkTTL: 30 * time.Second,
		RetryUnavailable: time.Second, PruneInterval: time.Second,
		ReannounceInterval: 5 * time.Second, ReannounceMaxInterval: 2 * time.Minute, DoppelgangerWindow: 5 * time.Second,
		CloseFetchInterval: 100 * time.Millisecond, BindingPullInterval: 5 * time.Second}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Workers <= 0:
		return fmt.Errorf("[sidecar] workers must be positive, got %d", c.Workers)
	case c.QueueSize <= 0:
		return fmt.Errorf("[sidecar] queue_size must be positive, got %d", c.QueueSize)
	case c.MaxParked <= 0:
		return fmt.Errorf("[sidecar] max_parked must be positive, got %d", c.MaxParked)
	case c.ParkTTL <= 0:
		return fmt.Errorf("[sidecar] park_ttl must be positive, got %s", c.ParkTTL)
	case c.RetryUnavailable <= 0:
		return fmt.Errorf("[sidecar] retry_unavailable must be positive, got %s", c.RetryUnavailable)
	case c.PruneInterval <= 0:
		return fmt.Errorf("[sidecar] prune_interval must be positive, got %s", c.PruneInterval)
	case c.ReannounceInterval <= 0:
		return fmt.Errorf("[sidecar] reannounce_interval must be positive, got %s", c.ReannounceInterval)
	case c.ReannounceMaxInterval < c.ReannounceInterval:
		return fmt.Errorf("[sidecar] reannounce_max_interval (%s) is below reannounce_interval (%s)", c.ReannounceMaxInterval, c.ReannounceInterval)
	case c.BindingPullInterval <= 0:
		return fmt.Errorf("[sidecar] binding_pull_interval must be positive, got %s", c.BindingPullInterval)
	case c.CloseFetchInterval <= 0:
		return fmt.Errorf("[sidecar] close_fetch_interval must be positive, got %s", c.CloseFetchInterval)
	case c.DoppelgangerWindow < 0 || c.DoppelgangerWindow > MaxDoppelgangerWindow:
		return fmt.Errorf("[sidecar] doppelganger_window must be 0 (off) to %s, got %s", MaxDoppelgangerWindow, c.DoppelgangerWindow)
	}
	return nil
}

// HeadSource is implemented by chain clients that follow new heads.
type HeadSource interface {
	SubscribeHeads() (<-chan tempo.Head, func())
}

// Sidecar is one validator's node: it validates submissions and mesh
// transactions, shares certificates, gathers QCs and credits recipients.
type Sidecar struct {
	cfg     Config
	log     *slog.Logger
	v       *validator.Validator
	board   *bulletin.Board
	mesh    *p2p.Mesh
	chain   tempo.ChainReader
	domain  qc.Domain
	metrics *sidecarMetrics

	queue  chan *validator.Payment
	parked *parkingLot
	// announcements feeds publishLoop: the transactions this validator
	// accepted from its clients, for the tx topic.
	announcements chan *fastpayv1.SubmitFastPayRequest
	// pending holds transactions this validator signed that have no QC
	// yet, for anti-entropy with peers that reconnect and for announcing
	// them again (reannounce.go). After a restart it is refilled from the
	// durable store.
	pending *lru.Cache[qc.Hash, *pendingTx]
	// recentQCs holds the transactions of the latest QCs this node
	// learned, also for anti-entropy: a QC that formed while a peer was
	// away may exist on this node only. The QCs themselves are read from
	// the board, which keeps them compact (a QC holds 2f+1 certificates).
	recentQCs *lru.Cache[qc.Hash, struct{}]
	// routes holds, when the mesh routes certificates to entries, each
	// recent transaction's entries (certroute.go). A transaction without
	// one (it came through anti-entropy, or its route fell out) has its
	// certificate published on the bulletin.
	routes       *lru.Cache[qc.Hash, *txRoute]
	routesMu     sync.Mutex
	syncs        syncState
	syncNotifiee *network.NotifyBundle
	settler      *settlement.Settler // nil: no settlement
	byz          *byzantine          // nil: honest (test networks only, byzantine.go)
	dg           *doppelganger
	pruneNow     chan struct{}

	// Epochs (closes.go): the handover this sidecar entered its epoch with
	// (nil: none), the closes it serves, and what it signed in the previous
	// epoch that it signs again once the handover completes.
	handover     *epoch.Handover
	handoverDone chan struct{}
	closes       closeBook
	earlierMu    sync.Mutex
	earlier      []*validator.Payment
	bindingsDir  string // "" unless committees come from the chain
	startedAt    time.Time
	ctx          context.Context
	cancel       context.CancelFunc
	wg           sync.WaitGroup
}

// Deps are the components a sidecar works with.
type Deps struct {
	Validator *validator.Validator
	// Board is the bulletin board; it publishes the QCs it forms through
	// Mesh.
	Board *bulletin.Board
	Mesh  *p2p.Mesh
	Chain tempo.ChainReader
	// Settler sends certified transactions to the chain; nil: no
	// settlement (an in-memory test chain).
	Settler *settlement.Settler
	// Byzantine is a deliberate misbehaviour (ByzantineEquivocate,
	// ByzantineInvalidSignatures) for test networks; "" is honest. Whether
	// the network allows it is the caller's decision.
	Byzantine string
	// Handover, when entering an epoch from the previous one, gates signing
	// until the previous committee's closes are gathered (the validator must
	// have entered it: validator.EnterEpoch). Nil: no previous epoch.
	Handover *epoch.Handover
	// Closes are served to the next committee's members: this validator's
	// close of the previous epoch.
	Closes []*qc.Close
	// BindingsDir, on a network whose committees come from the chain, is the
	// directory of sidecar key bindings the sidecar serves to its peers and
	// adds to (from its API and from peers). Empty: no bindings.
	BindingsDir string
	// Registerer receives the sidecar's metrics (nil: not registered).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// New connects the components. Start begins processing.
func New(cfg Config, d Deps) (*Sidecar, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := (ByzantineConfig{Mode: d.Byzantine}).Validate(); err != nil {
		return nil, err
	}
	logger := d.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	v, board, mesh := d.Validator, d.Board, d.Mesh
	s := &Sidecar{
		cfg: cfg, log: logger, v: v, board: board, mesh: mesh, chain: d.Chain, settler: d.Settler,
		domain:        v.Committee().Domain(),
		queue:         make(chan *validator.Payment, cfg.QueueSize),
		announcements: make(chan *fastpayv1.SubmitFastPayRequest, cfg.QueueSize),
		parked:        newParkingLot(cfg.MaxParked, cfg.ParkTTL),
		pruneNow:      make(chan struct{}, 1),
		handover:      d.Handover,
		handoverDone:  make(chan struct{}),
		bindingsDir:   d.BindingsDir,
	}
	for _, cl := range d.Closes {
		if err := s.closes.add(cl); err != nil {
			return nil, err
		}
	}
	window := cfg.DoppelgangerWindow
	if d.Byzantine != ByzantineHonest {
		// A deliberately equivocating validator's own conflicting
		// certificates would trip the check.
		window = 0
	}
	s.dg = newDoppelganger(window)
	var err error
	if s.pending, err = lru.New[qc.Hash, *pendingTx](cfg.MaxParked); err != nil {
		return nil, err
	}
	if s.recentQCs, err = lru.New[qc.Hash, struct{}](maxSyncQCs); err != nil {
		return nil, err
	}
	// Room for every transaction waiting for a worker or parked.
	if s.routes, err = lru.New[qc.Hash, *txRoute](cfg.QueueSize + cfg.MaxParked); err != nil {
		return nil, err
	}
	if s.metrics, err = newSidecarMetrics(d.Registerer, func() float64 { return float64(s.AwaitingQC()) }); err != nil {
		return nil, err
	}
	if d.Byzantine != ByzantineHonest {
		if s.byz, err = newByzantine(d.Byzantine, d.Registerer, logger); err != nil {
			return nil, err
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if s.settler != nil {
		// Inclusion is the moment overlay entries stop counting: prune then
		// rather than at the next tick.
		s.settler.OnIncluded(func(qc.Hash, uint64) {
			select {
			case s.pruneNow <- struct{}{}:
			default:
			}
		})
	}
	mesh.SetPacingGate(s.paceFrames)
	mesh.RegisterTxValidator(s.validateTx)
	mesh.OnTx(s.onTx)
	mesh.OnTxRepeat(s.onTxRepeat)
	mesh.OnBulletin(s.onBulletin)
	mesh.OnQC(s.onQC)
	return s, nil
}

// pacingMinInFlight is how many transactions this validator must have
// signed without a QC yet for its publisher loops to pace frames. One
// payment at a time leaves one or two (the previous one's QC may still be
// on its way); under load there are as many as payments in flight.
const pacingMinInFlight = 3

// paceFrames is the mesh's pacing gate: holding an object back for others
// to join its frame pays only while other payments are in flight.
func (s *Sidecar) paceFrames() bool { return s.AwaitingQC() >= pacingMinInFlight }

// AwaitingQC returns how many transactions this validator signed are still
// waiting for their QC (announced again until it comes, they expire, their
// nonce settles, or another transaction's QC takes their nonce).
func (s *Sidecar) AwaitingQC() int { return s.pending.Len() }

// Start restores the transactions this validator signed that have no QC
// yet (they are announced again), then runs the workers, the publisher and
// the background loops.
func (s *Sidecar) Start(context.Context) error {
	if s.byz != nil {
		s.byz.log.Warn("BYZANTINE MODE ENABLED: this validator misbehaves on purpose (test networks only; never run it in production)")
	}
	s.startedAt = time.Now()
	if err := s.restorePending(); err != nil {
		return err
	}
	s.dg.start()
	if s.dg.window > 0 {
		s.log.Info("doppelganger check: not signing while the mesh is watched for this key's signatures", "window", s.dg.window)
	}
	for range s.cfg.Workers {
		s.wg.Add(1)
		go s.worker()
	}
	s.wg.Add(4)
	go s.pruneLoop()
	go s.expireLoop()
	go s.publishLoop()
	go s.reannounceLoop()
	s.startSync()
	s.startCloses()
	s.startBindings()
	return nil
}

// Stop ends processing and waits for in-flight work.
func (s *Sidecar) Stop(context.Context) error {
	s.stopBindings()
	s.stopCloses()
	s.stopSync()
	s.cancel()
	s.wg.Wait()
	return nil
}

// Validator returns the sidecar's validator.
func (s *Sidecar) Validator() *validator.Validator { return s.v }

// Board returns the bulletin board.
func (s *Sidecar) Board() *bulletin.Board { return s.board }

// Mesh returns the mesh node.
func (s *Sidecar) Mesh() *p2p.Mesh { return s.mesh }

// Submit handles a client submission: validate, record, then share the
// transaction and this validator's certificate with the mesh.
func (s *Sidecar) Submit(ctx context.Context, req *fastpayv1.SubmitFastPayRequest) (qc.Certificate, error) {
	p, err := s.v.Decode(req)
	if err == nil {
		err = s.signingErr()
	}
	if err != nil {
		s.metrics.submissions.WithLabelValues(validator.RejectCodeOf(err).String()).Inc()
		return qc.Certificate{}, err
	}
	// The transaction is queued for the mesh as soon as it has passed every
	// rule, while this validator's decision is being written: peers
	// validate and sign in parallel with the write instead of after it.
	// Publishing happens on publishLoop, so it neither holds the sender's
	// lock nor depends on the client staying connected; a transaction whose
	// announcement is lost is announced again (reannounce.go).
	announced := false
	publish := func() {
		announced = true
		s.announce(p.TxHash, req)
	}
	cert, err := s.v.SubmitAndAnnounce(ctx, p, publish)
	s.metrics.submissions.WithLabelValues(resultLabel(err)).Inc()
	if err != nil {
		return qc.Certificate{}, err
	}
	if !announced {
		publish() // a repeat of a payment signed before: share it again
	}
	if s.mesh.RoutesCertificatesToEntry() {
		s.addEntry(p.TxHash, s.v.Signer().ID())
	}
	s.offer(p)
	s.board.SetStage(cert.TxHash, fastpayv1.TxLifecycleUpdate_ACCEPTED, 0)
	s.addPending(p)
	s.addOwnCertificate(p, cert)
	s.parked.wake(cert.Effects.ContentionKey(), s.enqueue)
	return cert, nil
}

func resultLabel(err error) string {
	if err == nil {
		return "accepted"
	}
	return validator.RejectCodeOf(err).String()
}

// addOwnCertificate records a certificate this validator signed for p and
// shares it: on the bulletin, or, when the mesh routes certificates to
// entries, with p's entries (kept here when this validator is one, which
// forms the QC).
func (s *Sidecar) addOwnCertificate(p *validator.Payment, cert qc.Certificate) {
	if s.byz != nil {
		s.byz.addOwnCertificate(s, p, cert)
		return
	}
	s.addCertificate(cert)
	if s.mesh.RoutesCertificatesToEntry() && !s.routeOwnCertificate(p, cert) {
		return
	}
	if err := s.mesh.PublishCertificate(s.ctx, cert); err != nil && s.ctx.Err() == nil {
		s.log.Warn("publish certificate", "tx", cert.TxHash, "err", err)
	}
}

// addCertificate puts a verified certificate on the board and learns the QC
// it completes, if any. Evidence of another member's equivocation is
// forwarded on the bulletin: an equivocator may show each validator only
// one side, and every member should hold the proof.
func (s *Sidecar) addCertificate(cert qc.Certificate) {
	s.watchOwn(cert)
	res := s.board.AddCertificate(cert)
	if res.Formed != nil {
		s.learnQC(res.Formed)
	}
	if ev := res.Evidence; ev != nil && ev.Signer() != s.v.Signer().ID() {
		if err := s.mesh.PublishEquivocation(s.ctx, ev); err != nil && s.ctx.Err() == nil {
			s.log.Debug("forward equivocation evidence", "signer", ev.Signer().Hex(), "err", err)
		}
	}
}

func (s *Sidecar) learnQC(q *qc.QC) {
	s.pending.Remove(q.TxHash)
	// What this validator signed for the same nonce, if it is another
	// transaction, can no longer gather a quorum: any two quorums share an
	// honest member, and it signs one transaction per nonce. It is not in
	// flight any more, for announcements and for the pacing gate.
	if signed, ok := s.v.SignedTx(q.Effects().ContentionKey()); ok && signed != q.TxHash {
		s.pending.Remove(signed)
	}
	s.recentQCs.Add(q.TxHash, struct{}{})
	s.v.LearnVerifiedQC(q)
	s.parked.wakeQC(q.Hash, s.enqueue)
}

// validateTx is the tx topic's stateful stage: stage 1 of the validation
// rules and the parent QCs the request carries, checked against the
// committee. A transaction that fails either is provably invalid (Reject);
// one that passes is forwarded whatever this validator's state says, since
// other validators decide for themselves. The decoded payment rides along
// with its verified parents, which are learned only on delivery: a frame is
// judged whole, and nothing of a rejected one may be stored.
func (s *Sidecar) validateTx(_ context.Context, _ peer.ID, msg *p2p.TxMessage) (p2p.Verdict, error) {
	p, err := s.v.Decode(msg.Request)
	if err != nil {
		return p2p.Reject, err
	}
	if p.TxHash != msg.TxHash {
		return p2p.Reject, errors.New("tx hash mismatch")
	}
	if p.VerifiedParents, err = s.v.VerifyParentQCs(msg.Request); err != nil {
		return p2p.Reject, err
	}
	msg.Decoded = p
	return p2p.Accept, nil
}

func (s *Sidecar) onTx(_ context.Context, d p2p.Delivery[*p2p.TxMessage]) {
	if d.Local {
		return // this node validated its own submission already
	}
	p, ok := d.Value.Decoded.(*validator.Payment)
	if !ok {
		return
	}
	for _, q := range p.VerifiedParents {
		s.v.LearnVerifiedQC(q)
	}
	if s.mesh.RoutesCertificatesToEntry() && d.Publisher != s.v.Signer().ID() && s.v.Committee().Contains(d.Publisher) {
		// The first frame's publisher is an entry; frames are unsigned,
		// so a member could name another, which then merely gathers
		// certificates it did not ask for.
		if s.addEntry(p.TxHash, d.Publisher) {
			s.sendOwed(p.TxHash, d.Publisher)
		}
	}
	s.offer(p)
	s.enqueue(p)
}

func (s *Sidecar) enqueue(p *validator.Payment) {
	select {
	case s.queue <- p:
	default:
		s.metrics.dropped.WithLabelValues("queue_full").Inc()
	}
}

func (s *Sidecar) worker() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case p := <-s.queue:
			s.process(p)
		}
	}
}

// process validates a transaction from the mesh and shares the certificate.
func (s *Sidecar) process(p *validator.Payment) {
	if err := s.signingErr(); err != nil {
		if s.dg.open(time.Now()) {
			s.park(s.parked.parkRetry(s.dg.end(), p))
		}
		return
	}
	cert, err := s.v.SubmitDecoded(s.ctx, p)
	s.metrics.meshTxs.WithLabelValues(resultLabel(err)).Inc()
	switch validator.RejectCodeOf(err) {
	case fastpayv1.RejectCode_REJECT_CODE_UNSPECIFIED:
		s.addPending(p)
		s.addOwnCertificate(p, cert)
		s.parked.wake(cert.Effects.ContentionKey(), s.enqueue)
	case fastpayv1.RejectCode_NONCE_SEQ_TOO_HIGH:
		// An earlier nonce of this sender is still on its way. It may have
		// been signed between the decision and parking: check again after.
		prev := p.Effects.ContentionKey()
		prev.NonceSeq--
		s.park(s.parked.parkKey(prev, p))
		if _, signed := s.v.SignedTx(prev); signed {
			s.parked.wake(prev, s.enqueue)
		}
	case fastpayv1.RejectCode_MISSING_PARENT_QC:
		s.park(s.parked.parkQC(*p.ParentQCHash, p))
		if s.v.KnowsQC(*p.ParentQCHash) {
			s.parked.wakeQC(*p.ParentQCHash, s.enqueue)
		}
	case fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE:
		s.park(s.parked.parkRetry(time.Now().Add(s.cfg.RetryUnavailable), p))
	default:
		s.log.Debug("mesh transaction not certified", "tx", p.TxHash, "err", err)
	}
}

func (s *Sidecar) park(ok bool) {
	if !ok {
		s.metrics.dropped.WithLabelValues("parking_full").Inc()
	}
}

func (s *Sidecar) onBulletin(_ context.Context, d p2p.Delivery[*p2p.BulletinItem]) {
	if d.Local {
		return
	}
	switch {
	case d.Value.Cert != nil:
		s.addCertificate(*d.Value.Cert)
	case d.Value.QC != nil:
		s.onVerifiedQC(d.Value.QC)
	}
}

func (s *Sidecar) onQC(_ context.Context, d p2p.Delivery[*qc.QC]) {
	if d.Local {
		return
	}
	s.onVerifiedQC(d.Value)
}

func (s *Sidecar) onVerifiedQC(q *qc.QC) {
	s.watchOwn(q.Certs...)
	if !s.board.AddQC(q) && s.settler != nil {
		// The board keeps its first QC per transaction; a child may name
		// this one, so settlement must know its hash too.
		s.settler.Certified(q)
	}
	s.learnQC(q)
}

// offer gives the settler a transaction's raw bytes (it sends the
// transaction once certified).
func (s *Sidecar) offer(p *validator.Payment) {
	if s.settler != nil {
		s.settler.Offer(p)
	}
}

func (s *Sidecar) pruneLoop() {
	defer s.wg.Done()
	var heads <-chan tempo.Head
	if hs, ok := s.chain.(HeadSource); ok {
		ch, cancel := hs.SubscribeHeads()
		defer cancel()
		heads = ch
	}
	ticker := time.NewTicker(s.cfg.PruneInterval)
	defer ticker.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-heads:
		case <-ticker.C:
		case <-s.pruneNow:
		}
		if d, c, err := s.v.Prune(s.ctx); err != nil {
			if s.ctx.Err() == nil {
				s.log.Debug("prune overlay", "err", err)
			}
		} else if d+c > 0 {
			s.log.Debug("pruned settled overlay entries", "debits", d, "credits", c)
		}
	}
}

func (s *Sidecar) expireLoop() {
	defer s.wg.Done()
	ticker := time.NewTicker(200 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-ticker.C:
			expired := s.parked.expire(now, s.enqueue)
			if expired > 0 {
				s.metrics.dropped.WithLabelValues("park_expired").Add(float64(expired))
			}
		}
	}
}
