package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// Errors returned by Mesh methods.
var (
	// ErrNotCommitteeMember: the operation needs a validator (a mesh whose
	// key is in the committee), for example publishing a tx.
	ErrNotCommitteeMember = errors.New("p2p: this node is not a committee member")
	// ErrNotStarted: the mesh has not been started.
	ErrNotStarted = errors.New("p2p: mesh not started")
	// ErrStopped: the mesh has been stopped.
	ErrStopped = errors.New("p2p: mesh stopped")
)

// Delivery is one validated message handed to a handler.
type Delivery[T any] struct {
	// Value is the decoded, verified object. It is shared with pubsub (it
	// is the message's ValidatorData) and, for local publishes, with the
	// publisher: treat it as read-only.
	Value T
	// From is the peer that forwarded the message (not necessarily its
	// author); this node's ID for its own publishes.
	From peer.ID
	// Local reports that this node published the message.
	Local bool
	// Topic is the topic name; ID the pubsub message id.
	Topic string
	ID    string
}

// Handlers receive validated messages. Each subscribed topic has its own
// delivery goroutine, so handlers of different topics (and of different QC
// shards) run concurrently; calls for one topic are sequential. A handler
// slower than the network makes its subscription buffer
// (SubscriptionBufferSize) overflow: messages are then dropped and counted.
// A panicking handler is recovered, counted and logged.
type (
	TxHandler       func(ctx context.Context, d Delivery[*TxMessage])
	BulletinHandler func(ctx context.Context, d Delivery[*BulletinItem])
	QCHandler       func(ctx context.Context, d Delivery[*qc.QC])
)

// Stats are the cumulative per-topic-kind counters of a mesh.
type Stats struct {
	Tx, Bulletin, QC TopicStats
	// Other counts messages on topics that are not this committee's.
	Other TopicStats
}

// PeerInfo describes a peer for dashboards and operators.
type PeerInfo struct {
	ID        peer.ID
	Connected bool
	// Member reports committee membership; Name is the member's name.
	Member bool
	Name   string
	// Score is the gossipsub score from the last snapshot (see
	// ScoreConfig.InspectPeriod); HasScore is false before the first
	// snapshot that includes the peer, or with scoring disabled.
	Score    float64
	HasScore bool
	// Addrs are the remote addresses of open connections.
	Addrs []string
}

type meshState int

const (
	stateNew meshState = iota
	stateStarted
	stateStopped
)

type joinedTopic struct {
	info  TopicInfo
	name  string
	topic *pubsub.Topic
	sub   *pubsub.Subscription // nil when joined only to publish
}

// Mesh is a node of the validator mesh: the host, gossipsub with the
// committee's topics, the staged validators and the delivery handlers.
//
// A key in the committee makes a validator node: it joins the tx and
// bulletin topics and every QC shard. Any other key makes a light client:
// it joins only the QC shards given to JoinQCShards and can never join the
// validators-only topics (the subscription filter refuses them).
type Mesh struct {
	cfg       Config
	committee *qc.Committee
	logger    *slog.Logger
	host      *Host
	self      peer.ID
	member    bool
	metrics   *metrics
	topics    *topicSet
	pipes     *pipelines
	outbound  *outbound

	rejectLogs logLimiter
	panicLogs  logLimiter

	// ctx lives from New to Stop: pubsub and the delivery goroutines must
	// outlive Start's context, which callers (fx OnStart) often cancel.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu            sync.Mutex
	state         meshState
	ps            *pubsub.PubSub
	joined        map[string]*joinedTopic
	pendingShards []int

	// Pubsub link repair (repair.go).
	repairMu  sync.Mutex
	stopping  bool
	repairing map[peer.ID]bool
	repairLog map[peer.ID]repairRecord

	onTx       atomic.Pointer[TxHandler]
	onBulletin atomic.Pointer[BulletinHandler]
	onQC       atomic.Pointer[QCHandler]
	scores     atomic.Pointer[map[peer.ID]*pubsub.PeerScoreSnapshot]
}

