package chain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/allegro-mesh/allegro/tempo"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/rpc"
	"golang.org/x/sync/singleflight"
)

// NoncePrecompile is Tempo's 2D-nonce precompile; getNonce(address,uint256)
// returns the next nonce of (account, nonce key) for keys other than 0.
var NoncePrecompile = common.HexToAddress("0x4E4F4E4345000000000000000000000000000000")

// Selectors of the calls the client makes.
var (
	selectorBalanceOf = []byte{0x70, 0xa0, 0x82, 0x31} // balanceOf(address)
	selectorGetNonce  = []byte{0x89, 0x53, 0x58, 0x03} // getNonce(address,uint256)
	// getUserToken(address) of Tempo's FeeManager (tempo.FeeManager).
	selectorGetUserToken = []byte{0x91, 0xb2, 0x4b, 0x58}
)

// Head-following modes reported by Mode.
const (
	ModeConnecting   = "connecting"
	ModeSubscription = "subscription"
	ModePolling      = "polling"
)

type runState int

const (
	stateNew runState = iota
	stateRunning
	stateStopped
)

// Client is a JSON-RPC chain client. It implements tempo.ChainReader and is
// safe for concurrent use. Create it with New, then Start.
type Client struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	cache   *answerCache
	flights singleflight.Group
	ws      bool

	lifeMu sync.Mutex // guards Start/Stop and the fields below
	state  runState
	cancel context.CancelFunc
	done   chan struct{}
	life   atomic.Pointer[context.Context] // context of the running client

	rpcMu sync.RWMutex
	rc    *rpc.Client

	chainID atomic.Uint64
	genesis atomic.Pointer[common.Hash] // pinned at the first identity check
	// wrongChain holds the identity error while the node behind the URL
	// serves another chain; reads then fail with it.
	wrongChain atomic.Pointer[error]
	mode       atomic.Value // string

	headMu     sync.Mutex
	head       tempo.Head
	hasHead    bool
	subs       map[uint64]chan tempo.Head
	nextSub    uint64
	subsClosed bool
	drops      atomic.Uint64

	outage outage
}

var _ tempo.ChainReader = (*Client)(nil)

// New validates cfg and registers the metrics. Nothing connects until Start.
// A nil logger discards logs.
func New(cfg Config, logger *slog.Logger) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg:     cfg,
		log:     logger.With("component", "chain", "url", cfg.URL),
		metrics: m,
		cache:   newAnswerCache(cfg.CacheBlocks, cfg.CacheEntriesPerBlock),
		ws:      cfg.isWebSocket(),
		subs:    make(map[uint64]chan tempo.Head),
	}
	c.outage.firstFail = make(chan struct{})
	c.mode.Store(ModeConnecting)
	if cfg.ExpectedGenesis != (common.Hash{}) {
		g := cfg.ExpectedGenesis
		c.genesis.Store(&g)
	}
	return c, nil
}

// Start connects to the node, checks that eth_chainId equals
// Config.ExpectedChainID, reads the current head and starts following the
// chain. While the node is unreachable it retries with backoff until ctx
// ends (then the error wraps tempo.ErrChainUnavailable). A chain id mismatch
// fails at once with ErrChainIDMismatch.
func (c *Client) Start(ctx context.Context) error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	switch c.state {
	case stateRunning:
		return errors.New("chain: client already started")
	case stateStopped:
		return errors.New("chain: client stopped; create a new one")
	}
	backoff := c.cfg.BackoffMin
	for {
		err := c.connect(ctx)
		if err == nil {
			break
		}
		c.closeRPC()
		if errors.Is(err, ErrChainIDMismatch) || errors.Is(err, ErrGenesisMismatch) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("chain: start: %w", err)
		}
		c.failed(err, backoff, false)
		if !c.waitRetry(ctx, backoff) {
			return fmt.Errorf("chain: start: gave up: %w", err)
		}
		backoff = min(2*backoff, c.cfg.BackoffMax)
	}
	life, cancel := context.WithCancel(context.Background())
	c.life.Store(&life)
	c.cancel, c.done = cancel, make(chan struct{})
	c.state = stateRunning
	go c.follow(life)
	if o, down, ok := c.reachable(); ok {
		c.log.Info("chain node reachable", "down_for", down.Round(time.Millisecond), "attempts", o.Attempts)
	}
	c.log.Info("chain client started", "chain_id", c.cfg.ExpectedChainID, "head", c.headNumber())
	return nil
}

// connect dials (when not connected), checks the chain id and reads the
// latest head.
func (c *Client) connect(ctx context.Context) error {
	rc, err := c.dial(ctx)
	if err != nil {
		return err
	}
	// Nothing reads through a connection before its chain is checked.
	if err := c.checkIdentity(ctx, rc); err != nil {
		rc.Close()
		return err
	}
	c.setRPC(rc)
	var h tempo.Head
	if err := c.call(ctx, "eth_getBlockByNumber", decodeHeader(&h), "latest", false); err != nil {
		return err
	}
	c.setHead(h)
	return nil
}

