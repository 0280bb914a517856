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
