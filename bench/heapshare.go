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
	// Gossip is what go-libp2p-pubsub holds: its seen and delivered
	// message-id caches, peer-score delivery records, message cache and
	// queues, plus the message ids the mesh computed for it (allocated in
	// p2p's id functions, kept as those caches' keys).
	Gossip uint64 `json:"gossip"`
}

// gossipFrame reports whether a stack frame allocates on pubsub's behalf.
func gossipFrame(fn string) bool {
	if strings.Contains(fn, "/go-libp2p-pubsub") {
		return true
	}
	if rest, ok := strings.CutPrefix(fn, "github.com/allegro-mesh/allegro/p2p."); ok {
		return strings.HasSuffix(rest, "MessageID") || rest == "qcDigest" || rest == "invalidID"
	}
	return false
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
		if sampleIn(smp, gossipFrame) {
			s.Gossip += v
		}
	}
	return s, nil
}

func sampleIn(smp *profile.Sample, match func(string) bool) bool {
	for _, loc := range smp.Location {
		for _, line := range loc.Line {
			if line.Function != nil && match(line.Function.Name) {
				return true
			}
		}
	}
	return false
}
