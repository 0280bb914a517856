package p2p

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	ma "github.com/multiformats/go-multiaddr"
)

func TestDialRanker(t *testing.T) {
	const (
		tcp4  = "/ip4/203.0.113.7/tcp/4001"
		tcp6  = "/ip6/2001:db8::7/tcp/4001"
		quic4 = "/ip4/203.0.113.7/udp/4001/quic-v1"
		quic6 = "/ip6/2001:db8::7/udp/4001/quic-v1"
		// A bootstrap entry carries the peer ID.
		tcpWithID = "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWLRPJAA5o6kH4YKMkQ1ZmnRu4WSGXWJWiVZp7iVLzNpGm"
	)
	for _, tc := range []struct {
		name   string
		prefer string
		addrs  []string
		// first lists the addresses dialled at once; the other
		// transport's must wait fallbackTransportDelay after the last
		// dial of the preferred one.
		first []string
	}{
		{"tcp preferred", TransportTCP, []string{quic4, tcp4}, []string{tcp4}},
		{"quic preferred", TransportQUIC, []string{tcp4, quic4}, []string{quic4}},
		{"tcp preferred, only quic offered", TransportTCP, []string{quic4}, []string{quic4}},
		{"tcp preferred, only tcp offered", TransportTCP, []string{tcp4}, []string{tcp4}},
		{"quic preferred, only tcp offered", TransportQUIC, []string{tcp4}, []string{tcp4}},
		{"tcp preferred, both families", TransportTCP, []string{quic6, quic4, tcp4, tcp6}, []string{tcp6}},
		{"tcp preferred, peer id suffix", TransportTCP, []string{quic4, tcpWithID}, []string{tcpWithID}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var addrs []ma.Multiaddr
			for _, s := range tc.addrs {
				addrs = append(addrs, ma.StringCast(s))
			}
			ranked := dialRanker(tc.prefer)(addrs)
			if len(ranked) != len(addrs) {
				t.Fatalf("ranked %d addresses, want %d: %v", len(ranked), len(addrs), ranked)
			}
			immediate := map[string]bool{}
			for _, r := range ranked {
				if r.Delay == 0 {
					immediate[r.Addr.String()] = true
				}
			}
			for _, s := range tc.first {
				if !immediate[s] {
					t.Errorf("%s not dialled at once: %v", s, ranked)
				}
			}
			if len(immediate) != len(tc.first) {
				t.Errorf("dialled at once: %v, want %v", immediate, tc.first)
			}
			// The other transport's addresses wait for the preferred
			// one's last dial plus the fallback delay, when both are
			// offered.
			preferTCP := tc.prefer == TransportTCP
			var lastPreferred time.Duration
			offersTCP, offersQUIC := false, false
			for _, r := range ranked {
				if isTCP(r.Addr) == preferTCP {
					lastPreferred = max(lastPreferred, r.Delay)
				}
				offersTCP = offersTCP || isTCP(r.Addr)
				offersQUIC = offersQUIC || !isTCP(r.Addr)
			}
			for _, r := range ranked {
				if r.Delay > 0 && r.Delay < secondaryDialDelay {
					t.Errorf("%s held back %s, less than %s", r.Addr, r.Delay, secondaryDialDelay)
				}
				if offersTCP && offersQUIC && isTCP(r.Addr) != preferTCP && r.Delay < lastPreferred+fallbackTransportDelay {
					t.Errorf("%s dialled %s after the first, before the preferred transport's last dial (%s) plus %s", r.Addr, r.Delay, lastPreferred, fallbackTransportDelay)
				}
			}
		})
	}
}

func TestConfigValidatePreferredTransport(t *testing.T) {
	for _, v := range []string{TransportTCP, TransportQUIC} {
		cfg := LocalConfig()
		cfg.PreferredTransport = v
		if err := cfg.Validate(); err != nil {
			t.Errorf("%q: %v", v, err)
		}
	}
	for _, v := range []string{"", "udp", "TCP", "webrtc"} {
		cfg := LocalConfig()
		cfg.PreferredTransport = v
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), "preferred_transport") {
			t.Errorf("%q: got %v, want an error naming preferred_transport", v, err)
		}
	}
}

// TestPreferredTransportConnects runs committees whose members listen on
// both transports and checks every connection between them uses the
// preferred one.
func TestPreferredTransportConnects(t *testing.T) {
	for _, prefer := range []string{TransportTCP, TransportQUIC} {
		t.Run(prefer, func(t *testing.T) {
			c := newCluster(t, clusterOpts{validators: 3, tweak: func(cfg *Config) { cfg.PreferredTransport = prefer }})
			for _, v := range c.validators {
				for _, p := range c.validators {
					if p == v {
						continue
					}
					conns := v.Host().h.Network().ConnsToPeer(p.Host().ID())
					if len(conns) == 0 {
						t.Errorf("%s has no connection to %s", v.name, p.name)
					}
					for _, conn := range conns {
						if got := transportOf(conn); got != prefer {
							t.Errorf("%s → %s: connection over %s (%s), want %s", v.name, p.name, got, conn.RemoteMultiaddr(), prefer)
						}
					}
				}
			}
		})
	}
}

func transportOf(c network.Conn) string {
	if isTCP(c.RemoteMultiaddr()) {
		return TransportTCP
	}
	if _, err := c.RemoteMultiaddr().ValueForProtocol(ma.P_QUIC_V1); err == nil {
		return TransportQUIC
	}
	return fmt.Sprint(c.RemoteMultiaddr())
}
