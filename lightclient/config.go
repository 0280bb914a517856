package lightclient

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/ethereum/go-ethereum/common"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
)

// Defaults of DefaultConfig.
const (
	// DefaultPaymentBuffer is the capacity of the Payments channel.
	DefaultPaymentBuffer = 1024
	// DefaultRememberQCs is how many QCs (by tx hash, and by contention
	// key) are remembered for deduplication and conflict detection.
	DefaultRememberQCs = 65536
	// DefaultMaxConflicts is how many conflicts Conflicts keeps.
	DefaultMaxConflicts = 1024
)

// Config configures a light client. Start from DefaultConfig and set
// Committee, Bootstrap and Watch.
type Config struct {
	// Committee is the validator set every reported QC must verify against
	// (committee.File.Committee). Required.
	Committee *qc.Committee

	// QCShards is the network's number of QC topics (the committee file's
	// qc_shards). It must match the validators' value or the client listens
	// on the wrong shards. It overrides P2P.QCShards. Default 16.
	QCShards int

	// Bootstrap lists the sidecars to connect to, each with its peer ID and
	// at least one address (committee.File.Bootstrap gives the members
	// listed in a committee file). Required: a light client only dials out.
	Bootstrap []peer.AddrInfo

	// Watch lists the addresses whose incoming payments are reported. The
	// client joins the QC shard of each (and nothing else). It may be empty
	// and filled later with Client.Watch.
	Watch []common.Address

	// P2P configures the libp2p host and gossipsub. DefaultConfig starts
	// from p2p.DefaultConfig but listens on 127.0.0.1 with OS-chosen TCP and
	// QUIC ports: a light client dials the sidecars and needs no reachable
	// listen address of its own (set ListenAddrs/AnnounceAddrs to let other
	// light clients or sidecars dial it). QCShards is taken from the field
	// above. With Scoring.Enabled (the default) peers that forward invalid
	// QCs are penalised and, below the graylist threshold, ignored.
	P2P p2p.Config

	// PaymentBuffer is the capacity of the Payments channel. The channel is
	// lossy: when it is full the oldest unread payment is discarded to make
	// room for the newest, and Stats().Dropped counts the discards (a point
	// of sale cares most about the payment in front of it). Default 1024.
	PaymentBuffer int

	// RememberQCs bounds the memory of QCs seen (LRU, by tx hash and by
	// contention key) used to report each payment once and to detect
	// conflicting QCs. A duplicate arriving after its entry was evicted is
	// reported again; a conflict whose first QC was evicted goes unnoticed.
	// Default 65536.
	RememberQCs int

	// MaxConflicts bounds the list returned by Conflicts; later conflicts
	// are still logged at Error and counted. Default 1024.
	MaxConflicts int

	// Logger receives the client's and the mesh's logs (nil: discarded).
	Logger *slog.Logger

	// Registerer receives the client's and the mesh's Prometheus metrics
	// (nil: a private registry).
	Registerer prometheus.Registerer
}

// DefaultConfig returns a configuration with every tunable at its default;
// Committee, Bootstrap and Watch are still to be set.
func DefaultConfig() Config {
	p := p2p.DefaultConfig()
	p.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
	return Config{
		QCShards:      p2p.DefaultQCShards,
		P2P:           p,
		PaymentBuffer: DefaultPaymentBuffer,
		RememberQCs:   DefaultRememberQCs,
		MaxConflicts:  DefaultMaxConflicts,
	}
}

// p2pConfig is P2P with QCShards applied.
func (c *Config) p2pConfig() p2p.Config {
	p := c.P2P
	p.QCShards = c.QCShards
	return p
}

// Validate checks every field and returns an error naming the first bad
// one.
func (c *Config) Validate() error {
	if c.Committee == nil {
		return errors.New("lightclient config: Committee is nil")
	}
	if c.QCShards < 1 || c.QCShards > 256 {
		return fmt.Errorf("lightclient config: QCShards must be in [1, 256], got %d", c.QCShards)
	}
	if len(c.Bootstrap) == 0 {
		return errors.New("lightclient config: Bootstrap is empty (a light client needs at least one sidecar to dial)")
	}
	for i, b := range c.Bootstrap {
		if b.ID == "" {
			return fmt.Errorf("lightclient config: Bootstrap[%d] has no peer ID", i)
		}
		if len(b.Addrs) == 0 {
			return fmt.Errorf("lightclient config: Bootstrap[%d] (%s) has no addresses", i, b.ID)
		}
	}
	for i, a := range c.Watch {
		if a == (common.Address{}) {
			return fmt.Errorf("lightclient config: Watch[%d] is the zero address", i)
		}
	}
	p := c.p2pConfig()
	if err := p.Validate(); err != nil {
		return fmt.Errorf("lightclient config: P2P: %w", err)
	}
	if c.PaymentBuffer < 1 {
		return fmt.Errorf("lightclient config: PaymentBuffer must be positive, got %d", c.PaymentBuffer)
	}
	if c.RememberQCs < 1 {
		return fmt.Errorf("lightclient config: RememberQCs must be positive, got %d", c.RememberQCs)
	}
	if c.MaxConflicts < 1 {
		return fmt.Errorf("lightclient config: MaxConflicts must be positive, got %d", c.MaxConflicts)
	}
	return nil
}
