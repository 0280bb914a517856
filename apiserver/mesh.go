package apiserver

import (
	"math"
	"net/http"
	"time"
)

// routeMesh is served only when the backend is a MeshReporter.
const routeMesh = "/api/v1/mesh"

// MeshReporter is implemented by backends that can describe their gossip
// mesh. GET /api/v1/mesh is served only when the Backend implements it. Mesh
// must be cheap (it is polled by dashboards) and safe for concurrent use.
type MeshReporter interface {
	Mesh() MeshInfo
}

// MeshInfo is a snapshot of the gossip mesh as seen from this node.
type MeshInfo struct {
	// Topics holds cumulative counters per topic kind ("tx", "bulletin",
	// "qc", "other"), counted since the node started.
	Topics []MeshTopic
	// Peers lists every committee member (connected or not, except this
	// node) and every other connected peer.
	Peers []MeshPeer
	// Scoring holds the peer score parameters in force; nil with scoring
	// off.
	Scoring *MeshScoring
}

// MeshScoring are the gossipsub peer score parameters of a node, for
// explaining scores (see p2p.ScoreConfig).
type MeshScoring struct {
	CommitteeBonus            float64
	InvalidMessageWeight      float64
	InvalidMessageHalfLife    time.Duration
	TimeInMeshWeight          float64 // per second
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

// MeshScoreParts is how a peer's score is made (see p2p.ScoreParts):
// min(TopicSum, TopicCap) + AppSpecific + IPColocation + Behaviour.
type MeshScoreParts struct {
	Topics             []MeshTopicScore
	TopicSum           float64
	TopicCap           float64
	AppSpecific        float64 // the committee bonus
	IPColocation       float64
	IPColocationFactor float64
	Behaviour          float64
	BehaviourCounter   float64
}

// MeshTopicScore holds the score terms of one topic kind.
type MeshTopicScore struct {
	Kind                 string
	Topics               int
	TimeInMesh           time.Duration
	TimeInMeshScore      float64
	FirstDeliveries      float64
	FirstDeliveriesScore float64
	InvalidDeliveries    float64
	InvalidScore         float64
}

// MeshTopic holds the cumulative counters of one topic kind.
// Messages are frames (SPEC §5): the Objects counters count what they
// carried.
type MeshTopic struct {
	Kind             string
	Published        uint64 // frames this node published
	ObjectsPublished uint64 // objects in them
	PublishErrors    uint64 // publishes that failed
	Accepted         uint64 // frame validations ending in Accept (local publishes included)
	Ignored          uint64 // frame validations ending in Ignore
	Rejected         uint64 // frame validations ending in Reject
	ObjectsReceived  uint64 // objects in accepted frames from peers
	ObjectsNew       uint64 // of those, objects new to this node
	Delivered        uint64 // objects handed to this node's handlers
	Duplicates       uint64 // frame copies dropped as already seen
	Dropped          uint64 // frames lost to local back-pressure (full queues)
}

// MeshPeer is one peer of the mesh.
type MeshPeer struct {
	PeerID    string
	Name      string // the committee member's name; empty for other peers
	Member    bool
	Connected bool
	// Score is the gossipsub score from the last snapshot; HasScore is false
	// before the first snapshot or with scoring disabled.
	Score    float64
	HasScore bool
	// ScoreParts is how Score is made (nil: unknown).
	ScoreParts *MeshScoreParts
	Addrs      []string // remote addresses of open connections
}

// JSONMeshTopic is one topic kind's counters in GET /api/v1/mesh.
type JSONMeshTopic struct {
	Kind             string `json:"kind"`
	Published        U64    `json:"published"`
	ObjectsPublished U64    `json:"objects_published"`
	PublishErrors    U64    `json:"publish_errors"`
	Accepted         U64    `json:"accepted"`
	Ignored          U64    `json:"ignored"`
	Rejected         U64    `json:"rejected"`
	ObjectsReceived  U64    `json:"objects_received"`
	ObjectsNew       U64    `json:"objects_new"`
	Delivered        U64    `json:"delivered"`
	Duplicates       U64    `json:"duplicates"`
	Dropped          U64    `json:"dropped"`
}

// JSONMeshPeer is one peer in GET /api/v1/mesh. Score and ScoreParts are
// null when no score is known yet.
type JSONMeshPeer struct {
	PeerID     string              `json:"peer_id"`
	Name       string              `json:"name,omitempty"`
	Member     bool                `json:"member"`
	Connected  bool                `json:"connected"`
	Score      *float64            `json:"score"`
	ScoreParts *JSONMeshScoreParts `json:"score_parts"`
	Addrs      []string            `json:"addrs"`
}

// JSONMeshScoreParts is how a peer's score is made:
// min(topic_sum, topic_cap) + committee_bonus + ip_colocation + behaviour.
type JSONMeshScoreParts struct {
	Topics             []JSONMeshTopicScore `json:"topics"`
	TopicSum           float64              `json:"topic_sum"`
	TopicCap           float64              `json:"topic_cap"`
	CommitteeBonus     float64              `json:"committee_bonus"`
	IPColocation       float64              `json:"ip_colocation"`
	IPColocationFactor float64              `json:"ip_colocation_factor"`
	Behaviour          float64              `json:"behaviour"`
	BehaviourCounter   float64              `json:"behaviour_counter"`
}

// JSONMeshTopicScore holds the score terms of one topic kind (QC shards
// summed): time in mesh, first deliveries and invalid messages, each as
// the measure and its term.
type JSONMeshTopicScore struct {
	Kind                 string  `json:"kind"`
	Topics               int     `json:"topics"`
	TimeInMeshMs         int64   `json:"time_in_mesh_ms"`
	TimeInMesh           float64 `json:"time_in_mesh"`
	FirstDeliveries      float64 `json:"first_deliveries_count"`
	FirstDeliveriesScore float64 `json:"first_deliveries"`
	InvalidDeliveries    float64 `json:"invalid_messages_count"`
	InvalidScore         float64 `json:"invalid_messages"`
}

// JSONMeshScoring holds the score parameters in GET /api/v1/mesh.
type JSONMeshScoring struct {
	CommitteeBonus            float64 `json:"committee_bonus"`
	InvalidMessageWeight      float64 `json:"invalid_message_weight"`
	InvalidMessageHalfLifeMs  int64   `json:"invalid_message_half_life_ms"`
	TimeInMeshWeight          float64 `json:"time_in_mesh_weight"`
	TimeInMeshCapMs           int64   `json:"time_in_mesh_cap_ms"`
	FirstDeliveriesWeight     float64 `json:"first_deliveries_weight"`
	FirstDeliveriesCap        float64 `json:"first_deliveries_cap"`
	TopicScoreCap             float64 `json:"topic_score_cap"`
	IPColocationWeight        float64 `json:"ip_colocation_weight"`
	IPColocationThreshold     int     `json:"ip_colocation_threshold"`
	BehaviourPenaltyWeight    float64 `json:"behaviour_penalty_weight"`
	BehaviourPenaltyThreshold float64 `json:"behaviour_penalty_threshold"`
	GossipThreshold           float64 `json:"gossip_threshold"`
	PublishThreshold          float64 `json:"publish_threshold"`
	GraylistThreshold         float64 `json:"graylist_threshold"`
}

// MeshResponse is the body of GET /api/v1/mesh.
type MeshResponse struct {
	// UnixMillis is when the snapshot was taken: a dashboard computes rates
	// from two snapshots' counters and times.
	UnixMillis U64             `json:"unix_millis"`
	Topics     []JSONMeshTopic `json:"topics"`
	Peers      []JSONMeshPeer  `json:"peers"`
	// Scoring is null with peer scoring off.
	Scoring *JSONMeshScoring `json:"scoring"`
}

func (s *Server) handleMesh(w http.ResponseWriter, _ *http.Request) {
	mr, ok := s.backend.(MeshReporter)
	if !ok { // not registered in that case; kept for safety
		writeError(w, http.StatusNotFound, "NOT_FOUND", "this node does not report its mesh")
		return
	}
	info := mr.Mesh()
	resp := MeshResponse{
		UnixMillis: U64(time.Now().UnixMilli()),
		Topics:     make([]JSONMeshTopic, len(info.Topics)),
		Peers:      make([]JSONMeshPeer, len(info.Peers)),
	}
	for i, t := range info.Topics {
		resp.Topics[i] = JSONMeshTopic{Kind: t.Kind, Published: U64(t.Published), ObjectsPublished: U64(t.ObjectsPublished),
			PublishErrors: U64(t.PublishErrors), Accepted: U64(t.Accepted), Ignored: U64(t.Ignored), Rejected: U64(t.Rejected),
			ObjectsReceived: U64(t.ObjectsReceived), ObjectsNew: U64(t.ObjectsNew), Delivered: U64(t.Delivered),
			Duplicates: U64(t.Duplicates), Dropped: U64(t.Dropped)}
	}
	for i, p := range info.Peers {
		jp := JSONMeshPeer{PeerID: p.PeerID, Name: p.Name, Member: p.Member, Connected: p.Connected, Addrs: p.Addrs}
		if p.HasScore && finite(p.Score) {
			score := p.Score
			jp.Score = &score
			jp.ScoreParts = newJSONMeshScoreParts(p.ScoreParts)
		}
		if jp.Addrs == nil {
			jp.Addrs = []string{}
		}
		resp.Peers[i] = jp
	}
	if sc := info.Scoring; sc != nil {
		resp.Scoring = &JSONMeshScoring{CommitteeBonus: sc.CommitteeBonus, InvalidMessageWeight: sc.InvalidMessageWeight,
			InvalidMessageHalfLifeMs: sc.InvalidMessageHalfLife.Milliseconds(), TimeInMeshWeight: sc.TimeInMeshWeight,
			TimeInMeshCapMs: sc.TimeInMeshCap.Milliseconds(), FirstDeliveriesWeight: sc.FirstDeliveriesWeight,
			FirstDeliveriesCap: sc.FirstDeliveriesCap, TopicScoreCap: sc.TopicScoreCap, IPColocationWeight: sc.IPColocationWeight,
			IPColocationThreshold: sc.IPColocationThreshold, BehaviourPenaltyWeight: sc.BehaviourPenaltyWeight,
			BehaviourPenaltyThreshold: sc.BehaviourPenaltyThreshold, GossipThreshold: sc.GossipThreshold,
			PublishThreshold: sc.PublishThreshold, GraylistThreshold: sc.GraylistThreshold}
		if !finite(sc.CommitteeBonus, sc.InvalidMessageWeight, sc.TimeInMeshWeight, sc.FirstDeliveriesWeight, sc.FirstDeliveriesCap,
			sc.TopicScoreCap, sc.IPColocationWeight, sc.BehaviourPenaltyWeight, sc.BehaviourPenaltyThreshold, sc.GossipThreshold,
			sc.PublishThreshold, sc.GraylistThreshold) {
			resp.Scoring = nil
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// newJSONMeshScoreParts converts a breakdown; nil for none, or for one
// with a value JSON cannot carry (NaN, infinities).
func newJSONMeshScoreParts(p *MeshScoreParts) *JSONMeshScoreParts {
	if p == nil || !finite(p.TopicSum, p.TopicCap, p.AppSpecific, p.IPColocation, p.IPColocationFactor, p.Behaviour, p.BehaviourCounter) {
		return nil
	}
	out := &JSONMeshScoreParts{Topics: make([]JSONMeshTopicScore, len(p.Topics)), TopicSum: p.TopicSum, TopicCap: p.TopicCap,
		CommitteeBonus: p.AppSpecific, IPColocation: p.IPColocation, IPColocationFactor: p.IPColocationFactor,
		Behaviour: p.Behaviour, BehaviourCounter: p.BehaviourCounter}
	for i, t := range p.Topics {
		if !finite(t.TimeInMeshScore, t.FirstDeliveries, t.FirstDeliveriesScore, t.InvalidDeliveries, t.InvalidScore) {
			return nil
		}
		out.Topics[i] = JSONMeshTopicScore{Kind: t.Kind, Topics: t.Topics, TimeInMeshMs: t.TimeInMesh.Milliseconds(),
			TimeInMesh: t.TimeInMeshScore, FirstDeliveries: t.FirstDeliveries, FirstDeliveriesScore: t.FirstDeliveriesScore,
			InvalidDeliveries: t.InvalidDeliveries, InvalidScore: t.InvalidScore}
	}
	return out
}

// finite reports whether every value can be encoded as a JSON number.
func finite(vs ...float64) bool {
	for _, v := range vs {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
	}
	return true
}