// New creates a mesh node: it validates cfg, creates the host (listening at
// once, so Addrs are known before Start) and its metrics on reg (nil: a
// private registry). key is the node's ed25519 identity; for a validator,
// its certificate key (crypto.UnmarshalEd25519PrivateKey). bootstrap lists
// the peers to keep connected; more can be added with AddBootstrapPeers.
// Nothing is subscribed and no peer is dialed until Start.
func New(cfg Config, key crypto.PrivKey, committee *qc.Committee, bootstrap []peer.AddrInfo, reg prometheus.Registerer, logger *slog.Logger) (*Mesh, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if committee == nil {
		return nil, errors.New("p2p: nil committee")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	h, err := newHost(cfg, key, committee, bootstrap, logger, m)
	if err != nil {
		m.unregister()
		return nil, err
	}
	accepted, err := newAcceptedObjects(cfg.AcceptedObjects)
	if err != nil {
		m.unregister()
		_ = h.Close()
		return nil, err
	}
	_, member := h.committee.member(h.ID())
	ctx, cancel := context.WithCancel(context.Background())
	topics := newTopicSet(committee.Domain(), cfg.QCShards)
	mesh := &Mesh{
		cfg:        cfg,
		committee:  committee,
		logger:     logger,
		host:       h,
		self:       h.ID(),
		member:     member,
		metrics:    m,
		topics:     topics,
		pipes:      &pipelines{committee: committee, verifier: qc.NewVerifier(committee, cfg.VerifiedSignatures), members: h.committee, self: h.ID(), topics: topics, accepted: accepted},
		outbound:   newOutbound(h.committee, cfg.PeerOutboundQueueSize),
		rejectLogs: logLimiter{perSecond: cfg.RejectLogsPerSecond},
		panicLogs:  logLimiter{perSecond: 5},
		ctx:        ctx,
		cancel:     cancel,
		joined:     make(map[string]*joinedTopic),
		repairing:  make(map[peer.ID]bool),
		repairLog:  make(map[peer.ID]repairRecord),
	}
	return mesh, nil
}

// ID returns the node's peer ID.
func (m *Mesh) ID() peer.ID { return m.self }

// Host returns the node's host.
func (m *Mesh) Host() *Host { return m.host }

// IsValidator reports whether this node's key is a committee member.
func (m *Mesh) IsValidator() bool { return m.member }

// Committee returns the committee the mesh serves.
func (m *Mesh) Committee() *qc.Committee { return m.committee }

// AddBootstrapPeers adds peers to keep connected (see Host.AddBootstrapPeers).
func (m *Mesh) AddBootstrapPeers(peers ...peer.AddrInfo) { m.host.AddBootstrapPeers(peers...) }

// RegisterTxValidator sets the stateful check of tx-topic messages; nil
// removes it. It may be called before or after Start.
func (m *Mesh) RegisterTxValidator(fn TxStateFunc) { storeFunc(&m.pipes.txFn, fn, fn == nil) }

// RegisterBulletinValidator sets the stateful check of bulletin items; nil
// removes it.
func (m *Mesh) RegisterBulletinValidator(fn BulletinStateFunc) {
	storeFunc(&m.pipes.bulletinFn, fn, fn == nil)
}

// RegisterQCValidator sets the stateful check of QC-topic messages; nil
// removes it.
func (m *Mesh) RegisterQCValidator(fn QCStateFunc) { storeFunc(&m.pipes.qcFn, fn, fn == nil) }

// OnTx sets the handler of validated tx-topic messages.
func (m *Mesh) OnTx(fn TxHandler) { storeFunc(&m.onTx, fn, fn == nil) }

// OnBulletin sets the handler of validated bulletin items.
func (m *Mesh) OnBulletin(fn BulletinHandler) { storeFunc(&m.onBulletin, fn, fn == nil) }

// OnQC sets the handler of validated QCs from the QC shards. A validator
// also receives every QC on the bulletin; it may leave this unset.
func (m *Mesh) OnQC(fn QCHandler) { storeFunc(&m.onQC, fn, fn == nil) }

// storeFunc stores fn, or nil when isNil (a nil func must clear the slot
// rather than store a pointer to nil).
func storeFunc[F any](p *atomic.Pointer[F], fn F, isNil bool) {
	if isNil {
		p.Store(nil)
		return
	}
	p.Store(&fn)
}

// Start creates the gossipsub router, joins and subscribes the topics (all
// of them for a validator, the JoinQCShards shards for a light client),
// starts the pubsub link check and dials bootstrap peers. ctx bounds Start
// only. After a failed Start, call Stop.
func (m *Mesh) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch m.state {
	case stateStarted:
		return errors.New("p2p: mesh already started")
	case stateStopped:
		return ErrStopped
	}
	m.state = stateStarted
	opts, err := m.pubsubOptions()
	if err != nil {
		return err
	}
	ps, err := pubsub.NewGossipSub(m.ctx, m.host.h, opts...)
	if err != nil {
		return fmt.Errorf("p2p: gossipsub: %w", err)
	}
	m.ps = ps
	var names []string
	if m.member {
		names = append(names, m.topics.tx, m.topics.bull)
		names = append(names, m.topics.qc...)
	} else {
		for _, s := range m.pendingShards {
			names = append(names, m.topics.qc[s])
		}
	}
	for _, name := range names {
		if err := m.joinLocked(name, true); err != nil {
			return err
		}
	}
	m.pendingShards = nil
	m.wg.Add(1)
	go m.linkCheckLoop()
	return m.host.Start(ctx)
}

