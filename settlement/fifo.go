package settlement

import "github.com/allegro-mesh/allegro/qc"

// fifoSet is a set of hashes bounded to capacity members: adding to a full
// set forgets the oldest member. It is not safe for concurrent use.
type fifoSet struct {
	capacity int
	ring     []qc.Hash // grows up to capacity, then reused circularly
	next     int       // ring index of the oldest member once full
	members  map[qc.Hash]struct{}
}

func newFIFOSet(capacity int) *fifoSet {
	return &fifoSet{capacity: capacity, members: make(map[qc.Hash]struct{})}
}

func (f *fifoSet) has(h qc.Hash) bool {
	_, ok := f.members[h]
	return ok
}

func (f *fifoSet) add(h qc.Hash) {
	if f.has(h) {
		return
	}
	if len(f.ring) < f.capacity {
		f.ring = append(f.ring, h)
	} else {
		delete(f.members, f.ring[f.next])
		f.ring[f.next] = h
		f.next = (f.next + 1) % f.capacity
	}
	f.members[h] = struct{}{}
}

func (f *fifoSet) len() int { return len(f.members) }
