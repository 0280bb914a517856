package validator

import (
	"fmt"
	"time"

	"github.com/allegro-mesh/allegro/tempo"
)

// Config bounds the validator's memory and sets its policy. Every field has a
// documented default in DefaultConfig.
type Config struct {
	// MaxCertificates bounds the cache of this validator's own certificates
	// kept in memory for idempotent replies (default 10,000). Certificates
	// evicted from it are read back from the durable store.
	MaxCertificates int `toml:"max_certificates"`
	// MaxKnownQCs is no longer used: a validator remembers the QCs it
	// verified by hash (bounded by max_qc_hashes), not whole. The key is
	// still read so that configuration files that set it load.
	MaxKnownQCs int `toml:"max_known_qcs"`
	// MaxQCHashes is how many of the latest verified QC hashes are at least
	// remembered (up to twice as many are held; default 16,384, ~3 MiB), so
	// that a QC presented again, as a parent or from the mesh, is not
	// verified again. Mesh copies arrive within seconds, and the QC of a
	// pending credit is known as long as the credit is, so forgetting older
	// hashes costs at most a verification.
	MaxQCHashes int `toml:"max_qc_hashes"`
	// MaxRequestIDs bounds the client_request_id cache (default 8,192).
	MaxRequestIDs int `toml:"max_request_ids"`
	// MaxCredits bounds pending QC credits (default 65,536). When full, the
	// oldest credit is dropped: that only makes the validator more
	// conservative.
	MaxCredits int `toml:"max_credits"`
	// MaxParentQCs bounds the parent QCs one request may carry (default 8).
	MaxParentQCs int `toml:"max_parent_qcs"`
	// GroupCommitWindow is the shortest time between two fsyncs of the
	// store's write-ahead log (default 1 ms): signing decisions that arrive
	// meanwhile share the next fsync. Every decision is still on disk before
	// its certificate leaves the process; the window only trades at most
	// that much latency, when decisions come faster than one per window, for
	// fewer fsyncs. 0 syncs as soon as the previous sync ends.
	GroupCommitWindow time.Duration `toml:"group_commit_window"`
	// Fees is the network's fee model (tempo.TempoFees, or tempo.NativeFees
	// on a chain whose gas is native); nil means Tempo's. A network
	// parameter: the committee file's fee_model.
	Fees tempo.FeeModel `toml:"-"`
	// SettlementMargin is how long before its valid_before a 0x76
	// transaction stops being certified, and how far ahead of its
	// valid_after it may be: a certified transaction must still be valid
	// when it reaches a block. A network parameter (the committee file's
	// settlement_margin); default 10 s.
	SettlementMargin time.Duration `toml:"-"`
	// Now returns the current time; nil means time.Now. Tests set it.
	Now func() time.Time `toml:"-"`
}

// DefaultGroupCommitWindow is Config.GroupCommitWindow's default: long
// enough that decisions arriving together at saturation share an fsync,
// short enough that a payment alone is not slowed by it (figures in
// docs/benchmarks.md).
const DefaultGroupCommitWindow = time.Millisecond

// maxGroupCommitWindow bounds the window: beyond it the latency it adds is
// no longer small next to a QC's.
const maxGroupCommitWindow = 50 * time.Millisecond

// DefaultConfig returns the defaults of SPEC §4.
func DefaultConfig() Config {
	return Config{
		MaxCertificates: 10_000,
		MaxRequestIDs:   8_192,
		MaxCredits:      65_536,
		MaxQCHashes:     16_384,
		MaxParentQCs:    8,

		GroupCommitWindow: DefaultGroupCommitWindow,
		SettlementMargin:  tempo.DefaultSettlementMargin,
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{
		{"max_certificates", c.MaxCertificates},
		{"max_request_ids", c.MaxRequestIDs},
		{"max_credits", c.MaxCredits},
		{"max_qc_hashes", c.MaxQCHashes},
		{"max_parent_qcs", c.MaxParentQCs},
	} {
		if f.v <= 0 {
			return fmt.Errorf("[validator] %s must be positive, got %d", f.name, f.v)
		}
	}
	if c.SettlementMargin < 0 {
		return fmt.Errorf("[validator] SettlementMargin must not be negative, got %s", c.SettlementMargin)
	}
	if c.GroupCommitWindow < 0 || c.GroupCommitWindow > maxGroupCommitWindow {
		return fmt.Errorf("[validator] group_commit_window must be between 0 and %s, got %s", maxGroupCommitWindow, c.GroupCommitWindow)
	}
	return nil
}
