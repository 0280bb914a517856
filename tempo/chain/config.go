// Package chain is the JSON-RPC client the sidecar uses to read Tempo chain
// state and to settle transactions. It works against a real Tempo node: it
// only issues raw JSON-RPC calls and decodes results into its own minimal
// structs (go-ethereum's ethclient cannot decode Tempo's 0x76 transactions).
//
// A Client follows the chain head (eth_subscribe newHeads over WebSocket,
// polling over HTTP or when subscriptions fail), reconnects with exponential
// backoff, implements tempo.ChainReader with views pinned to one block
// (balances via eth_call balanceOf, nonces via eth_getTransactionCount or the
// nonce precompile), caches answers per (block, query) and collapses
// concurrent identical requests.
package chain

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for Config's zero fields.
const (
	DefaultPollInterval         = 500 * time.Millisecond
	DefaultRequestTimeout       = 5 * time.Second
	DefaultBackoffMin           = 500 * time.Millisecond
	DefaultBackoffMax           = 30 * time.Second
	DefaultCacheBlocks          = 16
	DefaultCacheEntriesPerBlock = 8192
	DefaultHeadBuffer           = 16
	DefaultReportInterval       = 10 * time.Second
)

// Config configures a Client. Only URL and ExpectedChainID are required.
type Config struct {
	// URL of the node's JSON-RPC endpoint: http(s):// (heads by polling) or
	// ws(s):// (heads by eth_subscribe newHeads, polling if that fails).
	URL string `toml:"url"`
	// ExpectedChainID must equal the node's eth_chainId (Tempo mainnet 4217,
	// testnet 42431, dev 1337). Required.
	ExpectedChainID uint64 `toml:"expected_chain_id"`
	// ExpectedGenesis, when set, must equal the hash of the node's block 0.
	// Unset, the client pins the genesis it first sees at Start. Either way
	// a node that later serves another genesis (a development chain
	// restarted from scratch behind the same URL) is not read from: its
	// state would contradict everything decided on the first one.
	ExpectedGenesis common.Hash `toml:"-"`
	// PollInterval between eth_blockNumber polls. Default 500 ms.
	PollInterval time.Duration `toml:"poll_interval"`
	// RequestTimeout bounds every JSON-RPC request. Default 5 s.
	RequestTimeout time.Duration `toml:"request_timeout"`
	// BackoffMin and BackoffMax bound the exponential reconnect backoff.
	// Defaults 0.5 s and 30 s.
	BackoffMin time.Duration `toml:"backoff_min"`
	BackoffMax time.Duration `toml:"backoff_max"`
	// ReportInterval is how often, while the node cannot be reached, the
	// client logs so again (with the attempts and the last error); the first
	// failure is logged at once. Default 10 s.
	ReportInterval time.Duration `toml:"report_interval"`
	// CacheBlocks is how many recent blocks keep cached answers. Default 16;
	// negative disables the cache (identical concurrent requests are still
	// collapsed).
	CacheBlocks int `toml:"cache_blocks"`
	// CacheEntriesPerBlock bounds the cached answers of one block (LRU).
	// Default 8192.
	CacheEntriesPerBlock int `toml:"cache_entries_per_block"`
	// HeadBuffer is the channel capacity of each SubscribeHeads subscriber.
	// Default 16.
	HeadBuffer int `toml:"head_buffer"`
	// Registerer receives the client's Prometheus metrics. Nil: the metrics
	// are kept but not registered anywhere.
	Registerer prometheus.Registerer `toml:"-"`
}

// WithDefaults returns cfg with zero fields set to their defaults.
func (cfg Config) WithDefaults() Config {
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin = DefaultBackoffMin
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = DefaultBackoffMax
	}
	if cfg.ReportInterval == 0 {
		cfg.ReportInterval = DefaultReportInterval
	}
	if cfg.CacheBlocks == 0 {
		cfg.CacheBlocks = DefaultCacheBlocks
	}
	if cfg.CacheEntriesPerBlock == 0 {
		cfg.CacheEntriesPerBlock = DefaultCacheEntriesPerBlock
	}
	if cfg.HeadBuffer == 0 {
		cfg.HeadBuffer = DefaultHeadBuffer
	}
	return cfg
}

// Validate checks the configuration after defaults; errors name the field.
func (cfg Config) Validate() error {
	cfg = cfg.WithDefaults()
	var errs []error
	if cfg.URL == "" {
		errs = append(errs, errors.New("[chain] url is required"))
	} else if u, err := url.Parse(cfg.URL); err != nil {
		errs = append(errs, fmt.Errorf("[chain] url %q: %v", cfg.URL, err))
	} else if s := u.Scheme; s != "http" && s != "https" && s != "ws" && s != "wss" {
		errs = append(errs, fmt.Errorf("[chain] url %q: scheme must be http, https, ws or wss", cfg.URL))
	} else if u.Host == "" {
		errs = append(errs, fmt.Errorf("[chain] url %q has no host", cfg.URL))
	}
	if cfg.ExpectedChainID == 0 {
		errs = append(errs, errors.New("[chain] expected_chain_id is required"))
	}
	if cfg.PollInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("[chain] poll_interval %v below 10ms", cfg.PollInterval))
	}
	if cfg.RequestTimeout < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("[chain] request_timeout %v below 10ms", cfg.RequestTimeout))
	}
	if cfg.BackoffMin < time.Millisecond {
		errs = append(errs, fmt.Errorf("[chain] backoff_min %v below 1ms", cfg.BackoffMin))
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		errs = append(errs, fmt.Errorf("[chain] backoff_max %v below backoff_min %v", cfg.BackoffMax, cfg.BackoffMin))
	}
	if cfg.ReportInterval < 0 {
		errs = append(errs, fmt.Errorf("[chain] report_interval %v is negative", cfg.ReportInterval))
	}
	if cfg.CacheBlocks > 4096 {
		errs = append(errs, fmt.Errorf("[chain] cache_blocks %d above 4096", cfg.CacheBlocks))
	}
	if cfg.CacheEntriesPerBlock < 1 || cfg.CacheEntriesPerBlock > 1<<20 {
		errs = append(errs, fmt.Errorf("[chain] cache_entries_per_block %d outside [1, 1048576]", cfg.CacheEntriesPerBlock))
	}
	if cfg.HeadBuffer < 1 || cfg.HeadBuffer > 1<<16 {
		errs = append(errs, fmt.Errorf("[chain] head_buffer %d outside [1, 65536]", cfg.HeadBuffer))
	}
	return errors.Join(errs...)
}

func (cfg Config) isWebSocket() bool {
	u, err := url.Parse(cfg.URL)
	return err == nil && (u.Scheme == "ws" || u.Scheme == "wss")
}
