package p2p

import (
	"math"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Positive score terms are kept small next to the invalid-message penalty:
// they reward a peer for staying in the mesh and relaying first, but must
// never let a peer "bank" credit against the penalty for invalid messages.
const (
	timeInMeshWeight = 0.01 // per second in the mesh
	timeInMeshCap    = 500  // seconds → at most +5 per topic
	firstDeliveryCap = 15   // first deliveries → at most +15 per topic
	// topicScoreCap bounds the sum of positive topic terms across topics.
	topicScoreCap = 20
)

// decayFactor returns the per-interval multiplier that halves a counter
// every halfLife.
func decayFactor(halfLife, interval time.Duration) float64 {
	return math.Pow(0.5, interval.Seconds()/halfLife.Seconds())
}

// peerScoreParams builds the router-wide score parameters. Topic parameters
// are attached when a topic is joined (topicScoreParams), because a light
// client joins shards on demand.
func peerScoreParams(cfg Config, members committeeIndex) (*pubsub.PeerScoreParams, *pubsub.PeerScoreThresholds, error) {
	s := cfg.Scoring
	whitelist, err := parseCIDRs(s.IPColocationWhitelist)
	if err != nil {
		return nil, nil, err
	}
	decay := decayFactor(s.InvalidMessageHalfLife, s.DecayInterval)
	bonus := s.CommitteeBonus
	params := &pubsub.PeerScoreParams{
		Topics:        make(map[string]*pubsub.TopicScoreParams),
		TopicScoreCap: topicScoreCap,
		// Committee membership is known from the peer ID itself, so the
		// bonus needs no handshake.
		AppSpecificScore: func(p peer.ID) float64 {
			if _, ok := members.member(p); ok {
				return bonus
			}
			return 0
		},
		AppSpecificWeight:           1,
		IPColocationFactorWeight:    s.IPColocationWeight,
		IPColocationFactorThreshold: max(s.IPColocationThreshold, 1),
		IPColocationFactorWhitelist: whitelist,
		BehaviourPenaltyWeight:      s.BehaviourPenaltyWeight,
		BehaviourPenaltyThreshold:   s.BehaviourPenaltyThreshold,
		BehaviourPenaltyDecay:       decay,
		DecayInterval:               s.DecayInterval,
		DecayToZero:                 pubsub.DefaultDecayToZero,
		RetainScore:                 s.RetainScore,
		SeenMsgTTL:                  cfg.SeenMessagesTTL,
	}
	thresholds := &pubsub.PeerScoreThresholds{
		GossipThreshold:             s.GossipThreshold,
		PublishThreshold:            s.PublishThreshold,
		GraylistThreshold:           s.GraylistThreshold,
		AcceptPXThreshold:           s.AcceptPXThreshold,
		OpportunisticGraftThreshold: s.OpportunisticGraftThreshold,
	}
	return params, thresholds, nil
}

// topicScoreParams are the same for every topic kind: the penalty that
// matters, for invalid messages, is per topic anyway.
//
// Mesh-delivery penalties (P3, P3b) are off: traffic is driven by payments
// and bursty, so an honest validator that happens to relay little in a quiet
// period would be penalised for it.
func topicScoreParams(s ScoreConfig) *pubsub.TopicScoreParams {
	decay := decayFactor(s.InvalidMessageHalfLife, s.DecayInterval)
	return &pubsub.TopicScoreParams{
		TopicWeight:                    1,
		TimeInMeshWeight:               timeInMeshWeight,
		TimeInMeshQuantum:              time.Second,
		TimeInMeshCap:                  timeInMeshCap,
		FirstMessageDeliveriesWeight:   1,
		FirstMessageDeliveriesDecay:    decay,
		FirstMessageDeliveriesCap:      firstDeliveryCap,
		InvalidMessageDeliveriesWeight: s.InvalidMessageWeight,
		InvalidMessageDeliveriesDecay:  decay,
	}
}

// ScoreParts is how a peer's gossipsub score is made: pubsub's score
// function taken term by term with this mesh's parameters, from the same
// snapshot as the score, so the terms add up to it:
//
//	score = min(TopicSum, TopicCap) + AppSpecific + IPColocation + Behaviour
//
// Mesh-delivery terms (P3, P3b) are left out: their weights are zero here.
type ScoreParts struct {
	// Topics holds the topic terms per topic kind ("tx", "bulletin", "qc",
	// "other"), in that order; the QC shards are summed.
	Topics []TopicScoreParts
	// TopicSum is the sum of the topic terms; positive sums are capped at
	// TopicCap so that good behaviour never offsets invalid messages.
	TopicSum float64
	TopicCap float64
	// AppSpecific is the committee bonus (P5): CommitteeBonus for a
	// committee member, 0 for any other peer.
	AppSpecific float64
	// IPColocation is the penalty (P6) for sharing an IP address with more
	// than IPColocationThreshold peers: IPColocationWeight × IPColocationFactor,
	// the factor being the surplus squared (0 on whitelisted addresses).
	IPColocation       float64
	IPColocationFactor float64
	// Behaviour is the penalty (P7) for gossip protocol misbehaviour (broken
	// IWANT promises, GRAFT floods): BehaviourPenaltyWeight × the counter's
	// excess over BehaviourPenaltyThreshold, squared.
	Behaviour        float64
	BehaviourCounter float64
}

// Total adds the terms up as pubsub does.
func (p ScoreParts) Total() float64 {
	topics := p.TopicSum
	if p.TopicCap > 0 && topics > p.TopicCap {
		topics = p.TopicCap
	}
	return topics + p.AppSpecific + p.IPColocation + p.Behaviour
}

// TopicScoreParts are the topic terms of one topic kind.
type TopicScoreParts struct {
	Kind   string
	Topics int // topics of the kind with a record of the peer
	// TimeInMesh is the longest time the peer has been in this node's mesh
	// of one of the kind's topics; TimeInMeshScore (P1) rewards it, capped.
	TimeInMesh      time.Duration
	TimeInMeshScore float64
	// FirstDeliveries counts (decaying) messages the peer delivered first;
	// FirstDeliveriesScore (P2) rewards them, capped per topic.
	FirstDeliveries      float64
	FirstDeliveriesScore float64
	// InvalidDeliveries counts (decaying) messages from the peer that
	// failed validation; InvalidScore (P4, negative) is InvalidMessageWeight
	// × that count squared, per topic.
	InvalidDeliveries float64
	InvalidScore      float64
}

// Total is the kind's contribution to the topic sum.
func (t TopicScoreParts) Total() float64 {
	return t.TimeInMeshScore + t.FirstDeliveriesScore + t.InvalidScore
}

// ScoringParams are the score parameters in force, for explaining scores.
type ScoringParams struct {
	CommitteeBonus            float64
	InvalidMessageWeight      float64
	InvalidMessageHalfLife    time.Duration
	TimeInMeshWeight          float64 // per second in the mesh
	TimeInMeshCap             time.Duration
	FirstDeliveriesWeight     float64
	FirstDeliveriesCap        float64
	TopicScoreCap             float64
	IPColocationWeight        float64
	IPColocationThreshold     int
	BehaviourPenaltyWeight    float64
	BehaviourPenaltyThreshold float64
	GossipThreshold           float64
	PublishThreshold          float64
	GraylistThreshold         float64
}

// ScoringParams returns the score parameters of this mesh; ok is false
// when scoring is off.
func (m *Mesh) ScoringParams() (ScoringParams, bool) {
	s := m.cfg.Scoring
	if !s.Enabled {
		return ScoringParams{}, false
	}
	tp := topicScoreParams(s)
	return ScoringParams{
		CommitteeBonus: s.CommitteeBonus, InvalidMessageWeight: s.InvalidMessageWeight, InvalidMessageHalfLife: s.InvalidMessageHalfLife,
		TimeInMeshWeight: tp.TimeInMeshWeight, TimeInMeshCap: time.Duration(tp.TimeInMeshCap) * tp.TimeInMeshQuantum,
		FirstDeliveriesWeight: tp.FirstMessageDeliveriesWeight, FirstDeliveriesCap: tp.FirstMessageDeliveriesCap,
		TopicScoreCap: topicScoreCap, IPColocationWeight: s.IPColocationWeight, IPColocationThreshold: max(s.IPColocationThreshold, 1),
		BehaviourPenaltyWeight: s.BehaviourPenaltyWeight, BehaviourPenaltyThreshold: s.BehaviourPenaltyThreshold,
		GossipThreshold: s.GossipThreshold, PublishThreshold: s.PublishThreshold, GraylistThreshold: s.GraylistThreshold,
	}, true
}

// scoreParts breaks a snapshot down with the parameters of s. Every topic in
// a snapshot is scored: pubsub keeps topic records only for topics with
// score parameters, and a Mesh gives every topic it joins the same ones.
func scoreParts(s ScoreConfig, snap *pubsub.PeerScoreSnapshot) ScoreParts {
	tp := topicScoreParams(s)
	parts := ScoreParts{TopicCap: topicScoreCap, AppSpecific: snap.AppSpecificScore,
		IPColocationFactor: snap.IPColocationFactor, IPColocation: snap.IPColocationFactor * s.IPColocationWeight,
		BehaviourCounter: snap.BehaviourPenalty}
	if excess := snap.BehaviourPenalty - s.BehaviourPenaltyThreshold; excess > 0 {
		parts.Behaviour = excess * excess * s.BehaviourPenaltyWeight
	}
	kinds := []string{KindTx.String(), KindBulletin.String(), KindQC.String(), "other"}
	byKind := make([]TopicScoreParts, len(kinds))
	for i, k := range kinds {
		byKind[i].Kind = k
	}
	for name, ts := range snap.Topics {
		i := len(kinds) - 1
		if info, err := ParseTopic(name); err == nil {
			i = int(info.Kind) - 1 // KindTx, KindBulletin, KindQC are 1, 2, 3
		}
		k := &byKind[i]
		k.Topics++
		// The terms as pubsub computes them, in the same order.
		p1 := min(float64(ts.TimeInMesh/tp.TimeInMeshQuantum), tp.TimeInMeshCap) * tp.TimeInMeshWeight
		p2 := ts.FirstMessageDeliveries * tp.FirstMessageDeliveriesWeight
		p4 := ts.InvalidMessageDeliveries * ts.InvalidMessageDeliveries * tp.InvalidMessageDeliveriesWeight
		k.TimeInMesh = max(k.TimeInMesh, ts.TimeInMesh)
		k.TimeInMeshScore += p1 * tp.TopicWeight
		k.FirstDeliveries += ts.FirstMessageDeliveries
		k.FirstDeliveriesScore += p2 * tp.TopicWeight
		k.InvalidDeliveries += ts.InvalidMessageDeliveries
		k.InvalidScore += p4 * tp.TopicWeight
		parts.TopicSum += (p1 + p2 + p4) * tp.TopicWeight
	}
	for _, k := range byKind {
		if k.Topics > 0 {
			parts.Topics = append(parts.Topics, k)
		}
	}
	return parts
}

// ScoreParts returns how p's score in the last snapshot is made.
func (m *Mesh) ScoreParts(p peer.ID) (ScoreParts, bool) {
	snap := m.scores.Load()
	if snap == nil {
		return ScoreParts{}, false
	}
	s, ok := (*snap)[p]
	if !ok {
		return ScoreParts{}, false
	}
	return scoreParts(m.cfg.Scoring, s), true
}
