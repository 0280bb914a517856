package p2p

import (
	"errors"
	"fmt"
	"math"
	"net"
	"runtime"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	ma "github.com/multiformats/go-multiaddr"
)

// Config holds every tunable of the mesh transport. Start from DefaultConfig
// (production) or LocalConfig (loopback devnets and tests) and override
// fields; Validate reports the first bad field by name.
//
// Chain id and epoch are not configured here: they come from the committee,
// so topics can never disagree with the certificates carried on them.
type Config struct {
	// ListenAddrs are the multiaddrs the host listens on. The transport is
	// TCP and QUIC-v1 only; other protocols in these addresses fail Validate.
	// Default: /ip4/0.0.0.0/tcp/4001 and /ip4/0.0.0.0/udp/4001/quic-v1; a
	// sidecar left at the default listens on the ports of its own committee
	// entry instead (node wiring).
	ListenAddrs []string `toml:"listen_addrs"`

	// AnnounceAddrs, when non-empty, replace the listen addresses in what the
	// host advertises to peers (identify). Use them behind NAT or in
	// containers where the bound address is not the reachable one.
	AnnounceAddrs []string `toml:"announce_addrs"`

	// PreferredTransport is the transport dialled first when a peer
	// offers both: "tcp" (default) or "quic". The other is dialled only if
	// the first has failed or not connected within a second. Gossip runs
	// over one stream per peer, so QUIC's independent streams buy nothing
	// here, while its per-packet work (acknowledgements, pacing, one
	// system call per datagram) runs in user space on the validator's CPU,
	// which TCP leaves to the kernel; the CPU this saves grows with the
	// committee (docs/benchmarks.md). Both transports still listen, so a
	// peer that can reach only one of them connects.
	PreferredTransport string `toml:"preferred_transport"`

	// QCShards is the number of QC topics; a QC for recipient r goes to
	// shard r[0] % QCShards. It is a network parameter: every node of a
	// network must use the same value. Between 1 and 256 (a larger value
	// would create shards no address maps to). Default 16.
	QCShards int `toml:"qc_shards"`

	// PeerOutboundQueueSize is gossipsub's per-peer outbound RPC queue. A
	// full queue drops RPCs (counted as allegro_p2p_rpc_dropped_total).
	// Default 8192: a burst of 10,000 messages published at full speed must
	// not be dropped, and a relay, which does about twice the publisher's
	// work per message, falls behind it and builds a backlog that publish
	// back-pressure cannot see, so the queue must hold most of a burst
	// (pubsub's default of 32, and 4096, drop from such bursts; see
	// docs/benchmarks.md). Memory is bounded by queue size times message
	// size, per peer.
	PeerOutboundQueueSize int `toml:"peer_outbound_queue_size"`

	// ValidateQueueSize is gossipsub's queue of received messages awaiting
	// validation; a full queue drops messages (counted by reason
	// "validation queue full"). Under load it can hold one copy of a
	// message per relay (pubsub marks an id seen only when validation
	// starts). Default 8192, like PeerOutboundQueueSize.
	ValidateQueueSize int `toml:"validate_queue_size"`

	// ValidationConcurrency is the number of goroutines that run topic
	// validators. Validators run inline on these workers, so a burst waits
	// in ValidateQueueSize instead of being throttled (pubsub drops
	// messages when its asynchronous per-topic concurrency is exhausted).
	// Signature checks are CPU-bound and need about one worker per core;
	// the default of 2×NumCPU (at least 4) keeps cores busy while stateful
	// validators wait briefly on storage.
	ValidationConcurrency int `toml:"validation_concurrency"`

	// ValidationTimeout bounds one message's validation. A validator that
	// overruns (and honours its context) yields Ignore: slowness is ours,
	// not the sender's fault, so the sender is not penalised. Default 2 s.
	ValidationTimeout time.Duration `toml:"validation_timeout"`

	// VerifiedSignatures is how many of the latest verified certificate
	// signatures the mesh at least remembers (up to twice as many are
	// held), so that a QC whose certificates arrived one by one (or
	// were signed here) is checked without repeating ed25519 verifications.
	// A QC follows its certificates within a hop, so a few seconds of
	// certificates suffice. Default 8,192 (under 1 MiB): about five seconds of
	// certificates at saturation on four validators (see
	// docs/benchmarks.md).
	VerifiedSignatures int `toml:"verified_signatures"`

	// AcceptedObjects is how many of the latest accepted transactions,
	// certificates, and QCs per topic kind, are at least remembered (up to
	// twice as many are held) so that later copies of the same
	// object in other bytes are ignored without verifying their signatures
	// (dedup.go). Copies arrive within a hop or two of the first, so
	// seconds of traffic suffice. Default 8,192 (~3 MiB).
	AcceptedObjects int `toml:"accepted_objects"`

	// SubscriptionBufferSize is the buffer of each topic subscription
	// between pubsub and the delivery handlers. When a handler is slower
	// than the network the oldest undelivered messages are dropped and
	// counted (allegro_p2p_undeliverable_total). Default 4096.
	SubscriptionBufferSize int `toml:"subscription_buffer_size"`

	// FloodPublish sends this node's own messages to every peer subscribed
	// to the topic (with a score above PublishThreshold), not only to its
	// mesh peers: the sidecar's own tx, certificate and QC are the latency
	// path of a payment, and a first hop that rejects a message (a
	// Byzantine or out-of-sync peer) must not stop it. Outsiders never
	// enter a validators-only topic's peer set (subscription filter), so
	// flooding cannot leak private messages. Default true (pubsub's default
	// is false).
	FloodPublish bool `toml:"flood_publish"`

	// Relay makes this node forward other nodes' messages along a gossipsub
	// mesh (pubsub's default degrees). Off by default: committee members
	// connect to every other member and publish by flooding, so a relayed
	// copy is one the receiver already has: relaying multiplies the copies
	// per payment, and the CPU spent receiving them, and delivers nothing
	// new (see docs/benchmarks.md). Without relaying, a peer learns a
	// message from a publisher it is not connected to through gossip
	// (IHAVE/IWANT) at the next heartbeat (1 s), and validators also repair
	// gaps with anti-entropy; so turn Relay on where members cannot all
	// reach each other, or for light clients that connect to only a few
	// validators and need QCs at once. Requires FloodPublish when off.
	// GossipSub, when set, takes precedence.
	Relay bool `toml:"relay"`

	// DialInRegion, when positive, makes the mesh sparse: this node dials
	// that many members of its own region and DialPerOtherRegion members of
	// every other region (the committee file's member regions), chosen by
	// a rule every member computes alike from the committee file, instead
	// of every member. Members it does not dial reach it through relays, so
	// it needs Relay. A chosen member that stays unreachable is stood in
	// for by the next of its region until it is back. A full mesh costs
	// each node n−1 connections, beyond the connection manager's water
	// marks from a few hundred members; a regional mesh keeps the latency
	// near a full mesh's with a few dozen (docs/scale.md). Start refuses
	// dials that leave the committee's mesh disconnected. Default 0: dial
	// every member.
	DialInRegion       int `toml:"dial_in_region"`
	DialPerOtherRegion int `toml:"dial_per_other_region"`

	// FrameMaxObjects caps the objects of one frame this node publishes,
	// and FrameMaxBytes its encoded size (an object larger than that still
	// goes alone, up to MaxFrameSize). A frame takes whatever its topic's
	// queue holds when the publisher loop wakes, up to these caps. Defaults
	// 1024 objects and 256 KiB; FrameMaxObjects at most MaxFrameObjects and
	// FrameMaxBytes at most MaxFrameSize − 64 KiB (room for the header and a
	// last object).
	FrameMaxObjects int `toml:"frame_max_objects"`
	FrameMaxBytes   int `toml:"frame_max_bytes"`

	// FrameLinger, when positive, makes a publisher loop wait this long
	// after waking before it builds a frame, so more objects join it. Frames
	// already grow under load without it (objects queue while the previous
	// frame is published), and a linger adds its whole length to every
	// payment's latency at light load. Default 0 (see docs/benchmarks.md).
	FrameLinger time.Duration `toml:"frame_linger"`

	// FrameInterval paces a publisher loop under load: after a frame that
	// carried more than one object (objects arrive faster than frames
	// leave), the next frame starts no sooner than FrameInterval after it,
	// carrying everything queued by then. After a frame of one object the
	// next leaves at once, so light load and chains of dependent objects (a
	// certificate, then the QC it completes) pay nothing, while under
	// sustained load frames carry about an interval's worth of objects,
	// which is what makes batch verification and gossip's per-message costs
	// pay off. 0 disables pacing. Default DefaultFrameInterval (see
	// docs/benchmarks.md).
	//
	// It is the interval of a committee of four; larger committees pace by
	// FrameInterval per three other members, up to maxFrameInterval (150 ms
	// at 31 members at the default): every frame costs each other member
	// its reception, while a validator's own objects come at the payment
	// rate whatever the committee size, so frames must carry more of them
	// as the committee grows for the cost per payment not to grow with it.
	FrameInterval time.Duration `toml:"frame_interval"`

	// QCUnwatchedInterval paces a QC shard's publisher loop while no light
	// client (no peer outside the committee) subscribes to the shard
	// through this node: its frames then reach only other members, which
	// learn every QC on the bulletin and need the shard's copy only to
	// announce it to their own light clients at a gossip heartbeat. After
	// any frame the next waits out the interval, so the QCs of a busy shard
	// share frames instead of costing every member one frame's reception
	// each. A shard that a light client subscribes to through this node
	// follows FrameInterval, so directly connected light clients get QCs
	// at once. 0 disables it. Default 200 ms (DefaultQCUnwatchedInterval),
	// at most 1 s (see docs/benchmarks.md).
	QCUnwatchedInterval time.Duration `toml:"qc_unwatched_interval"`

	// CertRouting is where this validator sends its certificates: "bulletin"
	// (default, SPEC §5 revision 2) floods each one to the committee in
	// bulletin frames; "entry" (the proposed revision 3,
	// docs/proposal-linear-certificates.md, experimental) sends each to the
	// member whose tx frame brought the transaction, over the certificate
	// stream (CertProtocol), falling back to the bulletin when that member
	// cannot be reached or does not acknowledge them, or the transaction has
	// no entry. The entry forms the QC and floods it; a payment whose entry
	// takes its certificates and fails completes through re-announcement. Members of one committee may differ: either way a
	// member accepts certificates from both paths.
	CertRouting string `toml:"cert_routing"`

	// PublishQueueSize bounds the objects waiting for a frame, per topic. A
	// publish into a full queue fails with ErrPublishQueueFull and is
	// counted. Default 65,536: a burst of 10,000 payments queues at most one
	// transaction and one certificate per payment per topic.
	PublishQueueSize int `toml:"publish_queue_size"`

	// PublishBackpressureTimeout is the longest a local publish waits while
	// a committee peer's outbound queue is at least a quarter full (pubsub
	// drops RPCs when a queue is full, and relays and receivers need
	// headroom for what we have in flight; see backpressure.go). A peer
	// still congested after this wait is marked stalled and no longer waited
	// for until its queue drains to 1/16, so one peer that stops reading
	// costs one wait. 0 disables waiting. Default 1 s.
	PublishBackpressureTimeout time.Duration `toml:"publish_backpressure_timeout"`

	// SeenMessagesTTL is how long message ids are remembered for
	// deduplication, and how long peer scoring keeps its per-message
	// delivery records. Pubsub sweeps both once a minute, so an id stays for
	// up to TTL + 1 min and the caches grow with the message rate times
	// that, about seven ids per payment (sizes in docs/benchmarks.md).
	// Default 10 s: far longer than a message takes to cross the mesh and
	// twice gossip's message history (5 heartbeats, 5 s by default), so an
	// IHAVE never names an id a peer has already forgotten. It may not be
	// shorter than that history. A message replayed after it is validated
	// again, and every handler is idempotent.
	SeenMessagesTTL time.Duration `toml:"seen_messages_ttl"`

	// PubsubCheckInterval is how often connected peers' pubsub links are
	// checked; a peer whose link stays broken for two checks is reconnected
	// (see repair.go for the pubsub behaviours this works around).
	// Default 5 s.
	PubsubCheckInterval time.Duration `toml:"pubsub_check_interval"`

	// ReconnectBackoffMin and ReconnectBackoffMax bound the exponential
	// backoff between dial attempts to a disconnected bootstrap peer.
	// Defaults 1 s and 30 s.
	ReconnectBackoffMin time.Duration `toml:"reconnect_backoff_min"`
	ReconnectBackoffMax time.Duration `toml:"reconnect_backoff_max"`

	// DialTimeout bounds one dial attempt to a bootstrap peer. Default 10 s.
	DialTimeout time.Duration `toml:"dial_timeout"`

	// ConnManagerLowWater and ConnManagerHighWater are the connection
	// manager's watermarks: above high it trims unprotected connections down
	// to low. Committee peers are protected and never trimmed.
	// Defaults 200 and 400.
	ConnManagerLowWater  int `toml:"conn_manager_low_water"`
	ConnManagerHighWater int `toml:"conn_manager_high_water"`
	// ConnManagerGracePeriod protects new connections from trimming.
	// Default 1 min.
	ConnManagerGracePeriod time.Duration `toml:"conn_manager_grace_period"`

	// OutsiderDuplicateFrames and OutsiderDuplicateBurst budget the QC
	// frames carrying nothing new that one peer outside the committee may
	// send: per second, and at once. Within the budget such frames are
	// ignored as an honest relay's would be; past it they are rejected and
	// penalise the sender, so nobody can make a node decode re-wrapped
	// copies of known QCs without end. An honest light client forwards
	// frames as received, which are dropped by id before validation; one
	// that relays can spend some when members publish one QC in two frames
	// and its copy of the second arrives first. Defaults 20 and 200.
	OutsiderDuplicateFrames float64 `toml:"outsider_duplicate_frames"`
	OutsiderDuplicateBurst  int     `toml:"outsider_duplicate_burst"`
	// MemberDuplicateFrames and MemberDuplicateBurst are the same budget
	// for each committee member at a light client (a validator does not
	// count members'). Honest members send such frames whenever two of
	// them publish one QC, a small share of the QCs (docs/benchmarks.md
	// counts publications per payment); the budget keeps a Byzantine
	// member from making a light client decode without end. Defaults 200
	// and 2,000.
	MemberDuplicateFrames float64 `toml:"member_duplicate_frames"`
	MemberDuplicateBurst  int     `toml:"member_duplicate_burst"`

	// RejectLogsPerSecond caps debug logs of rejected messages, so a peer
	// flooding invalid messages cannot flood the log. 0 disables them.
	// Default 20.
	RejectLogsPerSecond int `toml:"reject_logs_per_second"`

	// GossipSub overrides gossipsub's router parameters (mesh degree,
	// heartbeat, ...). Nil means pubsub.DefaultGossipSubParams(). The
	// parameters are passed as an option; package globals are never touched.
	GossipSub *pubsub.GossipSubParams `toml:"gossipsub"`

	// Scoring configures gossipsub peer scoring.
	Scoring ScoreConfig `toml:"scoring"`

	// HostOptions are appended to the libp2p options of the host, for
	// example libp2p.BandwidthReporter to count the bytes a node sends.
	// Not settable from a config file. Default none.
	HostOptions []libp2p.Option `toml:"-"`

	// NewHost, when set, builds the libp2p host instead of libp2p.New (see
	// HostConstructor): benchmarks and simulations pass a peer of a libp2p
	// mock network with emulated link latency. ListenAddrs must still
	// validate, though a constructor that ignores the options does not
	// listen on them. Not settable from a config file. Default nil
	// (libp2p.New).
	NewHost HostConstructor `toml:"-"`
}