func (m *Mesh) pubsubOptions() ([]pubsub.Option, error) {
	opts := []pubsub.Option{
		pubsub.WithMessageIdFn(m.topics.messageID),
		pubsub.WithAppSpecificRpcInspector(m.inspectRPC),
		// The peer filter keeps outsiders out of the private topics' mesh,
		// gossip and IWANT replies; the subscription filter keeps them out
		// of the topic's peer set, which flood publishing reads without
		// consulting the peer filter.
		pubsub.WithPeerFilter(m.peerFilter),
		pubsub.WithSubscriptionFilter(subscriptionFilter{m}),
		pubsub.WithRawTracer(&dropTracer{m: m.metrics, topics: m.topics, out: m.outbound, onWriterClosed: m.onOutboundStreamClosed}),
		pubsub.WithLogger(m.logger.With("component", "pubsub")),
	}
	gossip, err := gossipOptions(m.cfg, m.host.committee)
	if err != nil {
		return nil, err
	}
	opts = append(opts, gossip...)
	if m.cfg.Scoring.Enabled {
		// Must follow WithPeerScore (in gossip).
		opts = append(opts, pubsub.WithPeerScoreInspect(pubsub.ExtendedPeerScoreInspectFn(m.onScores), m.cfg.Scoring.InspectPeriod))
	}
	return opts, nil
}

// GossipOptions returns the pubsub options a Mesh derives from cfg alone:
// unsigned messages without author, queue sizes, validation workers, the
// seen-message TTL, flood publishing, mesh degrees and peer scoring for
// committee. A Mesh adds its message ids, filters and tracer; the
// benchmark's bare-gossip floor uses these to run pubsub exactly as
// configured but without the protocol. Topics joined with them should get
// TopicScoreParams.
func GossipOptions(cfg Config, committee *qc.Committee) ([]pubsub.Option, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	idx, err := newCommitteeIndex(committee)
	if err != nil {
		return nil, err
	}
	return gossipOptions(cfg, idx)
}

