package settlement

import (
	"fmt"
	"time"
)

// Defaults for Config's zero fields.
const (
	DefaultFinalityDepth  = 0
	DefaultMaxPending     = 100_000
	DefaultMaxRawBytes    = 256 << 20
	DefaultResendInterval = 5 * time.Second
	DefaultMaxAge         = 10 * time.Minute
	DefaultWorkers        = 8
	DefaultReceiptRetries = 5
)

// Config tunes a Settler. The zero value of every field means its default
// (FinalityDepth's default is 0 itself).
type Config struct {
	// FinalityDepth is how many blocks after its inclusion block a
	// transaction is reported FINALIZED. Default 0: final at inclusion, as
	// Tempo has deterministic finality (so has the dev chain).
	FinalityDepth uint64 `toml:"finality_depth"`
	// MaxPending bounds the transactions tracked at once, certified or only
	// offered (default 100,000). When full, a new certified transaction
	// evicts the oldest transaction that has no QC; anything else is refused
	// and counted as a drop.
	MaxPending int `toml:"max_pending"`
	// MaxRawBytes bounds the raw transaction bytes held (default 256 MiB).
	// An Offer beyond it is refused (counted); the transaction is still
	// tracked through its QC if one arrives.
	MaxRawBytes int `toml:"max_raw_bytes"`
	// ResendInterval is how long a sent but not yet included transaction
	// waits before it is sent again (default 5 s).
	ResendInterval time.Duration `toml:"resend_interval"`
	// MaxAge is how long a certified transaction may stay not included
	// before the settler gives up and reports a settlement failure; offered
	// transactions that get no QC within it are forgotten (default 10 min).
	// The age only counts against a transaction while the chain answers, so
	// an outage does not fail the backlog.
	MaxAge time.Duration `toml:"max_age"`
	// Workers bounds the concurrent chain requests of one pass (default 8).
	Workers int `toml:"workers"`
	// ReceiptRetries is how many heads a transaction whose nonce the chain
	// shows consumed may have no receipt before the settler concludes that
	// another transaction used the nonce (default 5; a node may still be
	// indexing a fresh block).
	ReceiptRetries int `toml:"receipt_retries"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		FinalityDepth:  DefaultFinalityDepth,
		MaxPending:     DefaultMaxPending,
		MaxRawBytes:    DefaultMaxRawBytes,
		ResendInterval: DefaultResendInterval,
		MaxAge:         DefaultMaxAge,
		Workers:        DefaultWorkers,
		ReceiptRetries: DefaultReceiptRetries,
	}
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if c.MaxPending == 0 {
		c.MaxPending = d.MaxPending
	}
	if c.MaxRawBytes == 0 {
		c.MaxRawBytes = d.MaxRawBytes
	}
	if c.ResendInterval == 0 {
		c.ResendInterval = d.ResendInterval
	}
	if c.MaxAge == 0 {
		c.MaxAge = d.MaxAge
	}
	if c.Workers == 0 {
		c.Workers = d.Workers
	}
	if c.ReceiptRetries == 0 {
		c.ReceiptRetries = d.ReceiptRetries
	}
	return c
}

// Validate reports the first invalid field (after defaults are applied, so
// only negative values fail).
func (c Config) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{
		{"max_pending", c.MaxPending}, {"max_raw_bytes", c.MaxRawBytes},
		{"workers", c.Workers}, {"receipt_retries", c.ReceiptRetries},
	} {
		if f.v <= 0 {
			return fmt.Errorf("[settlement] %s must be positive, got %d", f.name, f.v)
		}
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"resend_interval", c.ResendInterval}, {"max_age", c.MaxAge}} {
		if f.v <= 0 {
			return fmt.Errorf("[settlement] %s must be positive, got %s", f.name, f.v)
		}
	}
	if c.FinalityDepth > 1_000_000 {
		return fmt.Errorf("[settlement] finality_depth %d is unreasonably large (at most 1,000,000)", c.FinalityDepth)
	}
	if c.ResendInterval > c.MaxAge {
		return fmt.Errorf("[settlement] resend_interval %s must not exceed max_age %s", c.ResendInterval, c.MaxAge)
	}
	return nil
}
