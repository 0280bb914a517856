package p2p

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
)

const (
	// maxParallelDials bounds concurrent bootstrap dials, so a large
	// committee coming up at once does not open hundreds of sockets.
	maxParallelDials = 16
	// warnAfterFailures is the number of consecutive failed dials after
	// which an unreachable peer is logged at Warn (once until it connects).
	warnAfterFailures = 5
	// standInAfterFailures is the number of consecutive failed dials after
	// which a dial group's peer counts as down and the group's next peer
	// is dialled in its place (the peer itself is still redialled).
	standInAfterFailures = 3
)

// DialGroup is a set of peers of which the host keeps Want connected: it
// dials the first Want and, for each of those that stays unreachable,
// the next in order as well. A sparse mesh uses one group per region, so a
// validator that is down does not leave its neighbours without a link to
// its region.
type DialGroup struct {
	Want  int
	Peers []peer.AddrInfo // in order of preference
}

// bootPeer is the reconnect state of one static peer.
type bootPeer struct {
	info    peer.AddrInfo
	backoff time.Duration // wait after the next attempt
	next    time.Time     // earliest next attempt
	dialing bool
	// connectedSince is when the peer was last seen connected; zero while
	// disconnected. A connection that lasted ReconnectBackoffMax resets
	// the backoff, one that flaps keeps growing it.
	connectedSince time.Time
	failures       int
	warned         bool
	// grouped: kept for a dial group, which may also retire it.
	grouped bool
}

// bootstrapper keeps a static list of peers connected, redialing dropped
// ones with jittered exponential backoff between ReconnectBackoffMin and
// ReconnectBackoffMax. One loop goroutine decides; dials run in bounded
// parallel goroutines.
type bootstrapper struct {
	h      *Host
	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{}
	sem    chan struct{}
	wg     sync.WaitGroup
	notify *network.NotifyBundle

	mu     sync.Mutex
	peers  map[peer.ID]*bootPeer
	groups []DialGroup
}

func newBootstrapper(h *Host) *bootstrapper {
	ctx, cancel := context.WithCancel(context.Background())
	return &bootstrapper{
		h:      h,
		ctx:    ctx,
		cancel: cancel,
		wake:   make(chan struct{}, 1),
		sem:    make(chan struct{}, maxParallelDials),
		peers:  make(map[peer.ID]*bootPeer),
	}
}

func (b *bootstrapper) add(info peer.AddrInfo) {
	b.mu.Lock()
	b.addLocked(info)
	b.mu.Unlock()
	b.poke()
}

func (b *bootstrapper) addLocked(info peer.AddrInfo) {
	// Permanent TTL: a static peer's addresses must outlive any
	// disconnection, or the peerstore forgets how to redial it.
	b.h.h.Peerstore().AddAddrs(info.ID, info.Addrs, peerstore.PermanentAddrTTL)
	if p, ok := b.peers[info.ID]; ok {
		p.info.Addrs = append(p.info.Addrs, info.Addrs...)
	} else {
		b.peers[info.ID] = &bootPeer{info: info, backoff: b.h.cfg.ReconnectBackoffMin, next: time.Now().Add(b.yield(info.ID))}
	}
}

// addGroup starts keeping g's Want peers connected.
func (b *bootstrapper) addGroup(g DialGroup) {
	b.mu.Lock()
	b.groups = append(b.groups, g)
	b.standIn()
	b.mu.Unlock()
	b.poke()
}

// standIn keeps each group's static peers to its first Want peers that are
// up (connected, or not yet failed standInAfterFailures dials running),
// plus the ones before those that are down, which are still redialled and
// take their place back when they return. A stand-in no longer needed is
// retired: no longer redialled or protected. Its connection is left to
// end by itself: closing it makes pubsub reopen its stream, which dials
// the peer again. Called with mu held.
func (b *bootstrapper) standIn() {
	for _, g := range b.groups {
		// Groups do not overlap, so a peer is on for its group when it is
		// a grouped static peer.
		on := func(id peer.ID) (*bootPeer, bool) {
			p := b.peers[id]
			return p, p != nil && p.grouped
		}
		taken, last := 0, -1
		want := make([]bool, len(g.Peers))
		for k, info := range g.Peers {
			if taken == g.Want {
				break
			}
			if p, ok := on(info.ID); ok && !b.h.Connected(info.ID) && p.failures >= standInAfterFailures {
				continue // down: kept, and stood in for
			}
			want[k], taken, last = true, taken+1, k
		}
		for k, info := range g.Peers {
			_, isOn := on(info.ID)
			switch {
			case want[k] && !isOn:
				b.addLocked(info)
				b.peers[info.ID].grouped = true
				if k >= g.Want {
					b.h.logger.Info("p2p: dialling a stand-in for an unreachable peer of a dial group", "peer", info.ID, "rank", k)
				}
			case isOn && !want[k] && k > last:
				delete(b.peers, info.ID)
				b.h.cm.Unprotect(info.ID, protectBootstrap)
				// Forget its permanent addresses too, or the next stream
				// pubsub opens to it dials it again.
				b.h.h.Peerstore().ClearAddrs(info.ID)
				b.h.logger.Info("p2p: retired a dial group's stand-in, the peer it stood in for is back", "peer", info.ID)
			}
		}
	}
}