// ScoreConfig configures gossipsub peer scoring. The penalty that matters is
// for invalid messages (a Reject verdict): each topic adds
// InvalidMessageWeight × (invalid messages)², decaying with
// InvalidMessageHalfLife. The thresholds are expressed against it: with the
// defaults, invalid messages on one topic put a non-committee peer below
// GossipThreshold after 4, below PublishThreshold after 5 and below
// GraylistThreshold after 9; committee members start CommitteeBonus higher
// (6, 7 and 11 messages), so a buggy but honest validator is not cut off by
// one bad batch. (Small positive terms for time in mesh and first
// deliveries, capped at 20 in total, shift these by at most one.)
type ScoreConfig struct {
	// Enabled turns peer scoring on. Default true. Without it rejected
	// messages are dropped but their senders are never penalised.
	Enabled bool `toml:"enabled"`

	// InvalidMessageWeight multiplies the square of the count of invalid
	// messages per topic. Negative. Default -100.
	InvalidMessageWeight float64 `toml:"invalid_message_weight"`
	// InvalidMessageHalfLife is the time in which the invalid-message count
	// halves (the penalty quarters). Default 10 min.
	InvalidMessageHalfLife time.Duration `toml:"invalid_message_half_life"`

	// CommitteeBonus is the application-specific score of committee
	// members; other peers get 0. Default 2500.
	CommitteeBonus float64 `toml:"committee_bonus"`

	// Thresholds (see pubsub.PeerScoreThresholds). Below GossipThreshold a
	// peer gets no gossip, below PublishThreshold none of our publishes,
	// below GraylistThreshold its RPCs are ignored. Defaults -1000, -2000,
	// -8000. AcceptPXThreshold (default 1250, so only committee members)
	// and OpportunisticGraftThreshold (default 5) are non-negative.
	GossipThreshold             float64 `toml:"gossip_threshold"`
	PublishThreshold            float64 `toml:"publish_threshold"`
	GraylistThreshold           float64 `toml:"graylist_threshold"`
	AcceptPXThreshold           float64 `toml:"accept_px_threshold"`
	OpportunisticGraftThreshold float64 `toml:"opportunistic_graft_threshold"`

	// BehaviourPenaltyWeight (negative) and BehaviourPenaltyThreshold
	// penalise protocol misbehaviour such as broken IWANT promises and
	// GRAFT floods. Defaults -10 and 6; the penalty halves with
	// InvalidMessageHalfLife.
	BehaviourPenaltyWeight    float64 `toml:"behaviour_penalty_weight"`
	BehaviourPenaltyThreshold float64 `toml:"behaviour_penalty_threshold"`

	// IPColocationWeight (negative) penalises more than
	// IPColocationThreshold peers on one IP address, a cheap Sybil defence
	// for the open QC topics. IPColocationWhitelist lists CIDRs exempt from
	// it. Defaults -50, 10, none (LocalConfig whitelists loopback).
	IPColocationWeight    float64  `toml:"ip_colocation_weight"`
	IPColocationThreshold int      `toml:"ip_colocation_threshold"`
	IPColocationWhitelist []string `toml:"ip_colocation_whitelist"`

	// DecayInterval is how often counters decay (at least 1 s); RetainScore
	// is how long a disconnected peer's score is kept, so reconnecting does
	// not wash a penalty away. Defaults 1 s and 30 min.
	DecayInterval time.Duration `toml:"decay_interval"`
	RetainScore   time.Duration `toml:"retain_score"`

	// InspectPeriod is how often scores are snapshotted for Mesh.Peers and
	// metrics. Default 5 s.
	InspectPeriod time.Duration `toml:"inspect_period"`
}

