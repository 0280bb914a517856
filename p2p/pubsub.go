package p2p

import (
	"context"
	"log/slog"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/allegro-mesh/allegro/qc"
)

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
		pubsub.WithLogger(slog.New(pubsubLogHandler{m.logger.Handler()}).With("subsystem", "pubsub")),
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
		// Announcements keep the default three heartbeats although they
		// are most of the bytes a large committee sends: a light client
		// connected to some members only learns the QCs the others
		// publish from them, and with one heartbeat it missed some
		// (docs/benchmarks.md).
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

// pubsubLogHandler passes pubsub's records on, but for its warning about
// delivery tags: the host's connection manager has no decaying tags on
// purpose (undecayed), and pubsub warns about the missing tag at every
// message delivered.
type pubsubLogHandler struct{ slog.Handler }

// noDeliveryTag is the message pubsub logs when it cannot bump a delivery tag.
const noDeliveryTag = "error bumping delivery tag"

func (h pubsubLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == noDeliveryTag {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h pubsubLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return pubsubLogHandler{h.Handler.WithAttrs(attrs)}
}

func (h pubsubLogHandler) WithGroup(name string) slog.Handler {
	return pubsubLogHandler{h.Handler.WithGroup(name)}
}
