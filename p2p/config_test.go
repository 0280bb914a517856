package p2p

import (
	"context"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
)

func TestConfigPresetsValid(t *testing.T) {
	for name, cfg := range map[string]Config{"default": DefaultConfig(), "local": LocalConfig()} {
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	d := DefaultConfig()
	if d.QCShards != 16 || d.PeerOutboundQueueSize != 8192 || d.ValidateQueueSize != 8192 ||
		d.ValidationTimeout != 2*time.Second || d.ReconnectBackoffMin != time.Second ||
		d.ReconnectBackoffMax != 30*time.Second || !d.Scoring.Enabled {
		t.Errorf("unexpected defaults: %+v", d)
	}
	if want := max(4, 2*runtime.NumCPU()); d.ValidationConcurrency != want {
		t.Errorf("ValidationConcurrency = %d, want %d", d.ValidationConcurrency, want)
	}
	if got := strings.Join(d.ListenAddrs, " "); got != "/ip4/0.0.0.0/tcp/4001 /ip4/0.0.0.0/udp/4001/quic-v1" {
		t.Errorf("default ListenAddrs = %s", got)
	}
	if got := strings.Join(LocalConfig().ListenAddrs, " "); got != "/ip4/127.0.0.1/tcp/0 /ip4/127.0.0.1/udp/0/quic-v1" {
		t.Errorf("local ListenAddrs = %s", got)
	}
}

func TestConfigValidateNamesField(t *testing.T) {
	cases := []struct {
		field string
		edit  func(*Config)
	}{
		{"listen_addrs", func(c *Config) { c.ListenAddrs = nil }},
		{"listen_addrs[0]", func(c *Config) { c.ListenAddrs = []string{"not-a-multiaddr"} }},
		{"listen_addrs[1]", func(c *Config) { c.ListenAddrs = []string{"/ip4/1.2.3.4/tcp/1", "/ip4/1.2.3.4/tcp/1/ws"} }},
		{"announce_addrs[0]", func(c *Config) { c.AnnounceAddrs = []string{"/ip4/1.2.3.4/udp/1"} }},
		{"qc_shards", func(c *Config) { c.QCShards = 0 }},
		{"frame_linger", func(c *Config) { c.FrameLinger = -time.Millisecond }},
		{"frame_interval", func(c *Config) { c.FrameInterval = -time.Millisecond }},
		{"frame_interval", func(c *Config) { c.FrameInterval = 2 * time.Second }},
		{"qc_shards", func(c *Config) { c.QCShards = 257 }},
		{"peer_outbound_queue_size", func(c *Config) { c.PeerOutboundQueueSize = 0 }},
		{"validate_queue_size", func(c *Config) { c.ValidateQueueSize = -1 }},
		{"validation_concurrency", func(c *Config) { c.ValidationConcurrency = 0 }},
		{"subscription_buffer_size", func(c *Config) { c.SubscriptionBufferSize = 0 }},
		{"validation_timeout", func(c *Config) { c.ValidationTimeout = 0 }},
		{"seen_messages_ttl", func(c *Config) { c.SeenMessagesTTL = 0 }},
		{"seen_messages_ttl", func(c *Config) { c.SeenMessagesTTL = 4 * time.Second }}, // under 5 heartbeats of 1 s
		{"seen_messages_ttl", func(c *Config) {
			p := pubsub.DefaultGossipSubParams()
			p.HeartbeatInterval = 3 * time.Second // history 15 s
			c.GossipSub = &p
		}},
		{"reconnect_backoff_min", func(c *Config) { c.ReconnectBackoffMin = 0 }},
		{"reconnect_backoff_max", func(c *Config) { c.ReconnectBackoffMax = c.ReconnectBackoffMin / 2 }},
		{"dial_timeout", func(c *Config) { c.DialTimeout = 0 }},
		{"conn_manager_high_water", func(c *Config) { c.ConnManagerHighWater = c.ConnManagerLowWater - 1 }},
		{"conn_manager_grace_period", func(c *Config) { c.ConnManagerGracePeriod = -time.Second }},
		{"reject_logs_per_second", func(c *Config) { c.RejectLogsPerSecond = -1 }},
		{"outsider_duplicate_frames", func(c *Config) { c.OutsiderDuplicateFrames = 0 }},
		{"outsider_duplicate_frames", func(c *Config) { c.OutsiderDuplicateFrames = math.NaN() }},
		{"outsider_duplicate_burst", func(c *Config) { c.OutsiderDuplicateBurst = 0 }},
		{"member_duplicate_frames", func(c *Config) { c.MemberDuplicateFrames = math.Inf(1) }},
		{"member_duplicate_burst", func(c *Config) { c.MemberDuplicateBurst = -1 }},
		{"dial_in_region", func(c *Config) { c.DialInRegion, c.Relay = -1, true }},
		{"dial_per_other_region", func(c *Config) { c.DialInRegion, c.DialPerOtherRegion, c.Relay = 2, -1, true }},
		{"dial_per_other_region", func(c *Config) { c.DialPerOtherRegion, c.Relay = 1, true }},
		{"relay", func(c *Config) { c.DialInRegion = 4 }},
		{"gossipsub", func(c *Config) {
			p := pubsub.DefaultGossipSubParams()
			p.Dlo = p.D + 1
			c.GossipSub = &p
		}},
		{"scoring.invalid_message_weight", func(c *Config) { c.Scoring.InvalidMessageWeight = 1 }},
		{"scoring.publish_threshold", func(c *Config) { c.Scoring.PublishThreshold = c.Scoring.GossipThreshold + 1 }},
		{"scoring.graylist_threshold", func(c *Config) { c.Scoring.GraylistThreshold = 0 }},
		{"scoring.decay_interval", func(c *Config) { c.Scoring.DecayInterval = time.Millisecond }},
		{"scoring.ip_colocation_whitelist", func(c *Config) { c.Scoring.IPColocationWhitelist = []string{"nope"} }},
		{"scoring.inspect_period", func(c *Config) { c.Scoring.InspectPeriod = 0 }},
	}
	for _, tc := range cases {
		cfg := DefaultConfig()
		tc.edit(&cfg)
		err := cfg.Validate()
		if err == nil {
			t.Errorf("%s: Validate accepted a bad value", tc.field)
			continue
		}
		if !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: error %q does not name the field", tc.field, err)
		}
	}

	// Disabled scoring skips the scoring checks.
	cfg := DefaultConfig()
	cfg.Scoring = ScoreConfig{}
	if err := cfg.Validate(); err != nil {
		t.Errorf("disabled scoring: %v", err)
	}
}

func TestScoreParamsAcceptedByPubsub(t *testing.T) {
	f := newFixture(t, 4)
	idx, err := newCommitteeIndex(f.committee)
	if err != nil {
		t.Fatal(err)
	}
	mn := mocknet.New()
	t.Cleanup(func() { _ = mn.Close() })
	for name, cfg := range map[string]Config{"default": DefaultConfig(), "local": LocalConfig()} {
		params, thresholds, err := peerScoreParams(cfg, idx)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		h, err := mn.GenPeer()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithPeerScore(params, thresholds))
		if err != nil {
			cancel()
			t.Fatalf("%s: router rejected score parameters: %v", name, err)
		}
		topic, err := ps.Join("/allegro/test")
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		if err := topic.SetScoreParams(topicScoreParams(cfg.Scoring)); err != nil {
			t.Errorf("%s: topic score parameters rejected: %v", name, err)
		}
		cancel()
	}
	if d := decayFactor(10*time.Minute, time.Second); math.Abs(math.Pow(d, 600)-0.5) > 1e-9 {
		t.Errorf("decay factor %v does not halve in 10 min", d)
	}
}