// Values of Config.PreferredTransport.
const (
	TransportTCP  = "tcp"
	TransportQUIC = "quic"
)

// Default values of DefaultConfig; LocalConfig starts from them.
const (
	DefaultPreferredTransport     = TransportTCP
	DefaultPort                   = 4001
	DefaultQCShards               = 16
	DefaultPeerOutboundQueueSize  = 8192
	DefaultValidateQueueSize      = 8192
	DefaultSubscriptionBufferSize = 4096
	DefaultValidationTimeout      = 2 * time.Second
	DefaultReconnectBackoffMin    = time.Second
	DefaultReconnectBackoffMax    = 30 * time.Second
	DefaultDialTimeout            = 10 * time.Second
	DefaultConnManagerLowWater    = 200
	DefaultConnManagerHighWater   = 400
	DefaultConnManagerGracePeriod = time.Minute
	DefaultSeenMessagesTTL        = 10 * time.Second
	DefaultVerifiedSignatures     = 8192
	DefaultAcceptedObjects        = 8192
	DefaultRejectLogsPerSecond    = 20
	DefaultOutsiderDuplicates     = 20.0
	DefaultOutsiderDuplicateBurst = 200
	DefaultMemberDuplicates       = 200.0
	DefaultMemberDuplicateBurst   = 2000
	DefaultPublishBackpressure    = time.Second
	DefaultPubsubCheckInterval    = 5 * time.Second
	DefaultFrameMaxObjects        = 1024
	DefaultFrameMaxBytes          = 256 << 10
	DefaultFrameInterval          = 15 * time.Millisecond
	DefaultQCUnwatchedInterval    = 200 * time.Millisecond
	DefaultPublishQueueSize       = 1 << 16
)

