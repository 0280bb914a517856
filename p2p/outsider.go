package p2p

import (
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"
)

// outsiderDuplicates bounds the QC frames carrying nothing new that a peer
// outside the committee may send. Such a frame is ignored before any of its
// signatures is checked, without penalty (an honest relay can send one), so
// without a bound an anonymous peer on an open QC shard could make a node
// decode frames forever at no cost to itself: a frame's header is not
// signed, so anyone can wrap QCs the node already holds, or forged QCs for
// transactions it already holds a QC of, into frames with ids never seen.
// An honest light client almost never sends one: it forwards frames as it
// received them, and a copy of a frame already seen is dropped by its id
// before validation. Past the budget such frames are rejected, which
// penalises the sender like any invalid message.
//
// Committee members are not counted: members' frames overlap in normal
// operation (two members publishing QCs of one transaction), and a member
// is accountable.
type outsiderDuplicates struct {
	every rate.Limit
	burst int
	// peers holds one bucket per recently counted outsider. A peer
	// evicted from it starts again with a full bucket, which costs an
	// attacker a new identity and connection.
	peers *lru.Cache[peer.ID, *rate.Limiter]
}

// outsiderBuckets bounds the outsiders whose budget is remembered.
const outsiderBuckets = 4096

func newOutsiderDuplicates(perSecond float64, burst int) *outsiderDuplicates {
	peers, err := lru.New[peer.ID, *rate.Limiter](outsiderBuckets)
	if err != nil {
		panic(err) // only for a non-positive size
	}
	return &outsiderDuplicates{every: rate.Limit(perSecond), burst: burst, peers: peers}
}

// allow takes one frame from p's budget and reports whether there was one.
func (d *outsiderDuplicates) allow(p peer.ID, now time.Time) bool {
	l, ok := d.peers.Get(p)
	if !ok {
		l = rate.NewLimiter(d.every, d.burst)
		if prev, found, _ := d.peers.PeekOrAdd(p, l); found {
			l = prev
		}
	}
	return l.AllowN(now, 1)
}
