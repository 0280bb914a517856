package bulletin

import (
	"slices"
	"time"
)

// latenessSamples is how many recent delays lateness keeps.
const latenessSamples = 32

// lateness bounds a delay from its recent samples: twice their median. A
// median, not a mean plus deviations, because some samples are late by
// construction: when the node ranked first for a transaction is down, its
// QC comes from the next rank, one step later, and a bound that followed
// those would lengthen the step it is measured against, without end. Such
// samples are at most the share of crashed members (below a third), so the
// median stays among the on-time ones. The zero value has no samples and
// bounds nothing.
type lateness struct {
	ring   [latenessSamples]time.Duration
	n      int // samples held, up to latenessSamples
	next   int // the ring slot written next
	median time.Duration
}

// observe adds one sample, forgetting the oldest once the ring is full.
func (l *lateness) observe(d time.Duration) {
	l.ring[l.next] = d
	l.next = (l.next + 1) % latenessSamples
	l.n = min(l.n+1, latenessSamples)
	sorted := l.ring // a copy: the ring keeps its order
	slices.Sort(sorted[:l.n])
	l.median = sorted[l.n/2]
}

// bound is the current estimate: 0 before any sample.
func (l *lateness) bound() time.Duration { return 2 * l.median }