// Values of Config.CertRouting.
const (
	CertRoutingBulletin = "bulletin"
	CertRoutingEntry    = "entry"
)

// DefaultValidationConcurrency returns the default ValidationConcurrency:
// 2×NumCPU, at least 4.
func DefaultValidationConcurrency() int {
	return max(4, 2*runtime.NumCPU())
}

// DefaultScoreConfig returns the production scoring parameters.
func DefaultScoreConfig() ScoreConfig {
	return ScoreConfig{
		Enabled:                     true,
		InvalidMessageWeight:        -100,
		InvalidMessageHalfLife:      10 * time.Minute,
		CommitteeBonus:              2500,
		GossipThreshold:             -1000,
		PublishThreshold:            -2000,
		GraylistThreshold:           -8000,
		AcceptPXThreshold:           1250,
		OpportunisticGraftThreshold: 5,
		BehaviourPenaltyWeight:      -10,
		BehaviourPenaltyThreshold:   6,
		IPColocationWeight:          -50,
		IPColocationThreshold:       10,
		DecayInterval:               time.Second,
		RetainScore:                 30 * time.Minute,
		InspectPeriod:               5 * time.Second,
	}
}

// DefaultConfig returns the production configuration: all interfaces on
// port 4001 over TCP and QUIC, queues sized for 10,000-message bursts.
func DefaultConfig() Config {
	return Config{
		ListenAddrs: []string{
			fmt.Sprintf("/ip4/0.0.0.0/tcp/%d", DefaultPort),
			fmt.Sprintf("/ip4/0.0.0.0/udp/%d/quic-v1", DefaultPort),
		},
		PreferredTransport:         DefaultPreferredTransport,
		QCShards:                   DefaultQCShards,
		PeerOutboundQueueSize:      DefaultPeerOutboundQueueSize,
		ValidateQueueSize:          DefaultValidateQueueSize,
		ValidationConcurrency:      DefaultValidationConcurrency(),
		ValidationTimeout:          DefaultValidationTimeout,
		SubscriptionBufferSize:     DefaultSubscriptionBufferSize,
		VerifiedSignatures:         DefaultVerifiedSignatures,
		AcceptedObjects:            DefaultAcceptedObjects,
		FrameMaxObjects:            DefaultFrameMaxObjects,
		FrameMaxBytes:              DefaultFrameMaxBytes,
		FrameInterval:              DefaultFrameInterval,
		QCUnwatchedInterval:        DefaultQCUnwatchedInterval,
		CertRouting:                CertRoutingBulletin,
		PublishQueueSize:           DefaultPublishQueueSize,
		SeenMessagesTTL:            DefaultSeenMessagesTTL,
		FloodPublish:               true,
		PublishBackpressureTimeout: DefaultPublishBackpressure,
		PubsubCheckInterval:        DefaultPubsubCheckInterval,
		ReconnectBackoffMin:        DefaultReconnectBackoffMin,
		ReconnectBackoffMax:        DefaultReconnectBackoffMax,
		DialTimeout:                DefaultDialTimeout,
		ConnManagerLowWater:        DefaultConnManagerLowWater,
		ConnManagerHighWater:       DefaultConnManagerHighWater,
		ConnManagerGracePeriod:     DefaultConnManagerGracePeriod,
		RejectLogsPerSecond:        DefaultRejectLogsPerSecond,
		OutsiderDuplicateFrames:    DefaultOutsiderDuplicates,
		OutsiderDuplicateBurst:     DefaultOutsiderDuplicateBurst,
		MemberDuplicateFrames:      DefaultMemberDuplicates,
		MemberDuplicateBurst:       DefaultMemberDuplicateBurst,
		Scoring:                    DefaultScoreConfig(),
	}
}

