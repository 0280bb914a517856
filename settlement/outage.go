package settlement

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/allegro-mesh/allegro/tempo"
)

// calls counts a pass's chain requests, to tell outages from recoveries.
// State reads may be answered from the client's per-block cache, so they
// prove the node is back only at a head newer than the outage's; sends and
// receipts always reach the node.
type calls struct {
	reads, node, failed atomic.Int64
	errMu               sync.Mutex
	err                 error
}

// record counts a state read (fromNode false) or a request that reached the
// node (fromNode true).
func (c *calls) record(err error, fromNode bool) {
	switch {
	case err == nil && fromNode:
		c.node.Add(1)
	case err == nil:
		c.reads.Add(1)
	default:
		c.failed.Add(1)
		c.errMu.Lock()
		if c.err == nil {
			c.err = err
		}
		c.errMu.Unlock()
	}
}

// availability logs once per outage and once per recovery. A pass that made
// no request, or only read cached state at the head the outage began at, says
// nothing either way.
func (s *Settler) availability(c *calls, head tempo.Head) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	back := c.node.Load() > 0 || (c.reads.Load() > 0 && head != s.outageHead)
	switch {
	case c.failed.Load() > 0 && !s.outage:
		s.outage, s.outageSince, s.outageHead = true, now, head
		s.m.unavailable.Set(1)
		s.log.Warn("chain unavailable; settlement waits for it and retries on every head", "err", c.err)
	case c.failed.Load() == 0 && back && s.outage:
		s.outageTotal += max(now.Sub(s.outageSince), 0)
		s.outage = false
		s.m.unavailable.Set(0)
		s.log.Info("chain available again; settlement resumed", "outage", now.Sub(s.outageSince))
	}
}

// outageClockLocked returns the total time the chain has been unavailable.
func (s *Settler) outageClockLocked(now time.Time) time.Duration {
	if s.outage {
		return s.outageTotal + max(now.Sub(s.outageSince), 0)
	}
	return s.outageTotal
}

// ageLocked is how long e has been certified while the chain answered.
func (s *Settler) ageLocked(e *entry, now time.Time) time.Duration {
	return now.Sub(e.certifiedAt) - (s.outageClockLocked(now) - e.outageAt)
}
