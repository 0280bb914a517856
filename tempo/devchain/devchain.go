// Package devchain runs an embedded go-ethereum development chain for local
// runs and tests: a real EVM in-process with HTTP and WebSocket JSON-RPC on
// loopback, a block every Config.BlockPeriod, and a genesis holding a
// TIP-20-style token at TokenAddress plus funded demo and load-test accounts.
//
// The chain executes ordinary Ethereum transactions only (it cannot run Tempo
// 0x76 transactions), so local settlement uses EIP-1559 transfers (see
// SignTransfer).
package devchain

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/big"
	"net"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/eth"
	"github.com/ethereum/go-ethereum/eth/catalyst"
	"github.com/ethereum/go-ethereum/eth/ethconfig"
	"github.com/ethereum/go-ethereum/eth/filters"
	"github.com/ethereum/go-ethereum/log"
	"github.com/ethereum/go-ethereum/node"
	"github.com/ethereum/go-ethereum/p2p"
	"github.com/ethereum/go-ethereum/rpc"

	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// Defaults for Config's zero fields.
const (
	DefaultChainID      = devkit.ChainID
	DefaultBlockPeriod  = time.Second
	DefaultHost         = "127.0.0.1"
	DefaultLoadAccounts = 64
	DefaultGasLimit     = 60_000_000
	// MinBlockPeriod is the shortest accepted BlockPeriod.
	MinBlockPeriod = 50 * time.Millisecond
)

// Config configures a Chain. The zero value is valid: every zero field takes
// the documented default.
type Config struct {
	// ChainID is the EIP-155 chain id. Default 1337 (Tempo's dev chain id).
	ChainID uint64
	// BlockPeriod is the interval between blocks; blocks are produced even
	// when empty. Default 1 s, minimum 50 ms. Block timestamps have 1 s
	// resolution and must increase, so with a sub-second period they run
	// ahead of the wall clock.
	BlockPeriod time.Duration
	// Host is the interface the RPC servers listen on. Default 127.0.0.1.
	Host string
	// HTTPPort is the HTTP JSON-RPC port. Default 0: the OS chooses (read it
	// back with HTTPEndpoint).
	HTTPPort int
	// WSPort is the WebSocket JSON-RPC port. Default 0: WebSocket is served on
	// the HTTP listener (same host:port, ws:// scheme). A non-zero value
	// different from HTTPPort runs a separate listener.
	WSPort int
	// DataDir holds the chain database. Empty (default) keeps everything in
	// memory, and each Start begins a new chain with a genesis block of its
	// own; with a directory a stopped chain starts again from its state.
	// The genesis (ChainID, LoadAccounts, GasLimit) must not change between
	// runs on one directory.
	DataDir string
	// LoadAccounts is the number of funded load-test accounts (LoadAccounts).
	// 0 means the default 64; a negative value means none.
	LoadAccounts int
	// GasLimit is the block gas limit. Default 60,000,000.
	GasLimit uint64
	// Logger receives go-ethereum's logs. Default: discarded.
	Logger *slog.Logger
	// Validators is the genesis validator set of the chain's ValidatorConfig
	// (tempo.ValidatorConfigAddress), in order; their Index fields are
	// ignored. Default none. devkit.ValidatorConfigOwner may add validators
	// and change their status while the chain runs.
	Validators []tempo.Validator
}

// WithDefaults returns cfg with zero fields set to their defaults.
func (cfg Config) WithDefaults() Config {
	if cfg.ChainID == 0 {
		cfg.ChainID = DefaultChainID
	}
	if cfg.BlockPeriod == 0 {
		cfg.BlockPeriod = DefaultBlockPeriod
	}
	if cfg.Host == "" {
		cfg.Host = DefaultHost
	}
	if cfg.LoadAccounts == 0 {
		cfg.LoadAccounts = DefaultLoadAccounts
	} else if cfg.LoadAccounts < 0 {
		cfg.LoadAccounts = -1
	}
	if cfg.GasLimit == 0 {
		cfg.GasLimit = DefaultGasLimit
	}
	return cfg
}