// LocalConfig returns a configuration for loopback devnets and tests:
// 127.0.0.1 with OS-chosen ports, fast reconnects, pubsub link checks and
// score snapshots, and loopback exempt from the IP colocation penalty
// (every node shares it).
func LocalConfig() Config {
	c := DefaultConfig()
	c.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
	c.PubsubCheckInterval = 500 * time.Millisecond
	c.ReconnectBackoffMin = 100 * time.Millisecond
	c.ReconnectBackoffMax = 2 * time.Second
	c.DialTimeout = 5 * time.Second
	c.ConnManagerLowWater = 32
	c.ConnManagerHighWater = 64
	c.ConnManagerGracePeriod = 20 * time.Second
	c.Scoring.IPColocationWhitelist = []string{"127.0.0.0/8", "::1/128"}
	c.Scoring.InspectPeriod = 200 * time.Millisecond
	return c
}

// Validate checks every field and returns an error naming the first bad
// one.
func (c *Config) Validate() error {
	if len(c.ListenAddrs) == 0 {
		return errors.New("[p2p] listen_addrs is empty")
	}
	if _, err := parseTransportAddrs("listen_addrs", c.ListenAddrs); err != nil {
		return err
	}
	if _, err := parseTransportAddrs("announce_addrs", c.AnnounceAddrs); err != nil {
		return err
	}
	if c.PreferredTransport != TransportTCP && c.PreferredTransport != TransportQUIC {
		return fmt.Errorf("[p2p] preferred_transport must be %q or %q, got %q", TransportTCP, TransportQUIC, c.PreferredTransport)
	}
	if c.QCShards < 1 || c.QCShards > 256 {
		return fmt.Errorf("[p2p] qc_shards must be in [1, 256], got %d", c.QCShards)
	}
	positive := []struct {
		name string
		v    int
	}{
		{"peer_outbound_queue_size", c.PeerOutboundQueueSize},
		{"validate_queue_size", c.ValidateQueueSize},
		{"validation_concurrency", c.ValidationConcurrency},
		{"subscription_buffer_size", c.SubscriptionBufferSize},
		{"verified_signatures", c.VerifiedSignatures},
		{"accepted_objects", c.AcceptedObjects},
		{"frame_max_objects", c.FrameMaxObjects},
		{"frame_max_bytes", c.FrameMaxBytes},
		{"publish_queue_size", c.PublishQueueSize},
		{"conn_manager_low_water", c.ConnManagerLowWater},
		{"conn_manager_high_water", c.ConnManagerHighWater},
	}
	for _, f := range positive {
		if f.v <= 0 {
			return fmt.Errorf("[p2p] %s must be positive, got %d", f.name, f.v)
		}
	}
	durations := []struct {
		name string
		v    time.Duration
	}{
		{"validation_timeout", c.ValidationTimeout},
		{"seen_messages_ttl", c.SeenMessagesTTL},
		{"pubsub_check_interval", c.PubsubCheckInterval},
		{"reconnect_backoff_min", c.ReconnectBackoffMin},
		{"reconnect_backoff_max", c.ReconnectBackoffMax},
		{"dial_timeout", c.DialTimeout},
	}
	for _, f := range durations {
		if f.v <= 0 {
			return fmt.Errorf("[p2p] %s must be positive, got %s", f.name, f.v)
		}
	}
	if c.ReconnectBackoffMax < c.ReconnectBackoffMin {
		return fmt.Errorf("[p2p] reconnect_backoff_max (%s) is below reconnect_backoff_min (%s)", c.ReconnectBackoffMax, c.ReconnectBackoffMin)
	}
	if c.ConnManagerHighWater < c.ConnManagerLowWater {
		return fmt.Errorf("[p2p] conn_manager_high_water (%d) is below conn_manager_low_water (%d)", c.ConnManagerHighWater, c.ConnManagerLowWater)
	}
	if c.ConnManagerGracePeriod < 0 {
		return fmt.Errorf("[p2p] conn_manager_grace_period must not be negative, got %s", c.ConnManagerGracePeriod)
	}
	if c.FrameMaxObjects > MaxFrameObjects {
		return fmt.Errorf("[p2p] frame_max_objects must be at most %d (peers reject larger frames), got %d", MaxFrameObjects, c.FrameMaxObjects)
	}
	if limit := MaxFrameSize - 64<<10; c.FrameMaxBytes > limit {
		return fmt.Errorf("[p2p] frame_max_bytes must be at most %d (peers reject frames over %d bytes), got %d", limit, MaxFrameSize, c.FrameMaxBytes)
	}
	if c.FrameLinger < 0 {
		return fmt.Errorf("[p2p] frame_linger must not be negative, got %s", c.FrameLinger)
	}
	if c.FrameInterval < 0 || c.FrameInterval > time.Second {
		return fmt.Errorf("[p2p] frame_interval must be between 0 and 1s, got %s", c.FrameInterval)
	}
	if c.QCUnwatchedInterval < 0 || c.QCUnwatchedInterval > time.Second {
		return fmt.Errorf("[p2p] qc_unwatched_interval must be between 0 and 1s, got %s", c.QCUnwatchedInterval)
	}
	if c.CertRouting != CertRoutingBulletin && c.CertRouting != CertRoutingEntry {
		return fmt.Errorf("[p2p] cert_routing must be %q or %q, got %q", CertRoutingBulletin, CertRoutingEntry, c.CertRouting)
	}
	if c.PublishBackpressureTimeout < 0 {
		return fmt.Errorf("[p2p] publish_backpressure_timeout must not be negative, got %s", c.PublishBackpressureTimeout)
	}
	for _, b := range []struct {
		name  string
		rate  float64
		burst int
	}{{"outsider", c.OutsiderDuplicateFrames, c.OutsiderDuplicateBurst}, {"member", c.MemberDuplicateFrames, c.MemberDuplicateBurst}} {
		if !(b.rate > 0) || math.IsInf(b.rate, 0) {
			return fmt.Errorf("[p2p] %s_duplicate_frames must be a positive number per second, got %v", b.name, b.rate)
		}
		if b.burst < 1 {
			return fmt.Errorf("[p2p] %s_duplicate_burst must be at least 1, got %d", b.name, b.burst)
		}
	}
	if c.RejectLogsPerSecond < 0 {
		return fmt.Errorf("[p2p] reject_logs_per_second must not be negative, got %d", c.RejectLogsPerSecond)
	}
	if c.DialInRegion < 0 || c.DialPerOtherRegion < 0 {
		return fmt.Errorf("[p2p] dial_in_region and dial_per_other_region must not be negative, got %d and %d", c.DialInRegion, c.DialPerOtherRegion)
	}
	if c.DialPerOtherRegion > 0 && c.DialInRegion == 0 {
		return errors.New("[p2p] dial_per_other_region needs dial_in_region (0 dials every member)")
	}
	if c.DialInRegion > 0 && !c.Relay && c.GossipSub == nil {
		return errors.New("[p2p] dial_in_region needs relay = true (members this node does not dial would reach it only through relays)")
	}
	if !c.Relay && !c.FloodPublish && c.GossipSub == nil {
		return errors.New("[p2p] flood_publish must be on when relay is off (nothing would carry a message past its publisher)")
	}
	if c.GossipSub != nil {
		g := c.GossipSub
		floodOnly := g.D == 0 && g.Dlo == 0 && g.Dhi == 0 && g.Dout == 0
		if !floodOnly && (g.Dlo > g.D || g.D > g.Dhi || g.D <= 0) {
			return fmt.Errorf("[p2p] gossipsub degrees must satisfy 0 < Dlo <= D <= Dhi (or all of D, Dlo, Dhi, Dout 0), got Dlo=%d D=%d Dhi=%d", g.Dlo, g.D, g.Dhi)
		}
		if g.HeartbeatInterval <= 0 {
			return fmt.Errorf("[p2p] gossipsub.HeartbeatInterval must be positive, got %s", g.HeartbeatInterval)
		}
	}
	if history := c.gossipHistory(); c.SeenMessagesTTL < history {
		return fmt.Errorf("[p2p] seen_messages_ttl (%s) is shorter than gossip's message history (%s): peers would fetch again messages they had forgotten", c.SeenMessagesTTL, history)
	}
	return c.Scoring.validate()
}