// TopicScoreParams returns the score parameters a Mesh sets on each topic,
// or nil when scoring is off.
func TopicScoreParams(cfg Config) *pubsub.TopicScoreParams {
	if !cfg.Scoring.Enabled {
		return nil
	}
	return topicScoreParams(cfg.Scoring)
}

func gossipOptions(cfg Config, members committeeIndex) ([]pubsub.Option, error) {
	opts := []pubsub.Option{
		// Payloads carry their own signatures; signing every message again
		// would cost two more ed25519 operations per message (SPEC §9).
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithNoAuthor(),
		pubsub.WithPeerOutboundQueueSize(cfg.PeerOutboundQueueSize),
		pubsub.WithValidateQueueSize(cfg.ValidateQueueSize),
		pubsub.WithValidateWorkers(cfg.ValidationConcurrency),
		pubsub.WithSeenMessagesTTL(cfg.SeenMessagesTTL),
		pubsub.WithFloodPublish(cfg.FloodPublish),
	}
	switch {
	case cfg.GossipSub != nil:
		opts = append(opts, pubsub.WithGossipSubParams(*cfg.GossipSub))
	case !cfg.Relay:
		// No mesh: every node floods its own messages to the topic's
		// peers and forwards nothing (gossipsub's bootstrapper degrees);
		// gossip still announces recent messages to peers that missed one.
		g := pubsub.DefaultGossipSubParams()
		g.D, g.Dlo, g.Dhi, g.Dout, g.Dscore = 0, 0, 0, 0, 0
		opts = append(opts, pubsub.WithGossipSubParams(g))
	}
	if cfg.Scoring.Enabled {
		params, thresholds, err := peerScoreParams(cfg, members)
		if err != nil {
			return nil, err
		}
		opts = append(opts, pubsub.WithPeerScore(params, thresholds))
	}
	return opts, nil
}

// peerFilter admits only committee members to the validators-only topics.
// It runs on the pubsub event loop: one map lookup per call.
func (m *Mesh) peerFilter(p peer.ID, topic string) bool {
	t, ok := m.topics.lookup(topic)
	if !ok {
		return false
	}
	if t.Kind.ValidatorsOnly() {
		_, member := m.host.committee.member(p)
		return member
	}
	return true
}

// inspectRPC sees every incoming RPC before pubsub does. It strips the
// messages a peer outside the committee sends on validators-only topics:
// pubsub records a message's id as seen before the topic validator runs,
// so rejecting such a message there is too late — a copy would already
// shadow the genuine one. The rest of the RPC (subscriptions, control,
// messages on open topics) goes on. It runs on the pubsub event loop: one
// map lookup per RPC, plus one per message for outsiders.
func (m *Mesh) inspectRPC(from peer.ID, rpc *pubsub.RPC) error {
	msgs := rpc.GetPublish()
	if len(msgs) == 0 {
		return nil
	}
	if _, member := m.host.committee.member(from); member {
		return nil
	}
	kept := msgs[:0]
	for _, msg := range msgs {
		if t, ok := m.topics.lookup(msg.GetTopic()); ok && t.Kind.ValidatorsOnly() {
			m.metrics.outsiderDropped.WithLabelValues(t.Kind.String()).Inc()
			m.metrics.stats[kindIndex(t.Kind)].outsider.Add(1)
			continue
		}
		kept = append(kept, msg)
	}
	clear(msgs[len(kept):])
	rpc.Publish = kept
	return nil
}

// subscriptionFilter limits the topics pubsub tracks to this committee's,
// refuses validators-only topics to a light client's own joins, and drops
// outsiders' subscriptions to validators-only topics, so they never enter
// those topics' peer sets (and never receive a flood-published message).
type subscriptionFilter struct{ m *Mesh }

func (f subscriptionFilter) CanSubscribe(topic string) bool {
	t, ok := f.m.topics.lookup(topic)
	if !ok {
		return false
	}
	return !t.Kind.ValidatorsOnly() || f.m.member
}

