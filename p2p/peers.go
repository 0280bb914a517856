package p2p

import (
	"cmp"
	"maps"
	"math"
	"slices"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// onScores receives pubsub's periodic score snapshot (on the pubsub event
// loop) and refreshes the score gauges.
func (m *Mesh) onScores(snap map[peer.ID]*pubsub.PeerScoreSnapshot) {
	own := maps.Clone(snap)
	m.scores.Store(&own)

	m.metrics.committeeScore.Reset()
	worst := 0.0
	for p, s := range own {
		if mem, ok := m.host.committee.member(p); ok {
			m.metrics.committeeScore.WithLabelValues(mem.Name).Set(s.Score)
		} else {
			worst = math.Min(worst, s.Score)
		}
	}
	m.metrics.worstOtherScore.Set(worst)
}

// updatePeerGauges refreshes the connected-peer gauges (from the link
// check loop, so they work with scoring disabled).
func (m *Mesh) updatePeerGauges() {
	committee, other := 0, 0
	for _, p := range m.host.h.Network().Peers() {
		if _, ok := m.host.committee.member(p); ok {
			committee++
		} else {
			other++
		}
	}
	m.metrics.connectedPeers.WithLabelValues("committee").Set(float64(committee))
	m.metrics.connectedPeers.WithLabelValues("other").Set(float64(other))
}

// Score returns p's gossipsub score from the last snapshot.
func (m *Mesh) Score(p peer.ID) (float64, bool) {
	snap := m.scores.Load()
	if snap == nil {
		return 0, false
	}
	s, ok := (*snap)[p]
	if !ok {
		return 0, false
	}
	return s.Score, true
}

// Peers lists every committee member (connected or not, except this node)
// and every connected non-member: members first by name, then others by ID.
func (m *Mesh) Peers() []PeerInfo {
	net := m.host.h.Network()
	seen := make(map[peer.ID]bool)
	var out []PeerInfo
	add := func(p peer.ID) {
		if seen[p] || p == m.self {
			return
		}
		seen[p] = true
		info := PeerInfo{ID: p, Connected: m.host.Connected(p)}
		if mem, ok := m.host.committee.member(p); ok {
			info.Member, info.Name = true, mem.Name
		}
		if snap := m.scores.Load(); snap != nil {
			if s, ok := (*snap)[p]; ok {
				info.Score, info.HasScore, info.ScoreParts = s.Score, true, scoreParts(m.cfg.Scoring, s)
			}
		}
		for _, c := range net.ConnsToPeer(p) {
			info.Addrs = append(info.Addrs, c.RemoteMultiaddr().String())
		}
		out = append(out, info)
	}
	for p := range m.host.committee {
		add(p)
	}
	for _, p := range net.Peers() {
		add(p)
	}
	slices.SortFunc(out, func(a, b PeerInfo) int {
		if a.Member != b.Member {
			if a.Member {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return out
}