func (c *Client) dial(ctx context.Context) (*rpc.Client, error) {
	dctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	rc, err := rpc.DialContext(dctx, c.cfg.URL)
	if err != nil {
		f := classify("dial", err)
		c.metrics.requests.WithLabelValues("dial", f.kind).Inc()
		return nil, f
	}
	return rc, nil
}

// checkIdentity checks that the node behind rc serves the expected chain:
// its chain id, and the genesis block pinned at the first check (or given
// as Config.ExpectedGenesis). It records the outcome for Latest.
func (c *Client) checkIdentity(ctx context.Context, rc *rpc.Client) error {
	err := c.identity(ctx, rc)
	switch {
	case err == nil:
		c.wrongChain.Store(nil)
	case errors.Is(err, ErrChainIDMismatch), errors.Is(err, ErrGenesisMismatch):
		c.wrongChain.Store(&err)
	}
	return err
}

func (c *Client) identity(ctx context.Context, rc *rpc.Client) error {
	var id *big.Int
	if err := c.callWith(ctx, rc, "eth_chainId", decodeBigQuantity(&id)); err != nil {
		return err
	}
	if !id.IsUint64() || id.Uint64() != c.cfg.ExpectedChainID {
		return fmt.Errorf("chain: %w: node %s serves chain id %s, expected %d", ErrChainIDMismatch, c.cfg.URL, id, c.cfg.ExpectedChainID)
	}
	var genesis tempo.Head
	if err := c.callWith(ctx, rc, "eth_getBlockByNumber", decodeHeader(&genesis), "0x0", false); err != nil {
		return err
	}
	if want := c.genesis.Load(); want != nil && *want != genesis.Hash {
		return fmt.Errorf("chain: %w: node %s serves a chain whose genesis block is %s, expected %s (was the chain reset?)", ErrGenesisMismatch, c.cfg.URL, genesis.Hash, *want)
	}
	c.genesis.CompareAndSwap(nil, &genesis.Hash)
	c.chainID.Store(id.Uint64())
	return nil
}

// Genesis returns the hash of the chain's block 0, known once Start has
// succeeded.
func (c *Client) Genesis() (common.Hash, bool) {
	if g := c.genesis.Load(); g != nil {
		return *g, true
	}
	return common.Hash{}, false
}

// Stop stops following the chain and closes the connection. Subscriber
// channels are closed. Idempotent; the client cannot be started again.
func (c *Client) Stop(ctx context.Context) error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if c.state != stateRunning {
		c.state = stateStopped
		c.closeRPC()
		c.closeSubs()
		return nil
	}
	c.state = stateStopped
	c.cancel()
	var err error
	select {
	case <-c.done:
	case <-ctx.Done():
		err = fmt.Errorf("chain: stop: head follower still running: %w", ctx.Err())
	}
	c.closeRPC()
	c.closeSubs()
	c.mode.Store(ModeConnecting)
	return err
}

func (c *Client) rpcClient() *rpc.Client {
	c.rpcMu.RLock()
	defer c.rpcMu.RUnlock()
	return c.rc
}

// setRPC installs rc, closing the previous connection.
func (c *Client) setRPC(rc *rpc.Client) {
	c.rpcMu.Lock()
	old := c.rc
	c.rc = rc
	c.rpcMu.Unlock()
	if old != nil {
		old.Close()
	}
}

func (c *Client) closeRPC() { c.setRPC(nil) }

// lifeContext returns the running client's context (cancelled by Stop), or
// a cancelled context when not running.
func (c *Client) lifeContext() context.Context {
	if p := c.life.Load(); p != nil {
		return *p
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// URL returns the node's URL.
func (c *Client) URL() string { return c.cfg.URL }

// ChainID returns the chain id verified at Start (0 before).
func (c *Client) ChainID() uint64 { return c.chainID.Load() }

// Mode reports how heads are followed: ModeSubscription, ModePolling or
// ModeConnecting (not started, or reconnecting).
func (c *Client) Mode() string { return c.mode.Load().(string) }

// HeadDrops returns how many heads were dropped for slow subscribers.
func (c *Client) HeadDrops() uint64 { return c.drops.Load() }

// Head returns the newest head seen, and false before the first one.
func (c *Client) Head() (tempo.Head, bool) {
	c.headMu.Lock()
	defer c.headMu.Unlock()
	return c.head, c.hasHead
}

func (c *Client) headNumber() uint64 {
	h, _ := c.Head()
	return h.Number
}

// SubscribeHeads returns a channel receiving each new head (the current one
// first, when known) and a function ending the subscription, which closes
// the channel. Delivery never blocks the client: a subscriber whose buffer
// (Config.HeadBuffer) is full misses heads, counted by HeadDrops and the
// allegro_chain_head_subscriber_drops_total metric. Stop closes every
// subscriber channel.
func (c *Client) SubscribeHeads() (<-chan tempo.Head, func()) {
	ch := make(chan tempo.Head, c.cfg.HeadBuffer)
	c.headMu.Lock()
	defer c.headMu.Unlock()
	if c.subsClosed {
		close(ch)
		return ch, func() {}
	}
	id := c.nextSub
	c.nextSub++
	c.subs[id] = ch
	if c.hasHead {
		ch <- c.head
	}
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			c.headMu.Lock()
			defer c.headMu.Unlock()
			if sub, ok := c.subs[id]; ok {
				delete(c.subs, id)
				close(sub)
			}
		})
	}
}