func (f subscriptionFilter) FilterIncomingSubscriptions(from peer.ID, subs []*pb.RPC_SubOpts) ([]*pb.RPC_SubOpts, error) {
	_, fromMember := f.m.host.committee.member(from)
	return pubsub.FilterSubscriptions(subs, func(topic string) bool {
		t, ok := f.m.topics.lookup(topic)
		if !ok {
			return false
		}
		return !t.Kind.ValidatorsOnly() || (f.m.member && fromMember)
	}), nil
}

// joinLocked joins a topic (registering its validator and score
// parameters) and, if subscribe, subscribes and starts its delivery
// goroutine. A topic joined only to publish is subscribed on a later call.
func (m *Mesh) joinLocked(name string, subscribe bool) error {
	jt, ok := m.joined[name]
	if !ok {
		info, known := m.topics.lookup(name)
		if !known {
			return fmt.Errorf("p2p: unknown topic %q", name)
		}
		// Inline validation: validators run on the ValidationConcurrency
		// workers and a burst waits in the validate queue; pubsub's async
		// mode drops messages once a topic's concurrency is exhausted.
		if err := m.ps.RegisterTopicValidator(name, m.wrap(info.Kind, m.pipes.pipeline(info.Kind)), pubsub.WithValidatorInline(true)); err != nil {
			return fmt.Errorf("p2p: register validator for %s: %w", name, err)
		}
		topic, err := m.ps.Join(name)
		if err != nil {
			_ = m.ps.UnregisterTopicValidator(name)
			return fmt.Errorf("p2p: join %s: %w", name, err)
		}
		if m.cfg.Scoring.Enabled {
			if err := topic.SetScoreParams(topicScoreParams(m.cfg.Scoring)); err != nil {
				return fmt.Errorf("p2p: score params for %s: %w", name, err)
			}
		}
		jt = &joinedTopic{info: info, name: name, topic: topic}
		m.joined[name] = jt
	}
	if !subscribe || jt.sub != nil {
		return nil
	}
	sub, err := jt.topic.Subscribe(pubsub.WithBufferSize(m.cfg.SubscriptionBufferSize))
	if err != nil {
		return fmt.Errorf("p2p: subscribe %s: %w", name, err)
	}
	jt.sub = sub
	m.wg.Add(1)
	go m.deliverLoop(jt.info, sub)
	return nil
}