// gossipHistory is how long gossip keeps announcing and serving a message:
// its history length in heartbeats.
func (c *Config) gossipHistory() time.Duration {
	g := pubsub.DefaultGossipSubParams()
	if c.GossipSub != nil {
		g = *c.GossipSub
	}
	return time.Duration(g.HistoryLength) * g.HeartbeatInterval
}

func (s *ScoreConfig) validate() error {
	if !s.Enabled {
		return nil
	}
	bad := func(field string, v any, rule string) error {
		return fmt.Errorf("[p2p] scoring.%s %s, got %v", field, rule, v)
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case !finite(s.InvalidMessageWeight) || s.InvalidMessageWeight >= 0:
		return bad("invalid_message_weight", s.InvalidMessageWeight, "must be negative")
	case s.InvalidMessageHalfLife <= 0:
		return bad("invalid_message_half_life", s.InvalidMessageHalfLife, "must be positive")
	case !finite(s.CommitteeBonus) || s.CommitteeBonus < 0:
		return bad("committee_bonus", s.CommitteeBonus, "must be >= 0")
	case !finite(s.GossipThreshold) || s.GossipThreshold > 0:
		return bad("gossip_threshold", s.GossipThreshold, "must be <= 0")
	case !finite(s.PublishThreshold) || s.PublishThreshold > s.GossipThreshold:
		return bad("publish_threshold", s.PublishThreshold, "must be <= gossip_threshold")
	case !finite(s.GraylistThreshold) || s.GraylistThreshold > s.PublishThreshold:
		return bad("graylist_threshold", s.GraylistThreshold, "must be <= publish_threshold")
	case !finite(s.AcceptPXThreshold) || s.AcceptPXThreshold < 0:
		return bad("accept_px_threshold", s.AcceptPXThreshold, "must be >= 0")
	case !finite(s.OpportunisticGraftThreshold) || s.OpportunisticGraftThreshold < 0:
		return bad("opportunistic_graft_threshold", s.OpportunisticGraftThreshold, "must be >= 0")
	case !finite(s.BehaviourPenaltyWeight) || s.BehaviourPenaltyWeight > 0:
		return bad("behaviour_penalty_weight", s.BehaviourPenaltyWeight, "must be <= 0")
	case !finite(s.BehaviourPenaltyThreshold) || s.BehaviourPenaltyThreshold < 0:
		return bad("behaviour_penalty_threshold", s.BehaviourPenaltyThreshold, "must be >= 0")
	case !finite(s.IPColocationWeight) || s.IPColocationWeight > 0:
		return bad("ip_colocation_weight", s.IPColocationWeight, "must be <= 0")
	case s.IPColocationWeight != 0 && s.IPColocationThreshold < 1:
		return bad("ip_colocation_threshold", s.IPColocationThreshold, "must be >= 1")
	case s.DecayInterval < time.Second:
		return bad("decay_interval", s.DecayInterval, "must be at least 1s")
	case s.RetainScore < 0:
		return bad("retain_score", s.RetainScore, "must not be negative")
	case s.InspectPeriod <= 0:
		return bad("inspect_period", s.InspectPeriod, "must be positive")
	}
	if _, err := parseCIDRs(s.IPColocationWhitelist); err != nil {
		return fmt.Errorf("[p2p] scoring.ip_colocation_whitelist: %w", err)
	}
	return nil
}

