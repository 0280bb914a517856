package bulletin

import (
	"hash/maphash"

	"github.com/allegro-mesh/allegro/qc"
)

type signerKey struct {
	signer qc.ValidatorID
	key    qc.ContentionKey
}

func signerKeyOf(c *qc.Certificate) signerKey {
	return signerKey{c.Signer, c.Effects.ContentionKey()}
}

// firstSigs remembers the first certificate of up to max (signer,
// contention key) pairs, forgetting the oldest first: a ring of
// certificates, indexed by a seeded 64-bit hash of the pair. The ring
// entry itself holds the pair, so a lookup compares it in full; the index
// stores no 96-byte keys (an LRU cache of the same pairs took more than
// twice the memory: each key twice, list links, and a map that grows
// under constant turnover).
type firstSigs struct {
	max   int
	seed  maphash.Seed
	index map[uint64]int
	ring  []qc.Certificate // grows to max, then next is overwritten
	next  int
}

func newFirstSigs(max int) *firstSigs {
	return &firstSigs{max: max, seed: maphash.MakeSeed(), index: make(map[uint64]int)}
}

// peekOrAdd returns the certificate held for c's pair, or adds c.
func (f *firstSigs) peekOrAdd(c qc.Certificate) (first qc.Certificate, seen bool) {
	k := signerKeyOf(&c)
	h := maphash.Comparable(f.seed, k)
	if i, ok := f.index[h]; ok {
		if signerKeyOf(&f.ring[i]) == k {
			return f.ring[i], true
		}
		// Another pair with the same 64-bit hash (about never, and the
		// seed is secret): forget it early, as if it were the oldest.
	}
	var pos int
	switch {
	case len(f.ring) < f.max:
		if len(f.ring) == cap(f.ring) {
			// Grow by doubling but never past max: append's own growth
			// would overshoot a large window by up to a quarter.
			grown := make([]qc.Certificate, len(f.ring), min(f.max, max(64, 2*cap(f.ring))))
			copy(grown, f.ring)
			f.ring = grown
		}
		pos = len(f.ring)
		f.ring = append(f.ring, c)
	default:
		pos = f.next
		old := maphash.Comparable(f.seed, signerKeyOf(&f.ring[pos]))
		if f.index[old] == pos {
			delete(f.index, old)
		}
		f.ring[pos] = c
		f.next = (f.next + 1) % f.max
	}
	f.index[h] = pos
	return qc.Certificate{}, false
}

func (f *firstSigs) len() int { return len(f.index) }
