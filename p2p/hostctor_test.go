package p2p

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	coreconnmgr "github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	lpmetrics "github.com/libp2p/go-libp2p/core/metrics"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/allegro-mesh/allegro/internal/testkit"
)

// mockConstructor returns a HostConstructor adding each host to mn (linked
// to every earlier one) at a distinct loopback address, and the addresses
// it handed out.
func mockConstructor(mn mocknet.Mocknet) (HostConstructor, func() []string) {
	var mu sync.Mutex
	var addrs []string
	ctor := func(key crypto.PrivKey, _ []libp2p.Option) (host.Host, error) {
		mu.Lock()
		defer mu.Unlock()
		a := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 30000+len(addrs))
		h, err := mn.AddPeer(key, ma.StringCast(a))
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, a)
		return h, mn.LinkAll()
	}
	return ctor, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), addrs...)
	}
}

// TestHostConstructorMockNet: with Config.NewHost a committee runs over a
// libp2p mock network (links with latency) and delivers as over TCP/QUIC.
func TestHostConstructorMockNet(t *testing.T) {
	mn := mocknet.New()
	t.Cleanup(func() { _ = mn.Close() })
	mn.SetLinkDefaults(mocknet.LinkOptions{Latency: 5 * time.Millisecond})
	ctor, handed := mockConstructor(mn)
	c := newCluster(t, clusterOpts{validators: 4, tweak: func(cfg *Config) { cfg.NewHost = ctor }})

	if got := handed(); len(got) != 4 {
		t.Fatalf("constructor built %d hosts, want 4", len(got))
	}
	for i, v := range c.validators {
		addrs := v.Host().Addrs()
		if len(addrs) != 1 || addrs[0].String() != handed()[i] {
			t.Errorf("%s advertises %v, want the mock address %s", v.name, addrs, handed()[i])
		}
		if mn.Host(v.ID()) == nil {
			t.Errorf("%s is not a mock network peer", v.name)
		}
	}
	ctx := testCtx(t, 30*time.Second)
	req := testRequest(1)
	if err := c.validators[0].PublishTx(ctx, req); err != nil {
		t.Fatal(err)
	}
	key := txKey(mustTxHash(t, req))
	testkit.Eventually(t, 20*time.Second, "tx delivered over the mock network", func() bool {
		for _, v := range c.validators[1:] {
			if !v.txs.has(key) {
				return false
			}
		}
		return true
	})
}

// TestHostOptionsBandwidth: Config.HostOptions reach libp2p.New; a
// bandwidth reporter counts what a publishing node sends.
func TestHostOptionsBandwidth(t *testing.T) {
	counters := make(map[string]*lpmetrics.BandwidthCounter)
	var mu sync.Mutex
	n := 0
	c := newCluster(t, clusterOpts{validators: 2, tweak: func(cfg *Config) {
		// tweak runs once; each host gets the reporter of the next name
		// through a constructor wrapping libp2p.New.
		cfg.NewHost = func(key crypto.PrivKey, opts []libp2p.Option) (host.Host, error) {
			mu.Lock()
			bw := lpmetrics.NewBandwidthCounter()
			counters[fmt.Sprintf("val-%d", n)] = bw
			n++
			mu.Unlock()
			return libp2p.New(append(opts, libp2p.BandwidthReporter(bw))...)
		}
		cfg.HostOptions = []libp2p.Option{libp2p.UserAgent(UserAgent + "/bandwidth-test")}
	}})
	ctx := testCtx(t, 30*time.Second)
	before := counters["val-0"].GetBandwidthTotals().TotalOut
	req := testRequest(2)
	if err := c.validators[0].PublishTx(ctx, req); err != nil {
		t.Fatal(err)
	}
	key := txKey(mustTxHash(t, req))
	testkit.Eventually(t, 20*time.Second, "tx delivered", func() bool { return c.validators[1].txs.has(key) })
	// The counter's totals are refreshed by a background sweep, about once a
	// second.
	testkit.Eventually(t, 20*time.Second, "val-0's sent bytes counted", func() bool {
		return counters["val-0"].GetBandwidthTotals().TotalOut > before
	})
	// The extra option was applied after the mesh's own (last UserAgent wins).
	av, err := c.validators[1].Host().LibP2P().Peerstore().Get(c.validators[0].ID(), "AgentVersion")
	if err != nil || !strings.HasSuffix(fmt.Sprint(av), "/bandwidth-test") {
		t.Errorf("val-1 sees val-0's agent %v (err %v), want the HostOptions user agent", av, err)
	}
}

// TestHostConstructorErrors: a constructor's failure, a missing host or a
// host with another identity fail New, naming the cause.
func TestHostConstructorErrors(t *testing.T) {
	f := newFixture(t, 1)
	other := libp2pKey(t, seededKey(0xB2, 9))
	boom := errors.New("boom")
	tests := []struct {
		name string
		ctor HostConstructor
		want string
	}{
		{"error", func(crypto.PrivKey, []libp2p.Option) (host.Host, error) { return nil, boom }, "boom"},
		{"nil host", func(crypto.PrivKey, []libp2p.Option) (host.Host, error) { return nil, nil }, "no host"},
		{"wrong identity", func(crypto.PrivKey, []libp2p.Option) (host.Host, error) {
			return libp2p.New(libp2p.Identity(other), libp2p.NoListenAddrs)
		}, "want"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := LocalConfig()
			cfg.NewHost = tc.ctor
			m, err := New(cfg, libp2pKey(t, f.keys[0]), f.committee, nil, nil, testLogger())
			if err == nil {
				_ = m.Stop(testCtx(t, 10*time.Second))
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestConnManagerWithoutDecay: pubsub finds no decaying tags on the host's
// connection manager (delivery bumps would buy nothing), and committee
// peers are still protected through it.
func TestConnManagerWithoutDecay(t *testing.T) {
	c := newCluster(t, clusterOpts{validators: 2})
	cm := c.validators[0].Host().LibP2P().ConnManager()
	if _, ok := coreconnmgr.SupportsDecay(cm); ok {
		t.Error("the host's connection manager offers decaying tags to pubsub")
	}
	if !cm.IsProtected(c.validators[1].ID(), protectCommittee) {
		t.Error("committee peer not protected")
	}
}
