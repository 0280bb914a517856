package node

import (
	"crypto/ed25519"
	"encoding/hex"
	"slices"
	"strings"
	"testing"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/p2p"
)

// TestMeshListenAddrs: each case edits a valid fixture (this validator's
// committee entry at TCP 4101 and QUIC 4102, listen addresses at their
// defaults) and checks the addresses the mesh listens on, or the error.
func TestMeshListenAddrs(t *testing.T) {
	self := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	other := ed25519.NewKeyFromSeed([]byte("another validator's seed 32 byte")).Public().(ed25519.PublicKey)
	fixture := func() (p2p.Config, *committee.File) {
		f := &committee.File{Members: []committee.Member{
			{Name: "v1", PublicKey: hex.EncodeToString(other), Addrs: []string{"/ip4/10.0.0.1/tcp/4001"}},
			{Name: "v2", PublicKey: hex.EncodeToString(self), Addrs: []string{"/ip4/10.0.0.2/tcp/4101", "/ip4/10.0.0.2/udp/4102/quic-v1"}},
		}}
		return p2p.DefaultConfig(), f
	}
	defaults := p2p.DefaultConfig().ListenAddrs
	cases := []struct {
		name    string
		mutate  func(*p2p.Config, *committee.File)
		want    []string
		wantErr string
	}{
		{name: "defaults follow the entry", mutate: func(*p2p.Config, *committee.File) {},
			want: []string{"/ip4/0.0.0.0/tcp/4101", "/ip4/0.0.0.0/udp/4102/quic-v1"}},
		{name: "entry without addresses", mutate: func(_ *p2p.Config, f *committee.File) { f.Members[1].Addrs = nil }, want: defaults},
		{name: "entry by DNS name", mutate: func(_ *p2p.Config, f *committee.File) { f.Members[1].Addrs = []string{"/dns4/v2.example/tcp/4201"} },
			want: []string{"/ip4/0.0.0.0/tcp/4201"}},
		{name: "not a member", mutate: func(_ *p2p.Config, f *committee.File) { f.Members = f.Members[:1] }, want: defaults},
		{name: "explicit, on the entry's port", mutate: func(c *p2p.Config, _ *committee.File) { c.ListenAddrs = []string{"/ip4/10.0.0.2/tcp/4101"} },
			want: []string{"/ip4/10.0.0.2/tcp/4101"}},
		{name: "explicit, on another port", mutate: func(c *p2p.Config, _ *committee.File) {
			c.ListenAddrs = []string{"/ip4/0.0.0.0/tcp/4003", "/ip4/0.0.0.0/udp/4003/quic-v1"}
		},
			wantErr: `[p2p] listen_addrs /ip4/0.0.0.0/tcp/4003, /ip4/0.0.0.0/udp/4003/quic-v1 use none of the ports of this validator's committee entry "v2"`},
		{name: "explicit, another port, announced", mutate: func(c *p2p.Config, _ *committee.File) {
			c.ListenAddrs = []string{"/ip4/0.0.0.0/tcp/4001"}
			c.AnnounceAddrs = []string{"/ip4/203.0.113.9/tcp/4101"}
		}, want: []string{"/ip4/0.0.0.0/tcp/4001"}},
		{name: "explicit, port chosen by the OS", mutate: func(c *p2p.Config, _ *committee.File) { c.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"} },
			want: []string{"/ip4/127.0.0.1/tcp/0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, f := fixture()
			tc.mutate(&cfg, f)
			got, err := meshListenAddrs(cfg, f, self)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