// Validate checks the configuration after defaults; errors name the field.
func (cfg Config) Validate() error {
	cfg = cfg.WithDefaults()
	var errs []error
	if cfg.BlockPeriod < MinBlockPeriod {
		errs = append(errs, fmt.Errorf("devchain: BlockPeriod %v is below the minimum %v", cfg.BlockPeriod, MinBlockPeriod))
	}
	if net.ParseIP(cfg.Host) == nil && cfg.Host != "localhost" {
		errs = append(errs, fmt.Errorf("devchain: Host %q is not an IP address or localhost", cfg.Host))
	}
	if cfg.HTTPPort < 0 || cfg.HTTPPort > 65535 {
		errs = append(errs, fmt.Errorf("devchain: HTTPPort %d out of range [0, 65535]", cfg.HTTPPort))
	}
	if cfg.WSPort < 0 || cfg.WSPort > 65535 {
		errs = append(errs, fmt.Errorf("devchain: WSPort %d out of range [0, 65535]", cfg.WSPort))
	}
	if cfg.LoadAccounts > 100_000 {
		errs = append(errs, fmt.Errorf("devchain: LoadAccounts %d above the maximum 100000", cfg.LoadAccounts))
	}
	if cfg.GasLimit < 1_000_000 {
		errs = append(errs, fmt.Errorf("devchain: GasLimit %d below the minimum 1000000", cfg.GasLimit))
	}
	if cfg.ChainID > 1<<53 {
		errs = append(errs, fmt.Errorf("devchain: ChainID %d too large", cfg.ChainID))
	}
	seen := make(map[common.Address]bool, len(cfg.Validators))
	for i, v := range cfg.Validators {
		switch {
		case v.PublicKey == [32]byte{}:
			errs = append(errs, fmt.Errorf("devchain: Validators[%d]: zero public key", i))
		case seen[v.ValidatorAddress]:
			errs = append(errs, fmt.Errorf("devchain: Validators[%d]: address %s listed twice", i, v.ValidatorAddress))
		case len(v.InboundAddress) > vcMaxStringSz || len(v.OutboundAddress) > vcMaxStringSz:
			errs = append(errs, fmt.Errorf("devchain: Validators[%d]: inbound or outbound address longer than %d bytes", i, vcMaxStringSz))
		}
		seen[v.ValidatorAddress] = true
	}
	if len(cfg.Validators) > tempo.MaxValidators {
		errs = append(errs, fmt.Errorf("devchain: Validators: %d, more than %d", len(cfg.Validators), tempo.MaxValidators))
	}
	return errors.Join(errs...)
}

type runState int

const (
	stateNew runState = iota
	stateRunning
	stateStopped
)

// Chain is an embedded development chain. Create it with New, then Start.
type Chain struct {
	cfg      Config
	accounts []devkit.Account
	genesis  *core.Genesis

	mu       sync.Mutex
	state    runState
	stack    *node.Node
	backend  *eth.Ethereum
	beacon   *catalyst.SimulatedBeacon
	stopLoop chan struct{}
	loopDone chan struct{}
	httpURL  string
	wsURL    string
}

// New validates cfg and prepares the genesis. Nothing runs until Start.
func New(cfg Config) (*Chain, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	accounts := append(devkit.DemoAccounts(), devkit.LoadAccounts(cfg.LoadAccounts)...)
	return &Chain{cfg: cfg, accounts: accounts, genesis: buildGenesis(cfg, accounts)}, nil
}

// Genesis returns the chain's genesis specification for cfg (after
// defaults). A chain without DataDir adds random extra data to it at each
// Start.
func Genesis(cfg Config) *core.Genesis {
	cfg = cfg.WithDefaults()
	return buildGenesis(cfg, append(devkit.DemoAccounts(), devkit.LoadAccounts(cfg.LoadAccounts)...))
}

