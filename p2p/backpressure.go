package p2p

import (
	"context"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// outbound tracks the depth of each committee peer's outbound pubsub queue
// (RPCs enqueued minus RPCs written, from tracer events) so that local
// publishes can wait for a congested queue to drain instead of overflowing
// it: pubsub itself has no back-pressure and drops RPCs on a full queue.
//
// A queue counts as congested at a quarter of its size and publishing
// resumes at an eighth. The wait protects this node's own queues; it cannot
// see relays, whose queues to a busy receiver fill in step with ours and
// which fall behind a fast publisher when CPU is short (they read, dedupe
// and forward every copy). Keeping our in-flight share small leaves them
// headroom; PeerOutboundQueueSize is sized for the rest.
//
// Only committee peers count: a slow or malicious light client must not
// throttle a validator. A committee peer that does not drain within the
// publish wait is marked stalled and ignored until its queue is mostly
// empty again, so a peer that stops reading costs one bounded wait, not one
// per publish; its overflow is dropped and counted as usual.
type outbound struct {
	members committeeIndex
	// A queue is congested at high, publishing resumes at resume, and a
	// stalled peer counts again at unstall.
	high, resume, unstall int64

	mu        sync.Mutex
	depth     map[peer.ID]int64
	congested map[peer.ID]struct{}
	stalled   map[peer.ID]struct{}
	drained   chan struct{} // closed when congested becomes empty
}

func newOutbound(members committeeIndex, queueSize int) *outbound {
	q := int64(queueSize)
	return &outbound{
		members:   members,
		high:      max(1, q/4),
		resume:    q / 8,
		unstall:   q / 16,
		depth:     make(map[peer.ID]int64),
		congested: make(map[peer.ID]struct{}),
		stalled:   make(map[peer.ID]struct{}),
		drained:   make(chan struct{}),
	}
}

// add changes p's queue depth by delta (+1 enqueued, -1 written).
func (o *outbound) add(p peer.ID, delta int64) {
	if _, ok := o.members.member(p); !ok {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	d := o.depth[p] + delta
	o.depth[p] = d
	_, isStalled := o.stalled[p]
	switch {
	case isStalled:
		if d <= o.unstall {
			delete(o.stalled, p)
		}
	case d >= o.high:
		o.congested[p] = struct{}{}
	case d <= o.resume:
		o.clearLocked(p)
	}
}

// reset forgets p's queue (a new or closed stream starts from empty) and
// returns the depth it had.
func (o *outbound) reset(p peer.ID) int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	d := o.depth[p]
	delete(o.depth, p)
	delete(o.stalled, p)
	o.clearLocked(p)
	return d
}

func (o *outbound) clearLocked(p peer.ID) {
	if _, ok := o.congested[p]; !ok {
		return
	}
	delete(o.congested, p)
	if len(o.congested) == 0 {
		close(o.drained)
		o.drained = make(chan struct{})
	}
}

// wait blocks while a committee peer's queue is congested, at most maxWait
// (then the congested peers are marked stalled and it returns their IDs) or
// until ctx is done. maxWait <= 0 disables waiting.
func (o *outbound) wait(ctx context.Context, maxWait time.Duration) ([]peer.ID, error) {
	if maxWait <= 0 {
		return nil, nil
	}
	var timer *time.Timer
	for {
		o.mu.Lock()
		if len(o.congested) == 0 {
			o.mu.Unlock()
			return nil, nil
		}
		ch := o.drained
		o.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(maxWait)
			defer timer.Stop()
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
			return o.stallCongested(), nil
		}
	}
}

func (o *outbound) stallCongested() []peer.ID {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []peer.ID
	for p := range o.congested {
		o.stalled[p] = struct{}{}
		out = append(out, p)
	}
	for _, p := range out {
		o.clearLocked(p)
	}
	return out
}
