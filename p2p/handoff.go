package p2p

import (
	lru "github.com/hashicorp/golang-lru/v2"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
)

// Pubsub computes a message's id (messageID, which has to decode the
// payload) and later hands the same *pb.Message to the topic validator,
// which decoded it again: every arriving copy was decoded twice, a few
// percent of a validator's CPU and a tenth of its allocations at
// saturation. The handoff carries the first decode to the validator.
//
// Entries are keyed by the message pointer, so a decode is only ever reused
// for the very bytes it came from. The cache is bounded in count and only
// holds small payloads: copies pubsub drops between the two steps (seen
// duplicates, a full validation queue) are never taken and age out, and a
// missing entry only means decoding again.
const (
	handoffEntries  = 2048
	handoffMaxBytes = 4 << 10
)

type decodeHandoff struct {
	cache *lru.Cache[*pb.Message, any]
}

func newDecodeHandoff() decodeHandoff {
	c, err := lru.New[*pb.Message, any](handoffEntries)
	if err != nil {
		panic(err) // unreachable: the size is positive
	}
	return decodeHandoff{cache: c}
}

// put records what m decoded to.
func (h decodeHandoff) put(m *pb.Message, decoded any) {
	if len(m.GetData()) <= handoffMaxBytes {
		h.cache.Add(m, decoded)
	}
}

// take returns (and forgets) m's decode as type T, if it is still there.
func take[T any](h decodeHandoff, m *pb.Message) (T, bool) {
	v, ok := h.cache.Peek(m)
	if ok {
		h.cache.Remove(m)
	}
	d, ok := v.(T)
	return d, ok
}
