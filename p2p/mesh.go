package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/allegro-mesh/allegro/internal/recent"
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

// Stats are the cumulative per-topic-kind counters of a mesh.
type Stats struct {
	Tx, Bulletin, QC TopicStats
	// Other counts messages on topics that are not this committee's.
	Other TopicStats
	// CertStream counts certificate stream frames (certstream.go).
	CertStream CertStreamStats
	// ControlBytesSent counts the bytes of pubsub control messages
	// (gossip announcements, mesh maintenance) handed to peers.
	ControlBytesSent uint64
}

// CertStreamStats are the cumulative certificate stream counters; the
// frames received are also counted as bulletin validations, which is what
// they are on the wire.
type CertStreamStats struct {
	Sent     uint64 // frames written to a member's stream
	Fallback uint64 // frames published on the bulletin instead
	Accepted uint64 // frames received and accepted
	Ignored  uint64 // frames received with nothing new
	Rejected uint64 // frames received that were provably bad
	Refused  uint64 // streams refused (non-member, blocked member, too many)
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
	// ScoreParts is how Score is made (set with HasScore).
	ScoreParts ScoreParts
	// Addrs are the remote addresses of open connections.
	Addrs []string
}

type meshState int

const (
	stateNew meshState = iota
	stateStarted
	stateStopped
)

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
	selfID    qc.ValidatorID // the frame publisher id: self's ed25519 key
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
	framers       map[string]*framer
	certSenders   map[peer.ID]*certSender
	pendingShards []int

	// seq numbers this node's frames; it starts from the clock, so frames
	// published after a restart never repeat earlier bytes (and ids).
	seq atomic.Uint64

	// Inbound certificate streams and their senders' strikes
	// (certstream.go).
	certStrikes certStrikes

	// Pubsub link repair (repair.go).
	repairMu  sync.Mutex
	stopping  bool
	repairing map[peer.ID]bool
	repairLog map[peer.ID]repairRecord

	onTx       atomic.Pointer[TxHandler]
	onBulletin atomic.Pointer[BulletinHandler]
	onQC       atomic.Pointer[QCHandler]
	// pacingGate, when set, says whether the publisher loops may pace
	// (SetPacingGate).
	pacingGate atomic.Pointer[func() bool]
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
	memo, err := recent.NewSet[[32]byte](cfg.VerifiedSignatures)
	if err != nil {
		m.unregister()
		_ = h.Close()
		return nil, fmt.Errorf("verified signatures memo: %w", err)
	}
	_, member := h.committee.member(h.ID())
	selfID, err := ValidatorIDFromPeerID(h.ID())
	if err != nil {
		m.unregister()
		_ = h.Close()
		return nil, fmt.Errorf("p2p: node key: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	topics := newTopicSet(committee.Domain(), cfg.QCShards)
	pipes := &pipelines{committee: committee, verifier: qc.NewVerifierWithMemo(committee, memo), members: h.committee, self: h.ID(), topics: topics, accepted: accepted,
		selfMember:   member,
		outsiderDups: newDuplicateBudget(cfg.OutsiderDuplicateFrames, cfg.OutsiderDuplicateBurst),
		memberDups:   newDuplicateBudget(cfg.MemberDuplicateFrames, cfg.MemberDuplicateBurst)}
	mesh := &Mesh{
		cfg:         cfg,
		committee:   committee,
		logger:      logger,
		host:        h,
		self:        h.ID(),
		selfID:      selfID,
		member:      member,
		metrics:     m,
		topics:      topics,
		pipes:       pipes,
		outbound:    newOutbound(h.committee, cfg.PeerOutboundQueueSize),
		rejectLogs:  logLimiter{perSecond: cfg.RejectLogsPerSecond},
		panicLogs:   logLimiter{perSecond: 5},
		ctx:         ctx,
		cancel:      cancel,
		joined:      make(map[string]*joinedTopic),
		framers:     make(map[string]*framer),
		certSenders: make(map[peer.ID]*certSender),
		certStrikes: certStrikes{peers: make(map[peer.ID]*strikeRecord), inbound: make(map[peer.ID]int)},
		repairing:   make(map[peer.ID]bool),
		repairLog:   make(map[peer.ID]repairRecord),
	}
	mesh.seq.Store(uint64(time.Now().UnixNano()))
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

// AddDialGroups adds groups of peers to keep some of connected (see
// Host.AddDialGroups).
func (m *Mesh) AddDialGroups(groups ...DialGroup) { m.host.AddDialGroups(groups...) }

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

// storeFunc stores fn, or nil when isNil (a nil func must clear the slot
// rather than store a pointer to nil).
func storeFunc[F any](p *atomic.Pointer[F], fn F, isNil bool) {
	if isNil {
		p.Store(nil)
		return
	}
	p.Store(&fn)
}

// SetPacingGate sets the question the publisher loops ask before waiting
// out FrameInterval after a frame of several objects: pacing holds an
// object back so that others join its frame, which pays only while other
// work is in flight. When one payment at a time crosses the mesh, two
// unrelated objects still meet in a queue now and then (a QC still queued
// when the next payment's certificate joins it), and pacing after that
// frame would hold the next one, on that payment's path, for up to the
// interval. A validator answers whether it has several transactions
// waiting for their QCs. Without a gate (nil) the loops pace on frame
// sizes alone.
func (m *Mesh) SetPacingGate(fn func() bool) { storeFunc(&m.pacingGate, fn, fn == nil) }

// pacingAllowed asks the pacing gate, if any.
func (m *Mesh) pacingAllowed() bool {
	fn := m.pacingGate.Load()
	return fn == nil || (*fn)()
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

// Stats returns the cumulative per-topic counters.
func (m *Mesh) Stats() Stats {
	return Stats{
		Other:    m.metrics.stats[0].snapshot(),
		Tx:       m.metrics.stats[kindIndex(KindTx)].snapshot(),
		Bulletin: m.metrics.stats[kindIndex(KindBulletin)].snapshot(),
		QC:       m.metrics.stats[kindIndex(KindQC)].snapshot(),
		CertStream: CertStreamStats{
			Sent: m.metrics.cert.sent.Load(), Fallback: m.metrics.cert.fallback.Load(),
			Accepted: m.metrics.cert.accepted.Load(), Ignored: m.metrics.cert.ignored.Load(),
			Rejected: m.metrics.cert.rejected.Load(), Refused: m.metrics.cert.refused.Load(),
		},
		ControlBytesSent: m.metrics.controlSent.Load(),
	}
}