// expected is how many peers the host keeps connected when all are up:
// its static peers outside groups, and each group's Want.
func (b *bootstrapper) expected() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, p := range b.peers {
		if !p.grouped {
			n++
		}
	}
	for _, g := range b.groups {
		n += min(g.Want, len(g.Peers))
	}
	return n
}

// poke wakes the loop without blocking.
func (b *bootstrapper) poke() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *bootstrapper) start() {
	b.notify = &network.NotifyBundle{
		DisconnectedF: func(_ network.Network, c network.Conn) {
			b.mu.Lock()
			_, ok := b.peers[c.RemotePeer()]
			b.mu.Unlock()
			if ok {
				b.poke()
			}
		},
	}
	b.h.h.Network().Notify(b.notify)
	b.wg.Add(1)
	go b.loop()
}

func (b *bootstrapper) stop() {
	b.cancel()
	if b.notify != nil {
		b.h.h.Network().StopNotify(b.notify)
	}
	b.wg.Wait()
}

func (b *bootstrapper) loop() {
	defer b.wg.Done()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-timer.C:
		case <-b.wake:
		}
		wait := b.round(time.Now())
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// round starts the dials that are due and returns how long to wait before
// the next round. It visits each peer once, so it is bounded by the list.
func (b *bootstrapper) round(now time.Time) time.Duration {
	cfg := b.h.cfg
	// Re-check connected peers at least this often, so a peer that dropped
	// without a notification (or connected inbound) is noticed.
	wait := cfg.ReconnectBackoffMax
	b.mu.Lock()
	defer b.mu.Unlock()
	b.standIn()
	for id, p := range b.peers {
		if b.h.Connected(id) {
			if p.connectedSince.IsZero() {
				p.connectedSince = now
			}
			continue
		}
		if p.dialing {
			continue
		}
		if !p.connectedSince.IsZero() {
			if now.Sub(p.connectedSince) >= cfg.ReconnectBackoffMax {
				p.backoff = cfg.ReconnectBackoffMin
				p.next = now.Add(b.yield(id))
			}
			p.connectedSince = time.Time{}
		}
		if now.Before(p.next) {
			wait = min(wait, p.next.Sub(now))
			continue
		}
		select {
		case b.sem <- struct{}{}:
		default:
			// All dial slots busy; a finishing dial pokes the loop.
			continue
		}
		p.dialing = true
		p.next = now.Add(jitter(p.backoff))
		p.backoff = min(2*p.backoff, cfg.ReconnectBackoffMax)
		wait = min(wait, p.next.Sub(now))
		b.wg.Add(1)
		go b.dial(p.info)
	}
	return max(wait, time.Millisecond)
}

func (b *bootstrapper) dial(info peer.AddrInfo) {
	defer b.wg.Done()
	defer func() { <-b.sem }()
	ctx, cancel := context.WithTimeout(b.ctx, b.h.cfg.DialTimeout)
	err := b.h.h.Connect(ctx, info)
	cancel()
	if b.h.metrics != nil {
		b.h.metrics.dialAttempt(err == nil)
	}
	name := ""
	if m, ok := b.h.committee.member(info.ID); ok {
		name = m.Name
	}

	b.mu.Lock()
	p, ok := b.peers[info.ID]
	if !ok {
		b.mu.Unlock()
		return
	}
	p.dialing = false
	failures, warn := 0, false
	if err == nil {
		failures = p.failures
		p.failures, p.warned = 0, false
		if p.connectedSince.IsZero() {
			p.connectedSince = time.Now()
		}
	} else {
		p.failures++
		failures = p.failures
		if p.failures >= warnAfterFailures && !p.warned {
			p.warned, warn = true, true
		}
	}
	// The next attempt was scheduled when this one started; a dial slower
	// than the backoff leaves it already due.
	retryIn := max(time.Until(p.next), 0)
	b.mu.Unlock()
	b.poke()

	switch {
	case b.ctx.Err() != nil:
	case err == nil:
		b.h.logger.Info("p2p: connected to bootstrap peer", "peer", info.ID, "name", name, "after_failures", failures)
	case warn:
		b.h.logger.Warn("p2p: bootstrap peer unreachable, still retrying", "peer", info.ID, "name", name, "failures", failures, "retry_in", retryIn, "err", err)
	default:
		b.h.logger.Debug("p2p: bootstrap dial failed", "peer", info.ID, "name", name, "failures", failures, "retry_in", retryIn, "err", err)
	}
}

// yield is how long to hold back a first dial to id. Two committee members
// list each other, and when both dial at once they end up with duplicate
// connections (see repair.go). The peer with the lower ID dials at once;
// the other waits about ReconnectBackoffMin and usually finds the
// connection already made.
func (b *bootstrapper) yield(id peer.ID) time.Duration {
	if b.h.h.ID() > id {
		return jitter(b.h.cfg.ReconnectBackoffMin)
	}
	return 0
}

// jitter spreads d by ±20%, so nodes restarted together do not redial in
// lockstep.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}
