package bulletin

import (
	"fmt"
	"time"
)

// Config bounds the board. Every field has a documented default.
type Config struct {
	// MaxTxs bounds the transactions whose certificates and QC are kept
	// (default 10,000); the least recently touched is evicted first. An
	// entry costs ~1 KB with four certificates and a QC, plus ~80 bytes
	// per further certificate.
	MaxTxs int `toml:"max_txs"`
	// MaxLog bounds the arrival log that since/cursor queries scan
	// (default 100,000 entries).
	MaxLog int `toml:"max_log"`
	// MaxPageSize caps one query's certificates (default 1,000).
	MaxPageSize int `toml:"max_page_size"`
	// MaxEvidence bounds the equivocation evidence kept (default 1,024).
	MaxEvidence int `toml:"max_evidence"`
	// EvidenceWindow bounds the (signer, contention key) pairs remembered to
	// detect equivocation (default 20,000: tens of seconds of certificates
	// at saturation, while an equivocator's conflicting certificates travel
	// within milliseconds of each other; each entry holds a certificate,
	// ~310 bytes with its index, so 100,000 cost ~30 MiB of heap).
	EvidenceWindow int `toml:"evidence_window"`
	// SubscriberBuffer is each subscription's channel size (default 1,024).
	// A subscriber that falls further behind loses events (counted).
	SubscriberBuffer int `toml:"subscriber_buffer"`
	// PublishStep staggers QC publication: the node ranked r for a
	// transaction waits r×step after forming the QC and publishes only if
	// no QC for it arrived meanwhile. Rank 0 publishes at once, so one node
	// usually publishes and the rest stay quiet. PublishStep is the least
	// step (default 200 ms; 0 turns the stagger off and every node
	// publishes at once). Under load the others' QCs take longer to arrive
	// than that, so the step follows how late they come here (twice the
	// median of the last 32 delays between this node forming a QC and the
	// mesh's copy arriving), up to PublishStepMax; otherwise most nodes
	// would publish each QC (see docs/benchmarks.md). The step is also the
	// delay a light client sees when the rank-0 node is down or slow.
	PublishStep time.Duration `toml:"publish_step"`
	// PublishStepMax bounds the adapted step (default 5 s).
	PublishStepMax time.Duration `toml:"publish_step_max"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		MaxTxs:           10_000,
		MaxLog:           100_000,
		MaxPageSize:      1_000,
		MaxEvidence:      1_024,
		EvidenceWindow:   20_000,
		SubscriberBuffer: 1_024,
		PublishStep:      200 * time.Millisecond,
		PublishStepMax:   5 * time.Second,
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{
		{"max_txs", c.MaxTxs}, {"max_log", c.MaxLog}, {"max_page_size", c.MaxPageSize},
		{"max_evidence", c.MaxEvidence}, {"evidence_window", c.EvidenceWindow}, {"subscriber_buffer", c.SubscriberBuffer},
	} {
		if f.v <= 0 {
			return fmt.Errorf("[bulletin] %s must be positive, got %d", f.name, f.v)
		}
	}
	if c.PublishStep < 0 {
		return fmt.Errorf("[bulletin] publish_step must not be negative, got %s", c.PublishStep)
	}
	if c.PublishStepMax < c.PublishStep {
		return fmt.Errorf("[bulletin] publish_step_max (%s) must not be below publish_step (%s)", c.PublishStepMax, c.PublishStep)
	}
	return nil
}
