package bench

import (
	"testing"

	"github.com/google/pprof/profile"
)

func TestGossipFrame(t *testing.T) {
	for _, tc := range []struct {
		fn   string
		want bool
	}{
		{"github.com/libp2p/go-libp2p-pubsub/timecache.(*FirstSeenCache).Add", true},
		{"github.com/libp2p/go-libp2p-pubsub.(*messageDeliveries).getRecord", true},
		{"github.com/allegro-mesh/allegro/p2p.CertMessageID", true},
		{"github.com/allegro-mesh/allegro/p2p.qcDigest", true},
		{"github.com/allegro-mesh/allegro/p2p.decodeBulletinItem", false},
		{"github.com/allegro-mesh/allegro/bulletin.(*Board).entry", false},
		{"github.com/libp2p/go-libp2p/p2p/net/swarm.(*Conn).start", false},
	} {
		if got := gossipFrame(tc.fn); got != tc.want {
			t.Errorf("gossipFrame(%q) = %v, want %v", tc.fn, got, tc.want)
		}
	}
}

// TestHeapShares attributes a synthetic profile: a sample counts as
// gossip's when any frame of its stack is.
func TestHeapShares(t *testing.T) {
	fn := func(name string) *profile.Location {
		return &profile.Location{Line: []profile.Line{{Function: &profile.Function{Name: name}}}}
	}
	cache, caller := fn("github.com/libp2p/go-libp2p-pubsub/timecache.(*FirstSeenCache).Add"), fn("main.run")
	board := fn("github.com/allegro-mesh/allegro/bulletin.(*Board).entry")
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "inuse_objects"}, {Type: "inuse_space"}},
		Sample: []*profile.Sample{
			{Location: []*profile.Location{cache, caller}, Value: []int64{10, 3000}},
			{Location: []*profile.Location{board, caller}, Value: []int64{5, 1000}},
			{Location: []*profile.Location{caller}, Value: []int64{1, 500}},
		},
	}
	s, err := heapShares(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Live != 4500 || s.Gossip != 3000 {
		t.Errorf("shares %+v, want live 4500, gossip 3000", s)
	}
	p.SampleType = []*profile.ValueType{{Type: "alloc_space"}}
	if _, err := heapShares(p); err == nil {
		t.Error("a profile without inuse_space: no error")
	}
}

// TestMeasureHeapShares reads this process's own profile.
func TestMeasureHeapShares(t *testing.T) {
	s, err := measureHeapShares()
	if err != nil {
		t.Fatal(err)
	}
	if s.Live == 0 || s.Gossip > s.Live {
		t.Errorf("shares %+v", s)
	}
}