// JoinQCShards subscribes a light client to QC shards. Before Start the
// shards are remembered; a validator already joins every shard, so for it
// this only checks the arguments.
func (m *Mesh) JoinQCShards(shards []int) error {
	for _, s := range shards {
		if s < 0 || s >= m.cfg.QCShards {
			return fmt.Errorf("p2p: QC shard %d out of range [0, %d)", s, m.cfg.QCShards)
		}
	}
	if m.member {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch m.state {
	case stateNew:
		for _, s := range shards {
			if !slices.Contains(m.pendingShards, s) {
				m.pendingShards = append(m.pendingShards, s)
			}
		}
		return nil
	case stateStopped:
		return ErrStopped
	}
	for _, s := range shards {
		if err := m.joinLocked(m.topics.qc[s], true); err != nil {
			return err
		}
	}
	return nil
}

// deliverLoop hands one subscription's messages to its handler until Stop.
func (m *Mesh) deliverLoop(info TopicInfo, sub *pubsub.Subscription) {
	defer m.wg.Done()
	for {
		msg, err := sub.Next(m.ctx)
		if err != nil {
			return // Stop cancelled the context or the subscription
		}
		m.deliver(info, msg)
	}
}

func (m *Mesh) deliver(info TopicInfo, msg *pubsub.Message) {
	m.metrics.deliver(info.Kind)
	defer func() {
		if r := recover(); r != nil {
			m.metrics.handlerPanics.WithLabelValues(info.Kind.String()).Inc()
			if ok, suppressed := m.panicLogs.allow(time.Now()); ok {
				m.logger.Error("p2p: delivery handler panicked", "topic", msg.GetTopic(), "panic", fmt.Sprint(r), "suppressed", suppressed, "stack", string(debug.Stack()))
			}
		}
	}()
	local := msg.ReceivedFrom == m.self
	switch info.Kind {
	case KindTx:
		v, ok := msg.ValidatorData.(*TxMessage)
		if fn := m.onTx.Load(); fn != nil && ok {
			(*fn)(m.ctx, Delivery[*TxMessage]{Value: v, From: msg.ReceivedFrom, Local: local, Topic: msg.GetTopic(), ID: msg.ID})
		}
	case KindBulletin:
		v, ok := msg.ValidatorData.(*BulletinItem)
		if fn := m.onBulletin.Load(); fn != nil && ok {
			(*fn)(m.ctx, Delivery[*BulletinItem]{Value: v, From: msg.ReceivedFrom, Local: local, Topic: msg.GetTopic(), ID: msg.ID})
		}
	case KindQC:
		v, ok := msg.ValidatorData.(*qc.QC)
		if fn := m.onQC.Load(); fn != nil && ok {
			(*fn)(m.ctx, Delivery[*qc.QC]{Value: v, From: msg.ReceivedFrom, Local: local, Topic: msg.GetTopic(), ID: msg.ID})
		}
	}
}

// topicFor returns a topic handle for publishing, joining (without
// subscribing) a QC shard a light client has not joined.
func (m *Mesh) topicFor(name string) (*pubsub.Topic, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch m.state {
	case stateNew:
		return nil, ErrNotStarted
	case stateStopped:
		return nil, ErrStopped
	}
	if err := m.joinLocked(name, false); err != nil {
		return nil, err
	}
	return m.joined[name].topic, nil
}

// publish sends data on a topic, passing obj as the message's validator
// data so the local validation accepts it without decoding or verifying.
// It first waits (bounded) for congested committee peers' outbound queues.
func (m *Mesh) publish(ctx context.Context, k TopicKind, name string, data []byte, obj any) error {
	t, err := m.topicFor(name)
	if err == nil {
		err = m.waitOutbound(ctx)
	}
	if err == nil {
		err = t.Publish(ctx, data, pubsub.WithValidatorData(obj))
	}
	m.metrics.publish(k, err)
	if err != nil {
		return fmt.Errorf("p2p: publish on %s: %w", name, err)
	}
	return nil
}

// waitOutbound applies publish back-pressure (see
// Config.PublishBackpressureTimeout).
func (m *Mesh) waitOutbound(ctx context.Context) error {
	start := time.Now()
	stalled, err := m.outbound.wait(ctx, m.cfg.PublishBackpressureTimeout)
	if waited := time.Since(start); waited > time.Millisecond {
		m.metrics.publishWaits.Inc()
		m.metrics.publishWaitSecs.Add(waited.Seconds())
	}
	for _, p := range stalled {
		m.metrics.stalledPeers.Inc()
		name := ""
		if mem, ok := m.host.committee.member(p); ok {
			name = mem.Name
		}
		m.logger.Warn("p2p: committee peer not draining its queue; no longer waiting for it", "peer", p, "name", name, "waited", m.cfg.PublishBackpressureTimeout)
	}
	return err
}

// PublishTx publishes a request on the tx topic. The caller has validated
// it; it is not validated again locally. Validators only.
func (m *Mesh) PublishTx(ctx context.Context, req *fastpayv1.SubmitFastPayRequest) error {
	if !m.member {
		return ErrNotCommitteeMember
	}
	h, err := TxHash(req)
	if err != nil {
		return fmt.Errorf("p2p: publish tx: %w", err)
	}
	data, err := encodeTx(req)
	if err != nil {
		return fmt.Errorf("p2p: publish tx: %w", err)
	}
	return m.publish(ctx, KindTx, m.topics.tx, data, &TxMessage{Request: req, TxHash: h})
}

// PublishCertificate publishes a certificate (this node's or one it relays)
// on the bulletin. It is not verified again locally: publishing an invalid
// one gets this node penalised by its peers. Validators only.
func (m *Mesh) PublishCertificate(ctx context.Context, cert qc.Certificate) error {
	if !m.member {
		return ErrNotCommitteeMember
	}
	data, err := encodeBulletin(&fastpayv1.BulletinMessage{Item: &fastpayv1.BulletinMessage_Cert{Cert: fastpayv1.NewValidatorCertificate(&cert)}})
	if err != nil {
		return fmt.Errorf("p2p: publish certificate: %w", err)
	}
	// Our own signature needs no verification when it comes back inside a QC.
	m.pipes.verifier.Remember(&cert)
	return m.publish(ctx, KindBulletin, m.topics.bull, data, &BulletinItem{Cert: &cert})
}

// PublishQC publishes a QC on the bulletin (validators only) and on its
// recipient's QC shard. q must be valid (built by qc.Assembler or checked
// with Committee.VerifyQC): it is not verified again locally. Both
// publishes are attempted; the error joins their failures.
func (m *Mesh) PublishQC(ctx context.Context, q *qc.QC) error {
	if q == nil || len(q.Certs) == 0 {
		return errors.New("p2p: publish qc: no certificates")
	}
	wire := fastpayv1.NewQuorumCertificate(q)
	var errs []error
	if m.member {
		data, err := encodeBulletin(&fastpayv1.BulletinMessage{Item: &fastpayv1.BulletinMessage_Qc{Qc: wire}})
		if err == nil {
			err = m.publish(ctx, KindBulletin, m.topics.bull, data, &BulletinItem{QC: q})
		}
		errs = append(errs, err)
	}
	data, err := encodeQC(wire)
	if err == nil {
		err = m.publish(ctx, KindQC, m.topics.qcTopicFor(q.Effects().Recipient), data, q)
	}
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("p2p: publish qc: %w", err)
	}
	return nil
}

