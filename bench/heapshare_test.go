package bench

import (
	"testing"

	"github.com/google/pprof/profile"
)

func TestFrameOwner(t *testing.T) {
	for _, tc := range []struct {
		fn   string
		want heapOwner
	}{
		{"github.com/libp2p/go-libp2p-pubsub/timecache.(*FirstSeenCache).Add", ownerGossipIDs},
		{"github.com/libp2p/go-libp2p-pubsub.(*messageDeliveries).getRecord", ownerGossipIDs},
		{"github.com/libp2p/go-libp2p-pubsub.(*peerScore).DuplicateMessage", ownerGossipIDs},
		{"github.com/allegro-mesh/allegro/p2p.(*topicSet).idOf", ownerGossipIDs},
		{"github.com/allegro-mesh/allegro/p2p.(*topicSet).messageID", ownerGossipIDs},
		{"github.com/allegro-mesh/allegro/bench.floorMessageID", ownerGossipIDs},
		{"github.com/libp2p/go-libp2p-pubsub.(*MessageCache).Put", ownerGossip},
		{"github.com/libp2p/go-libp2p-pubsub.(*PubSub).handleNewStream", ownerGossip},
		{"github.com/allegro-mesh/allegro/p2p.decodeBulletinItem", ownerOurs},
		{"github.com/allegro-mesh/allegro/bulletin.(*Board).entry", ownerOurs},
		{"google.golang.org/protobuf/proto.Unmarshal", ownerOther},
		{"runtime.mapassign_faststr", ownerOther},
		{"github.com/libp2p/go-libp2p/p2p/net/swarm.(*Conn).start", ownerOther},
	} {
		if got := frameOwner(tc.fn); got != tc.want {
			t.Errorf("frameOwner(%q) = %v, want %v", tc.fn, got, tc.want)
		}
	}
}

// TestHeapShares attributes a synthetic profile by the innermost frame
// that is pubsub's or ours.
func TestHeapShares(t *testing.T) {
	fn := func(name string) *profile.Location {
		return &profile.Location{Line: []profile.Line{{Function: &profile.Function{Name: name}}}}
	}
	cache, caller := fn("github.com/libp2p/go-libp2p-pubsub/timecache.(*FirstSeenCache).Add"), fn("main.run")
	board := fn("github.com/allegro-mesh/allegro/bulletin.(*Board).entry")
	rpc := fn("github.com/libp2p/go-libp2p-pubsub.(*PubSub).handleNewStream")
	unmarshal, mapassign := fn("google.golang.org/protobuf/proto.Unmarshal"), fn("runtime.mapassign_faststr")
	decode := fn("github.com/allegro-mesh/allegro/p2p.DecodeTx")
	validate := fn("github.com/libp2p/go-libp2p-pubsub.(*validation).validate")
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "inuse_objects"}, {Type: "inuse_space"}},
		Sample: []*profile.Sample{
			{Location: []*profile.Location{cache, caller}, Value: []int64{10, 3000}},
			{Location: []*profile.Location{board, caller}, Value: []int64{5, 1000}},
			{Location: []*profile.Location{caller}, Value: []int64{1, 500}},
			{Location: []*profile.Location{unmarshal, rpc, caller}, Value: []int64{1, 200}},      // pubsub's RPC
			{Location: []*profile.Location{mapassign, cache, caller}, Value: []int64{1, 100}},    // its cache's buckets
			{Location: []*profile.Location{unmarshal, decode, validate}, Value: []int64{1, 400}}, // our decode, called by pubsub
		},
	}
	s, err := heapShares(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Live != 5200 || s.Gossip != 3300 || s.GossipIDs != 3100 {
		t.Errorf("shares %+v, want live 5200, gossip 3300, of which ids 3100", s)
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
