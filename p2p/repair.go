package p2p

import (
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Pubsub link repair.
//
// go-libp2p-pubsub v0.19 keeps one outbound stream per peer and can leave a
// still-connected peer with a broken link:
//
//   - When the connection carrying our outbound stream closes while another
//     connection to the peer remains (duplicate connections are common: QUIC
//     and TCP dialed together, two nodes dialing each other), pubsub forgets
//     every subscription of the peer and reopens its writer, but the peer,
//     whose own writer lives on the surviving connection, never re-sends its
//     subscriptions. We then never forward it anything: a light client,
//     for one, stops receiving its shard.
//   - Opening the outbound stream can fail while the connection stays up;
//     pubsub then drops the peer and never retries. After 4 writer restarts
//     in 10 minutes it also stops reopening the writer.
//
// A stream-level fix cannot be ordered reliably (the first writer restart
// has no delay, and resetting the peer's writer makes the peer forget our
// subscriptions in turn), so the repair is a full reconnect: with every
// connection closed both sides drop all state for the peer, and the next
// connection starts from a clean handshake in both directions. Bootstrap
// peers are redialed by the bootstrapper; a light client redials us.
//
// Two triggers: the tracer reports our writer closed while the peer is
// still connected; and a periodic check (PubsubCheckInterval) finds a
// connected pubsub-capable peer without a pubsub link, or a committee peer
// missing from a topic it must be on (validators are on the tx topic and
// every shard), on two consecutive checks.

// Values of the "reason" label of allegro_p2p_pubsub_link_repairs_total.
const (
	repairWriterClosed      = "writer_closed"
	repairNoLink            = "no_pubsub_link"
	repairSubscriptionsLost = "subscriptions_lost"
)

// onOutboundStreamClosed is called by the tracer on the pubsub event loop
// when our writer to p ends; it must not block.
func (m *Mesh) onOutboundStreamClosed(p peer.ID) {
	if m.host.h.Network().Connectedness(p) == network.Connected {
		m.forceReconnect(p, repairWriterClosed)
	}
}

// Repairs found by the periodic check are spaced per peer: the n-th within
// repairMemory waits PubsubCheckInterval·2^n (at most maxRepairSpacing)
// after the previous one, so a peer that stays odd (say, a member running
// another topic version) is not reconnected every few seconds forever.
const (
	maxRepairSpacing = 5 * time.Minute
	repairMemory     = 10 * time.Minute
)

type repairRecord struct {
	last time.Time
	n    int
}

// forceReconnect closes every connection to p, at most one repair per peer
// at a time. It returns at once; the close runs in a goroutine tracked by
// the mesh. Repairs for a closed writer are never delayed (the event is
// real); others are spaced (see maxRepairSpacing).
func (m *Mesh) forceReconnect(p peer.ID, reason string) {
	m.repairMu.Lock()
	defer m.repairMu.Unlock()
	if m.stopping || m.repairing[p] {
		return
	}
	now := time.Now()
	rec := m.repairLog[p]
	if now.Sub(rec.last) > repairMemory {
		rec = repairRecord{}
	}
	if reason != repairWriterClosed && rec.n > 0 {
		spacing := min(m.cfg.PubsubCheckInterval<<min(rec.n, 20), maxRepairSpacing)
		if now.Sub(rec.last) < spacing {
			return
		}
	}
	m.repairLog[p] = repairRecord{last: now, n: rec.n + 1}
	m.repairing[p] = true
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		name := ""
		if mem, ok := m.host.committee.member(p); ok {
			name = mem.Name
		}
		m.metrics.linkRepairs.WithLabelValues(reason).Inc()
		m.logger.Info("p2p: reconnecting peer to repair its pubsub link", "peer", p, "name", name, "reason", reason)
		_ = m.host.h.Network().ClosePeer(p)
		m.repairMu.Lock()
		delete(m.repairing, p)
		m.repairMu.Unlock()
	}()
}

// linkCheckLoop runs checkLinks every PubsubCheckInterval until Stop.
func (m *Mesh) linkCheckLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.PubsubCheckInterval)
	defer t.Stop()
	suspects := make(map[peer.ID]string)
	for {
		select {
		case <-m.ctx.Done():
			return
		case now := <-t.C:
			suspects = m.checkLinks(now, suspects)
			m.updatePeerGauges()
			m.forgetOldRepairs(now)
		}
	}
}

// checkLinks returns the peers failing a check now; those that also failed
// the previous check are reconnected. Bounded by the connected peers.
func (m *Mesh) checkLinks(now time.Time, prev map[peer.ID]string) map[peer.ID]string {
	m.mu.Lock()
	ps := m.ps
	var mustJoin []string
	if m.member {
		mustJoin = []string{m.topics.tx}
	} else {
		for name, jt := range m.joined {
			if jt.sub != nil {
				mustJoin = append(mustJoin, name)
			}
		}
	}
	m.mu.Unlock()
	if ps == nil {
		return prev
	}
	linked := make(map[peer.ID]bool)
	for _, p := range ps.ListPeers("") {
		linked[p] = true
	}
	onTopic := make(map[string]map[peer.ID]bool, len(mustJoin))
	for _, topic := range mustJoin {
		set := make(map[peer.ID]bool)
		for _, p := range ps.ListPeers(topic) {
			set[p] = true
		}
		onTopic[topic] = set
	}

	net := m.host.h.Network()
	failing := make(map[peer.ID]string)
	for _, p := range net.Peers() {
		if !m.settled(p, now) {
			continue
		}
		protos, err := m.host.h.Peerstore().SupportsProtocols(p, pubsub.GossipSubDefaultProtocols...)
		if err != nil || len(protos) == 0 {
			continue // not a pubsub peer (or not identified yet)
		}
		reason := ""
		if !linked[p] {
			reason = repairNoLink
		} else if _, isMember := m.host.committee.member(p); isMember {
			for _, topic := range mustJoin {
				if !onTopic[topic][p] {
					reason = repairSubscriptionsLost
					break
				}
			}
		}
		if reason == "" {
			continue
		}
		failing[p] = reason
		if _, again := prev[p]; again {
			m.forceReconnect(p, reason)
		}
	}
	return failing
}

// settled reports whether p's oldest connection is older than one check
// interval, so identify and the pubsub handshake have had time to finish.
func (m *Mesh) settled(p peer.ID, now time.Time) bool {
	conns := m.host.h.Network().ConnsToPeer(p)
	if len(conns) == 0 {
		return false
	}
	oldest := now
	for _, c := range conns {
		if o := c.Stat().Opened; o.Before(oldest) {
			oldest = o
		}
	}
	return now.Sub(oldest) >= m.cfg.PubsubCheckInterval
}

// forgetOldRepairs bounds the repair log to peers repaired recently.
func (m *Mesh) forgetOldRepairs(now time.Time) {
	m.repairMu.Lock()
	defer m.repairMu.Unlock()
	for p, rec := range m.repairLog {
		if now.Sub(rec.last) > repairMemory {
			delete(m.repairLog, p)
		}
	}
}