// parseTransportAddrs parses multiaddrs and requires each to be TCP or
// QUIC-v1 over IPv4/IPv6/DNS, the only transports the host enables.
func parseTransportAddrs(field string, addrs []string) ([]ma.Multiaddr, error) {
	out := make([]ma.Multiaddr, 0, len(addrs))
	for i, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("[p2p] %s[%d] %q: %w", field, i, s, err)
		}
		if !isTCPOrQUIC(a) {
			return nil, fmt.Errorf("[p2p] %s[%d] %q: only TCP and QUIC-v1 addresses are supported", field, i, s)
		}
		out = append(out, a)
	}
	return out, nil
}

func isTCPOrQUIC(a ma.Multiaddr) bool {
	ps := a.Protocols()
	if len(ps) < 2 {
		return false
	}
	switch ps[0].Code {
	case ma.P_IP4, ma.P_IP6, ma.P_DNS, ma.P_DNS4, ma.P_DNS6:
	default:
		return false
	}
	switch {
	case ps[1].Code == ma.P_TCP && len(ps) == 2:
		return true
	case ps[1].Code == ma.P_UDP && len(ps) == 3 && ps[2].Code == ma.P_QUIC_V1:
		return true
	}
	return false
}

func parseCIDRs(cidrs []string) ([]*net.IPNet, error) {
	out := make([]*net.IPNet, 0, len(cidrs))
	for _, c := range cidrs {
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}