func buildGenesis(cfg Config, accounts []devkit.Account) *core.Genesis {
	g := core.DeveloperGenesisBlock(cfg.GasLimit, nil) // newest forks, precompiles, system contracts
	g.Config.ChainID = new(big.Int).SetUint64(cfg.ChainID)
	g.Alloc = maps.Clone(g.Alloc)
	storage := make(map[common.Hash]common.Hash, len(accounts)+1)
	supply := new(big.Int)
	for _, a := range accounts {
		g.Alloc[a.Address] = types.Account{Balance: new(big.Int).Set(devkit.GenesisEther)}
		bal := new(big.Int).SetUint64(a.Tokens)
		storage[BalanceSlot(a.Address)] = common.BigToHash(bal)
		supply.Add(supply, bal)
	}
	storage[TotalSupplySlot()] = common.BigToHash(supply)
	g.Alloc[devkit.TokenAddress] = types.Account{Code: TokenRuntimeCode(), Storage: storage, Nonce: 1, Balance: new(big.Int)}
	owner := devkit.ValidatorConfigOwner()
	g.Alloc[owner.Address] = types.Account{Balance: new(big.Int).Set(devkit.GenesisEther)}
	vcStorage, err := ValidatorConfigStorage(owner.Address, cfg.Validators)
	if err != nil {
		panic(fmt.Sprintf("devchain: genesis validators: %v", err)) // Validate checked what could fail
	}
	g.Alloc[tempo.ValidatorConfigAddress] = types.Account{Code: ValidatorConfigRuntimeCode(), Storage: vcStorage, Nonce: 1, Balance: new(big.Int)}
	return g
}

// Config returns the configuration after defaults.
func (c *Chain) Config() Config { return c.cfg }

// ChainID returns the chain id.
func (c *Chain) ChainID() *big.Int { return new(big.Int).SetUint64(c.cfg.ChainID) }

// Accounts returns every funded account: the demo accounts, then the
// load-test accounts.
func (c *Chain) Accounts() []devkit.Account { return append([]devkit.Account(nil), c.accounts...) }

// HTTPEndpoint returns the HTTP JSON-RPC URL ("" unless running).
func (c *Chain) HTTPEndpoint() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.httpURL
}

// WSEndpoint returns the WebSocket JSON-RPC URL ("" unless running).
func (c *Chain) WSEndpoint() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wsURL
}

// Attach returns an in-process RPC client ("" transport). It fails unless
// the chain is running. Close it when done.
func (c *Chain) Attach() (*rpc.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateRunning {
		return nil, errors.New("devchain: not running")
	}
	return c.stack.Attach(), nil
}

// BlockNumber returns the current head number (0 unless running).
func (c *Chain) BlockNumber() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateRunning {
		return 0
	}
	return c.backend.BlockChain().CurrentBlock().Number.Uint64()
}

// Start builds and starts the node and begins producing blocks. Calling Start
// on a running chain is an error; Start after Stop starts a new node (on
// DataDir's state when set, else from genesis).
func (c *Chain) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateRunning {
		return errors.New("devchain: already running")
	}
	stack, backend, err := c.build()
	if err != nil {
		return err
	}
	if err := stack.Start(); err != nil {
		_ = stack.Close()
		return fmt.Errorf("devchain: start node: %w", err)
	}
	// Period 0: the beacon never seals on its own; blocks come from our
	// loop calling Commit every BlockPeriod, which allows sub-second periods
	// and lets Stop wait for an in-flight seal before the node closes.
	beacon, err := catalyst.NewSimulatedBeacon(0, common.Address{}, backend)
	if err != nil {
		_ = stack.Close()
		return fmt.Errorf("devchain: simulated beacon: %w", err)
	}
	if err := beacon.Start(); err != nil {
		_ = stack.Close()
		return fmt.Errorf("devchain: simulated beacon: %w", err)
	}
	c.stack, c.backend, c.beacon = stack, backend, beacon
	c.httpURL, c.wsURL = stack.HTTPEndpoint(), stack.WSEndpoint()
	c.stopLoop, c.loopDone = make(chan struct{}), make(chan struct{})
	c.state = stateRunning
	go c.sealLoop(beacon, c.cfg.BlockPeriod, c.stopLoop, c.loopDone)
	return nil
}

