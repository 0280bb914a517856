package node

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/bulletin"
	"github.com/allegro-mesh/allegro/dashboard"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/settlement"
	"github.com/allegro-mesh/allegro/sidecar"
	"github.com/allegro-mesh/allegro/tempo/chain"
	"github.com/allegro-mesh/allegro/validator"
)

//go:generate go run ./gendoc

// Config is a sidecar's whole configuration: a TOML file, overridden by
// flags and environment variables (see cmd/allegro).
type Config struct {
	// DataDir holds the durable validator state (default "./allegro-data").
	DataDir string `toml:"data_dir"`
	// KeyFile is the validator's ed25519 key (default <data_dir>/validator.key).
	KeyFile string `toml:"key_file"`
	// CommitteeFile is the network's committee (required). When it says
	// committee_source = "chain", its members are an address book and each
	// epoch's committee is derived from the chain's validator set and the
	// sidecar key bindings (SPEC §5a).
	CommitteeFile string `toml:"committee_file"`
	// BindingsDir holds the sidecar key bindings of the network's validators
	// (allegro bind writes them), read at each epoch when the committee
	// comes from the chain (default <data_dir>/bindings).
	BindingsDir string `toml:"bindings_dir"`
	// LogLevel: debug, info, warn, error (default info).
	LogLevel string `toml:"log_level"`
	// LogFormat: text (logfmt, default) or json (one object per line).
	LogFormat string `toml:"log_format"`
	// MemoryLimit is the Go runtime's soft memory limit for the sidecar
	// process: "auto" (default: 90% of the container's memory limit when
	// the process runs under one, none otherwise), a size written as
	// GOMEMLIMIT is ("512MiB", "1GiB"), or "off". The GOMEMLIMIT environment
	// variable, when set, wins. Without a limit the heap grows to
	// 1 + gc_percent/100 times the live heap between collections, and the
	// live heap follows the message rate (pubsub keeps every message id for
	// up to a minute). Keep a limit well above the live heap: near it the
	// collector runs almost continuously and a busy sidecar falls behind
	// (figures in docs/benchmarks.md). `allegro sidecar` applies it
	// (ApplyMemoryLimit); in-process clusters do not.
	MemoryLimit string `toml:"memory_limit"`
	// GCPercent is the collector's heap growth, as GOGC sets it: the heap
	// may grow to (1 + gc_percent/100) times the live heap before the next
	// collection (default 75; Go's own is 100; between 10 and 1000). Most
	// of a busy sidecar's live heap is bounded caches, so this headroom is
	// most of its resident memory: a lower setting keeps the sidecar
	// smaller for more collector CPU under load, a higher one the reverse
	// (docs/benchmarks.md has the figures). Under a container's memory limit, memory_limit keeps the
	// heap within it whatever this setting. The GOGC environment variable,
	// when set, wins. `allegro sidecar` applies it (ApplyGCPercent);
	// in-process clusters do not.
	GCPercent int `toml:"gc_percent"`

	Chain     chain.Config     `toml:"chain"`
	P2P       p2p.Config       `toml:"p2p"`
	API       apiserver.Config `toml:"api"`
	Validator validator.Config `toml:"validator"`
	Bulletin  bulletin.Config  `toml:"bulletin"`
	Sidecar   sidecar.Config   `toml:"sidecar"`
	// Settlement sends certified transactions to the chain (used when the
	// chain is a JSON-RPC node; in-memory test chains have no settlement).
	Settlement settlement.Config `toml:"settlement"`
	// Byzantine makes this validator misbehave on purpose, to test that the
	// rest of a network copes. Refused unless the committee file says
	// test_network = true. Leave it empty in production.
	Byzantine sidecar.ByzantineConfig `toml:"byzantine"`
	// Dashboard is the web page served at / on the API address (on by
	// default).
	Dashboard dashboard.Config `toml:"dashboard"`
}

// BindingsPath returns the bindings directory: BindingsDir, or its default
// under DataDir.
func (c Config) BindingsPath() string {
	if c.BindingsDir != "" {
		return c.BindingsDir
	}
	return filepath.Join(c.DataDir, "bindings")
}

// DefaultConfig returns production defaults; the chain URL and committee
// file must still be set.
func DefaultConfig() Config {
	return Config{
		DataDir:     "./allegro-data",
		LogLevel:    "info",
		LogFormat:   "text",
		MemoryLimit: DefaultMemoryLimit,
		GCPercent:   DefaultGCPercent,
		Chain:       chain.Config{}.WithDefaults(),
		P2P:         p2p.DefaultConfig(),
		API:         apiserver.DefaultConfig(),
		Validator:   validator.DefaultConfig(),
		Bulletin:    bulletin.DefaultConfig(),
		Sidecar:     sidecar.DefaultConfig(),
		Settlement:  settlement.DefaultConfig(),
		Dashboard:   dashboard.DefaultConfig(),
	}
}

// KeyPath returns the key file path, defaulting under the data directory.
func (c Config) KeyPath() string {
	if c.KeyFile != "" {
		return c.KeyFile
	}
	return filepath.Join(c.DataDir, "validator.key")
}

// Validate checks every section; errors are *ConfigError naming the
// setting.
func (c Config) Validate() error {
	if c.DataDir == "" {
		return settingError("data_dir", "not set", "")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return settingError("log_level", fmt.Sprintf("%q is not a level", c.LogLevel), "use debug, info, warn or error")
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return settingError("log_format", fmt.Sprintf("%q is not a format", c.LogFormat), "use text or json")
	}
	if err := validMemoryLimit(c.MemoryLimit); err != nil {
		return settingError("memory_limit", err.Error(), "use auto, off or a size such as 512MiB")
	}
	if err := validGCPercent(c.GCPercent); err != nil {
		return settingError("gc_percent", err.Error(), fmt.Sprintf("use a value between %d and %d (default %d); GOGC=off in the environment turns the collector off", minGCPercent, maxGCPercent, DefaultGCPercent))
	}
	for _, err := range []error{
		c.P2P.Validate(), c.API.Validate(), c.Validator.Validate(), c.Bulletin.Validate(),
		c.Sidecar.Validate(), c.Settlement.Validate(), c.Byzantine.Validate(), c.Dashboard.Validate(),
	} {
		if err != nil {
			return sectionError(err)
		}
	}
	return nil
}

// sectionKey matches the way every section's Validate names a field:
// "[p2p] qc_shards must be …", "[p2p] scoring.decay_interval …",
// "[p2p] listen_addrs[0] …".
var sectionKey = regexp.MustCompile(`^\[(\w+)\] ([a-z0-9_.]+)(\[\d+\])?:? (.*)$`)

// sectionError turns a section's validation error into a *ConfigError for
// its setting. Errors that name no setting, or several (joined, one per
// line), stay as they are.
func sectionError(err error) error {
	m := sectionKey.FindStringSubmatch(err.Error())
	if m == nil || strings.Contains(err.Error(), "\n") {
		return err
	}
	return &ConfigError{Setting: m[1] + "." + m[2], Problem: strings.TrimPrefix(m[3]+" ", " ") + m[4]}
}
