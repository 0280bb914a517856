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
	Addrs    []string // remote addresses of open connections
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

// JSONMeshPeer is one peer in GET /api/v1/mesh. Score is null when no
// score is known yet.
type JSONMeshPeer struct {
	PeerID    string   `json:"peer_id"`
	Name      string   `json:"name,omitempty"`
	Member    bool     `json:"member"`
	Connected bool     `json:"connected"`
	Score     *float64 `json:"score"`
	Addrs     []string `json:"addrs"`
}

// MeshResponse is the body of GET /api/v1/mesh.
type MeshResponse struct {
	// UnixMillis is when the snapshot was taken: a dashboard computes rates
	// from two snapshots' counters and times.
	UnixMillis U64             `json:"unix_millis"`
	Topics     []JSONMeshTopic `json:"topics"`
	Peers      []JSONMeshPeer  `json:"peers"`
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
		if p.HasScore && !math.IsNaN(p.Score) && !math.IsInf(p.Score, 0) {
			score := p.Score
			jp.Score = &score
		}
		if jp.Addrs == nil {
			jp.Addrs = []string{}
		}
		resp.Peers[i] = jp
	}
	writeJSON(w, http.StatusOK, resp)
}
