package apiserver

import (
	"math"
	"net/http"
	"testing"
	"time"
)

// meshBackend is the fake backend with a gossip mesh to report.
type meshBackend struct {
	*fakeBackend
	info MeshInfo
}

func (m *meshBackend) Mesh() MeshInfo { return m.info }

// TestHTTPMesh: GET /api/v1/mesh reports the backend's counters and peers,
// u64 counters as decimal strings and an unknown score as null; a backend
// without a mesh has no such route.
func TestHTTPMesh(t *testing.T) {
	plain := startServer(t, newFake(t, 4))
	if code, _, body := do(t, http.MethodGet, baseURL(plain)+routeMesh, ""); code != http.StatusNotFound {
		t.Fatalf("backend without a mesh: %d %s", code, body)
	}

	b := &meshBackend{fakeBackend: newFake(t, 4), info: MeshInfo{
		Topics: []MeshTopic{
			{Kind: "tx", Published: 3, Accepted: 10, Ignored: 1, Rejected: 2, Delivered: 9, Duplicates: 4, Dropped: 1 << 60},
			{Kind: "qc"},
		},
		Peers: []MeshPeer{
			{PeerID: "12D3KooWA", Name: "v1", Member: true, Connected: true, Score: 12.5, HasScore: true, Addrs: []string{"/ip4/127.0.0.1/tcp/1"},
				ScoreParts: &MeshScoreParts{TopicSum: -87.5, TopicCap: 20, AppSpecific: 100, Topics: []MeshTopicScore{
					{Kind: "tx", Topics: 1, TimeInMesh: 1500 * time.Millisecond, TimeInMeshScore: 0.01, FirstDeliveries: 2.5, FirstDeliveriesScore: 2.5,
						InvalidDeliveries: 1, InvalidScore: -90}}}},
			{PeerID: "12D3KooWB", Name: "v2", Member: true},
			{PeerID: "12D3KooWC", Connected: true, Score: math.NaN(), HasScore: true},
			{PeerID: "12D3KooWD", Connected: true, Score: 1, HasScore: true, ScoreParts: &MeshScoreParts{IPColocation: math.Inf(-1)}},
		},
		Scoring: &MeshScoring{CommitteeBonus: 100, InvalidMessageWeight: -90, InvalidMessageHalfLife: time.Minute, TopicScoreCap: 20},
	}}
	s := startServer(t, b)
	code, hdr, body := do(t, http.MethodGet, baseURL(s)+routeMesh, "")
	if code != http.StatusOK || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("GET mesh: %d %s", code, body)
	}
	got := decodeAs[MeshResponse](t, body)
	if got.UnixMillis == 0 || len(got.Topics) != 2 || len(got.Peers) != 4 {
		t.Fatalf("mesh: %s", body)
	}
	if tx := got.Topics[0]; tx.Kind != "tx" || tx.Published != 3 || tx.Accepted != 10 || tx.Ignored != 1 ||
		tx.Rejected != 2 || tx.Delivered != 9 || tx.Duplicates != 4 || tx.Dropped != 1<<60 {
		t.Fatalf("tx topic: %+v", tx)
	}
	raw := decodeAs[map[string]any](t, body)
	if d := raw["topics"].([]any)[0].(map[string]any)["dropped"]; d != "1152921504606846976" {
		t.Fatalf("dropped encoded as %#v, want a decimal string", d)
	}
	p := got.Peers
	if p[0].Score == nil || *p[0].Score != 12.5 || !p[0].Connected || p[0].Name != "v1" || len(p[0].Addrs) != 1 {
		t.Fatalf("peer 0: %+v", p[0])
	}
	if p[1].Score != nil || p[1].Connected || p[1].Addrs == nil {
		t.Fatalf("peer without a score: %+v (addrs must be [], not null)", p[1])
	}
	if p[2].Score != nil || p[2].ScoreParts != nil || p[2].Member {
		t.Fatalf("a NaN score must be null: %+v", p[2])
	}
	// The breakdown of a score, its topic terms as measure and term.
	parts := p[0].ScoreParts
	if parts == nil || parts.TopicSum != -87.5 || parts.TopicCap != 20 || parts.CommitteeBonus != 100 || len(parts.Topics) != 1 {
		t.Fatalf("score parts of peer 0: %+v", parts)
	}
	if tx := parts.Topics[0]; tx.Kind != "tx" || tx.TimeInMeshMs != 1500 || tx.TimeInMesh != 0.01 || tx.FirstDeliveries != 2.5 ||
		tx.InvalidDeliveries != 1 || tx.InvalidScore != -90 {
		t.Fatalf("tx terms of peer 0: %+v", tx)
	}
	if p[1].ScoreParts != nil || p[3].Score == nil || p[3].ScoreParts != nil {
		t.Fatalf("unknown parts, and parts JSON cannot carry, must be null: %+v %+v", p[1], p[3])
	}
	if sc := got.Scoring; sc == nil || sc.CommitteeBonus != 100 || sc.InvalidMessageWeight != -90 || sc.InvalidMessageHalfLifeMs != 60_000 || sc.TopicScoreCap != 20 {
		t.Fatalf("scoring: %+v", got.Scoring)
	}
	if code, _, body := do(t, http.MethodGet, baseURL(startServer(t, &meshBackend{fakeBackend: newFake(t, 4)}))+routeMesh, ""); code != http.StatusOK ||
		decodeAs[map[string]any](t, body)["scoring"] != nil {
		t.Fatalf("scoring off: %d %s, want \"scoring\": null", code, body)
	}
	if code, _, _ := do(t, http.MethodPost, baseURL(s)+routeMesh, ""); code != http.StatusMethodNotAllowed {
		t.Fatalf("POST mesh: %d", code)
	}
}