func (c *Client) closeSubs() {
	c.headMu.Lock()
	defer c.headMu.Unlock()
	c.subsClosed = true
	for id, ch := range c.subs {
		delete(c.subs, id)
		close(ch)
	}
}

// setHead records h as the head if it differs from the current one and fans
// it out. The node's word is taken even when the number goes down (a node
// restarted on a fresh chain), with a warning.
func (c *Client) setHead(h tempo.Head) {
	c.headMu.Lock()
	defer c.headMu.Unlock()
	if c.hasHead && h.Number == c.head.Number && h.Hash == c.head.Hash {
		return
	}
	if c.hasHead && h.Number < c.head.Number {
		c.log.Warn("chain head went backwards", "from", c.head.Number, "to", h.Number)
	}
	c.head, c.hasHead = h, true
	c.metrics.headNumber.Set(float64(h.Number))
	for _, ch := range c.subs {
		select {
		case ch <- h:
		default:
			c.drops.Add(1)
			c.metrics.headDrops.Inc()
		}
	}
}

// Latest implements tempo.ChainReader: a view pinned to the current head.
func (c *Client) Latest(context.Context) (tempo.ChainView, error) {
	if c.lifeContext().Err() != nil {
		return nil, fmt.Errorf("%w: %w", tempo.ErrChainUnavailable, ErrNotStarted)
	}
	if err := c.wrongChain.Load(); err != nil {
		return nil, fmt.Errorf("%w: %w", tempo.ErrChainUnavailable, *err)
	}
	h, ok := c.Head()
	if !ok {
		return nil, fmt.Errorf("%w: no chain head yet", tempo.ErrChainUnavailable)
	}
	return &view{c: c, head: h}, nil
}

// SendRawTransaction submits a signed transaction (any EIP-2718 type,
// including Tempo 0x76) and returns its hash. A node that already has the
// transaction ("already known") counts as success, with keccak256(raw) as
// the hash. A JSON-RPC error from the node wraps ErrTxRejected; transport
// failures and timeouts wrap tempo.ErrChainUnavailable (the transaction may
// or may not have reached the node: resubmitting is safe).
func (c *Client) SendRawTransaction(ctx context.Context, raw []byte) (common.Hash, error) {
	if len(raw) == 0 {
		return common.Hash{}, errors.New("chain: empty transaction")
	}
	var h common.Hash
	err := c.call(ctx, "eth_sendRawTransaction", decodeHash(&h), hexutil.Bytes(raw))
	if err != nil {
		if re, ok := rpcErrorOf(err); ok {
			msg := strings.ToLower(re.Error())
			if strings.Contains(msg, "already known") || strings.Contains(msg, "known transaction") {
				return crypto.Keccak256Hash(raw), nil
			}
			return common.Hash{}, fmt.Errorf("chain: %w: %w", ErrTxRejected, re)
		}
		return common.Hash{}, err
	}
	return h, nil
}

// TransactionReceipt returns the receipt of hash, or (nil, nil) while the
// node does not know it (not yet included, or still being indexed).
func (c *Client) TransactionReceipt(ctx context.Context, hash common.Hash) (*Receipt, error) {
	var r *Receipt
	err := c.call(ctx, "eth_getTransactionReceipt", func(raw json.RawMessage) error {
		var err error
		r, err = parseReceipt(raw)
		return err
	}, hash)
	if err != nil {
		if re, ok := rpcErrorOf(err); ok && strings.Contains(strings.ToLower(re.Error()), "indexing is in progress") {
			return nil, nil
		}
		return nil, err
	}
	if r != nil && r.TxHash != hash {
		f := &rpcFailure{method: "eth_getTransactionReceipt", kind: outcomeMalformed, err: malformed("receipt for %s answered for %s", r.TxHash, hash)}
		return nil, f
	}
	return r, nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