// ListPeers returns the peers known to be subscribed to topic.
func (m *Mesh) ListPeers(topic string) []peer.ID {
	m.mu.Lock()
	ps := m.ps
	m.mu.Unlock()
	if ps == nil {
		return nil
	}
	return ps.ListPeers(topic)
}

// JoinedTopics returns the names of the topics this node has joined.
func (m *Mesh) JoinedTopics() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.joined))
	for name := range m.joined {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Stop unsubscribes, stops pubsub and the delivery goroutines and closes
// the host. ctx bounds the wait for handlers still running.
func (m *Mesh) Stop(ctx context.Context) error {
	m.mu.Lock()
	if m.state == stateStopped {
		m.mu.Unlock()
		return nil
	}
	m.state = stateStopped
	for _, jt := range m.joined {
		if jt.sub != nil {
			jt.sub.Cancel()
		}
	}
	m.mu.Unlock()
	m.repairMu.Lock()
	m.stopping = true
	m.repairMu.Unlock()

	m.cancel()
	done := make(chan struct{})
	go func() {
		m.wg.Wait()
		close(done)
	}()
	var waitErr error
	select {
	case <-done:
	case <-ctx.Done():
		waitErr = fmt.Errorf("p2p: stop: handlers still running: %w", ctx.Err())
	}
	return errors.Join(waitErr, m.host.Close())
}

// Stats returns the cumulative per-topic counters.
func (m *Mesh) Stats() Stats {
	return Stats{
		Other:    m.metrics.stats[0].snapshot(),
		Tx:       m.metrics.stats[kindIndex(KindTx)].snapshot(),
		Bulletin: m.metrics.stats[kindIndex(KindBulletin)].snapshot(),
		QC:       m.metrics.stats[kindIndex(KindQC)].snapshot(),
	}
}