func (c *Chain) build() (*node.Node, *eth.Ethereum, error) {
	cfg := c.cfg
	modules := []string{"eth", "net", "web3", "txpool"}
	wsPort := cfg.WSPort
	if wsPort == 0 {
		wsPort = cfg.HTTPPort // geth then serves WebSocket on the HTTP listener
	}
	nodeConf := node.Config{
		Name:                 "allegro-devchain",
		DataDir:              cfg.DataDir,
		HTTPHost:             cfg.Host,
		HTTPPort:             cfg.HTTPPort,
		HTTPModules:          modules,
		HTTPVirtualHosts:     []string{"*"},
		HTTPCors:             []string{"*"},
		HTTPTimeouts:         rpc.DefaultHTTPTimeouts,
		WSHost:               cfg.Host,
		WSPort:               wsPort,
		WSModules:            modules,
		WSOrigins:            []string{"*"},
		BatchRequestLimit:    node.DefaultConfig.BatchRequestLimit,
		BatchResponseMaxSize: node.DefaultConfig.BatchResponseMaxSize,
		HTTPBodyLimit:        node.DefaultConfig.HTTPBodyLimit,
		AuthAddr:             node.DefaultAuthHost,
		AuthPort:             node.DefaultAuthPort,
		AuthVirtualHosts:     node.DefaultAuthVhosts,
		P2P: p2p.Config{
			MaxPeers:    0,
			NoDiscovery: true,
			ListenAddr:  "",
		},
	}
	if cfg.Logger != nil {
		nodeConf.Logger = log.NewLogger(cfg.Logger.Handler())
	}
	stack, err := node.New(&nodeConf)
	if err != nil {
		return nil, nil, fmt.Errorf("devchain: new node: %w", err)
	}
	ethConf := ethconfig.Defaults
	ethConf.Genesis = c.genesis
	if cfg.DataDir == "" {
		// An in-memory chain starts from nothing every time: each run gets
		// a genesis of its own (random extra data), so a client that kept
		// state from an earlier run — a sidecar's nonce cursors and pending
		// debits — sees another chain instead of a chain that forgot.
		g := *c.genesis
		g.ExtraData = make([]byte, 32)
		if _, err := rand.Read(g.ExtraData); err != nil {
			return nil, nil, fmt.Errorf("devchain: genesis identity: %w", err)
		}
		ethConf.Genesis = &g
	}
	ethConf.NetworkId = cfg.ChainID
	ethConf.SyncMode = ethconfig.FullSync
	ethConf.TxPool.NoLocals = true
	ethConf.Miner.GasCeil = cfg.GasLimit
	// No log index: eth_getLogs scans blocks instead, which is plenty for a
	// dev chain and keeps (re)starts on a DataDir fast.
	ethConf.LogNoHistory = true
	// Modest caches: a dev chain holds little state.
	ethConf.DatabaseCache = 64
	ethConf.TrieCleanCache = 32
	ethConf.TrieDirtyCache = 32
	ethConf.SnapshotCache = 32
	backend, err := eth.New(stack, &ethConf)
	if err != nil {
		_ = stack.Close()
		return nil, nil, fmt.Errorf("devchain: new eth service: %w", err)
	}
	// The filter API under "eth" serves eth_subscribe (newHeads, logs) and
	// the eth_newFilter family.
	filterSystem := filters.NewFilterSystem(backend.APIBackend, filters.Config{})
	stack.RegisterAPIs([]rpc.API{{Namespace: "eth", Service: filters.NewFilterAPI(filterSystem)}})
	return stack, backend, nil
}

func (c *Chain) sealLoop(beacon *catalyst.SimulatedBeacon, period time.Duration, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	beacon.Commit() // first block right away
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			beacon.Commit()
		}
	}
}

// Stop stops block production and closes the node. It is idempotent; Stop
// on a chain never started does nothing. It waits for an in-flight block
// seal (bounded by ctx) before closing the node.
func (c *Chain) Stop(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateRunning {
		return nil
	}
	c.state = stateStopped
	close(c.stopLoop)
	var errs []error
	select {
	case <-c.loopDone:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("devchain: waiting for block production to stop: %w", ctx.Err()))
	}
	if err := c.beacon.Stop(); err != nil {
		errs = append(errs, err)
	}
	if err := c.stack.Close(); err != nil {
		errs = append(errs, fmt.Errorf("devchain: close node: %w", err))
	}
	c.stack, c.backend, c.beacon = nil, nil, nil
	c.httpURL, c.wsURL = "", ""
	return errors.Join(errs...)
}
