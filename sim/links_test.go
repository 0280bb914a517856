package sim

import (
	"context"
	"io"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
)

// A link delivers a burst of writes one latency after each was made, in
// order, like a pipelining transport: ten back-to-back writes on a 10 ms
// link all arrive at 10 ms (the mock network's own latency delivered them
// two by two, 10 ms apart). Past the window the writer waits, and a Close
// lands after the writes before it.
func TestLinksPipelineWrites(t *testing.T) {
	const latency = 10 * time.Millisecond
	cases := []struct {
		name        string
		writes, len int
		wantLast    time.Duration // arrival of the last write
	}{
		{"small writes", 10, 100, latency},
		{"frames", 10, 300, latency},
		// Four windows' worth: each window's writes wait for the previous
		// window to arrive, one latency each.
		{"past the window", 4 * streamWindow / (64 << 10), 64 << 10, 4 * latency},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mn := mocknet.New()
				defer mn.Close()
				a, err := mn.GenPeer()
				if err != nil {
					t.Fatal(err)
				}
				b, err := mn.GenPeer()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := mn.LinkPeers(a.ID(), b.ID()); err != nil {
					t.Fatal(err)
				}
				nw := &simNet{index: map[peer.ID]int{a.ID(): 0, b.ID(): 1}, oneWayNow: map[[2]int]time.Duration{}, done: make(chan struct{})}
				defer close(nw.done)
				nw.setLatency(0, 1, latency)
				ha, hb := latencyHost{Host: a, nw: nw, self: 0}, latencyHost{Host: b, nw: nw, self: 1}

				arrivals := make(chan time.Duration, tc.writes)
				start := time.Now()
				hb.SetStreamHandler("/test", func(s network.Stream) {
					defer s.Close()
					buf := make([]byte, tc.len)
					for {
						if _, err := io.ReadFull(s, buf); err != nil {
							close(arrivals)
							return
						}
						arrivals <- time.Since(start)
					}
				})
				if _, err := mn.ConnectPeers(a.ID(), b.ID()); err != nil {
					t.Fatal(err)
				}
				s, err := ha.NewStream(context.Background(), b.ID(), "/test")
				if err != nil {
					t.Fatal(err)
				}
				start = time.Now()
				for range tc.writes {
					if _, err := s.Write(make([]byte, tc.len)); err != nil {
						t.Fatal(err)
					}
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				var got []time.Duration
				for d := range arrivals {
					got = append(got, d)
				}
				if len(got) != tc.writes {
					t.Fatalf("%d writes arrived, want %d", len(got), tc.writes)
				}
				if got[0] < latency {
					t.Errorf("first write arrived after %s, before the link's latency %s", got[0], latency)
				}
				if last := got[len(got)-1]; last != tc.wantLast {
					t.Errorf("last write arrived after %s, want %s (all arrivals %v)", last, tc.wantLast, got)
				}
				if sent := nw.sent.Load(); sent != int64(tc.writes*tc.len) {
					t.Errorf("counted %d bytes sent, want %d", sent, tc.writes*tc.len)
				}
			})
		})
	}
}
