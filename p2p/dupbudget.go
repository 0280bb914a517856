package p2p

import (
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"
)

// duplicateBudget bounds the QC frames carrying nothing new that one peer
// may send. Such a frame is ignored before any of its signatures is
// checked, without penalty, since honest peers send some: two members
// publish one QC in two frames, and a relay forwards the second. But a
// frame's header is not signed, so anyone can wrap QCs a node already holds
// (or forged QCs for transactions it holds a QC of) into frames with ids
// never seen; without a bound a peer could make the node decode such frames
// forever at no cost to itself. Past the budget they are rejected, which
// penalises the sender like any invalid message.
//
// A validator budgets peers outside the committee, which may send on the
// open QC shards; members' frames overlap at a validator all the time and
// members are accountable to each other. A light client budgets members
// too, with a larger allowance, so that one Byzantine member cannot make it
// decode without end.
type duplicateBudget struct {
	every rate.Limit
	burst int
	// peers holds one bucket per recently counted peer. A peer evicted
	// from it starts again with a full bucket, which costs an outsider a
	// new identity and connection.
	peers *lru.Cache[peer.ID, *rate.Limiter]
}

// budgetedPeers bounds the peers whose budget is remembered.
const budgetedPeers = 4096

func newDuplicateBudget(perSecond float64, burst int) *duplicateBudget {
	peers, err := lru.New[peer.ID, *rate.Limiter](budgetedPeers)
	if err != nil {
		panic(err) // only for a non-positive size
	}
	return &duplicateBudget{every: rate.Limit(perSecond), burst: burst, peers: peers}
}

// allow takes one frame from p's budget and reports whether there was one.
func (d *duplicateBudget) allow(p peer.ID, now time.Time) bool {
	l, ok := d.peers.Get(p)
	if !ok {
		l = rate.NewLimiter(d.every, d.burst)
		if prev, found, _ := d.peers.PeekOrAdd(p, l); found {
			l = prev
		}
	}
	return l.AllowN(now, 1)
}

// budgetFor returns the budget a frame with nothing new from peer from
// draws on, or nil when such frames from it are not counted: this node's
// own, and a member's at a validator.
func (p *pipelines) budgetFor(from peer.ID) *duplicateBudget {
	if from == p.self {
		return nil
	}
	if _, member := p.members.member(from); !member {
		return p.outsiderDups
	}
	if !p.selfMember {
		return p.memberDups
	}
	return nil
}
