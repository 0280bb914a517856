package bench

import (
	"bytes"
	"fmt"
	"runtime"
	"runtime/pprof"
	"strings"

	"github.com/google/pprof/profile"
)

// HeapShares splits a process's live heap (after a GC) by who holds it.
type HeapShares struct {
	// Live is the live heap the profile accounts for.
	Live uint64 `json:"live"`
	// Gossip is what go-libp2p-pubsub allocated: its seen and delivered
	// message-id caches, peer-score delivery records, received RPCs (kept
	// by its message cache) and queues, plus the message ids the mesh
	// computed for it (p2p's id functions; they are those caches' keys).
	Gossip uint64 `json:"gossip"`
	// GossipIDs is the part of Gossip that is per message id: the seen and
	// delivered time caches, peer-score delivery records and the ids
	// themselves. Pubsub keeps it for its TTL and then until its sweep,
	// once a minute; the rest (message cache, queues) lasts seconds.
	GossipIDs uint64 `json:"gossip_ids"`
}

// An allocation belongs to the innermost frame of its stack that is
// either pubsub's or this module's: pubsub calls our message-id function
// and validators, and what they allocate (decoded payloads the board keeps)
// is ours; what pubsub allocates through protobuf or the runtime (RPCs,
// map buckets) is pubsub's.
type heapOwner int

const (
	ownerOther heapOwner = iota
	ownerOurs
	ownerGossip
	ownerGossipIDs // pubsub's per-message-id state
)

const (
	pubsubPath = "github.com/libp2p/go-libp2p-pubsub"
	modulePath = "github.com/allegro-mesh/allegro/"
)

// frameOwner classifies one function name; ownerOther for third-party code
// (protobuf, the runtime), which takes its caller's owner.
func frameOwner(fn string) heapOwner {
	switch {
	case strings.Contains(fn, pubsubPath+"/timecache."),
		strings.HasPrefix(fn, pubsubPath+".(*messageDeliveries)."),
		strings.HasPrefix(fn, pubsubPath+".(*peerScore)."),
		fn == modulePath+"bench.floorMessageID":
		return ownerGossipIDs
	case strings.HasPrefix(fn, pubsubPath):
		return ownerGossip
	case strings.HasPrefix(fn, modulePath+"p2p."):
		// The ids our id function returns are the keys of pubsub's caches.
		rest := strings.TrimPrefix(fn, modulePath+"p2p.")
		if rest == "(*topicSet).idOf" || rest == "(*topicSet).messageID" {
			return ownerGossipIDs
		}
		return ownerOurs
	case strings.HasPrefix(fn, modulePath):
		return ownerOurs
	}
	return ownerOther
}

// sampleOwner returns the owner of the innermost classified frame
// (locations and their inlined lines run leaf first).
func sampleOwner(smp *profile.Sample) heapOwner {
	for _, loc := range smp.Location {
		for _, line := range loc.Line {
			if line.Function == nil {
				continue
			}
			if o := frameOwner(line.Function.Name); o != ownerOther {
				return o
			}
		}
	}
	return ownerOther
}

// measureHeapShares collects garbage, reads this process's heap profile
// and attributes live bytes by allocation stack.
func measureHeapShares() (HeapShares, error) {
	runtime.GC()
	var buf bytes.Buffer
	if err := pprof.Lookup("heap").WriteTo(&buf, 0); err != nil {
		return HeapShares{}, fmt.Errorf("heap profile: %w", err)
	}
	p, err := profile.Parse(&buf)
	if err != nil {
		return HeapShares{}, fmt.Errorf("heap profile: %w", err)
	}
	return heapShares(p)
}

func heapShares(p *profile.Profile) (HeapShares, error) {
	idx := -1
	for i, st := range p.SampleType {
		if st.Type == "inuse_space" {
			idx = i
		}
	}
	if idx < 0 {
		return HeapShares{}, fmt.Errorf("heap profile: no inuse_space samples")
	}
	var s HeapShares
	for _, smp := range p.Sample {
		v := uint64(max(smp.Value[idx], 0))
		s.Live += v
		switch sampleOwner(smp) {
		case ownerGossipIDs:
			s.GossipIDs += v
			s.Gossip += v
		case ownerGossip:
			s.Gossip += v
		}
	}
	return s, nil
}
