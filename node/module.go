// Package node composes a sidecar from the domain packages — the validator,
// the bulletin board, the mesh, the chain client, settlement, the sidecar
// logic and the client API — with go.uber.org/fx, the only place that does.
// It checks the configuration and reads the files it names before the graph
// is built, so a bad setting is reported in one line that names it.
package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/fx"

	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/bulletin"
	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/epoch"
	"github.com/allegro-mesh/allegro/internal/buildinfo"
	"github.com/allegro-mesh/allegro/internal/promreg"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/settlement"
	"github.com/allegro-mesh/allegro/sidecar"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/chain"
	"github.com/allegro-mesh/allegro/validator"
)

// Identity is the validator's name and key.
type Identity struct {
	Name string
	Key  ed25519.PrivateKey
}

// Node is a running (or startable) sidecar application.
type Node struct {
	app     *fx.App
	Sidecar *sidecar.Sidecar
	API     *apiserver.Server
	Config  Config

	stopOnce sync.Once
	stopped  chan struct{} // closed by Stop
}

// Option customises a node: tests and the devnet inject parts that would
// otherwise be read from files or dialled.
type Option func(*options)

type options struct {
	identity   *Identity
	committee  *committee.File
	chain      tempo.ChainReader
	logger     *slog.Logger
	extensions []APIExtension
	handover   *epoch.Handover
	closes     []*qc.Close
	settler    *settlement.Settler
	members    *qc.Committee
	bindings   string
	resolver   *committee.Resolver
	earlier    func() []apiserver.EpochBoard
	epochEnd   uint64
	// sharedMetrics are served with the node's (WithSettler's registry).
	sharedMetrics prometheus.Gatherer
}

// WithEpochEnd makes the validator stop signing once the head reaches
// block end, the next epoch's first (the Runner sets it).
func WithEpochEnd(end uint64) Option { return func(o *options) { o.epochEnd = end } }

// WithResolver lets the API answer for the committees of other epochs
// (GET /api/v1/committee?epoch=); the Runner sets it.
func WithResolver(r *committee.Resolver) Option { return func(o *options) { o.resolver = r } }

// WithEarlierBoards lets the API read the bulletin boards of earlier epochs
// (the Runner keeps the last few after each boundary).
func WithEarlierBoards(f func() []apiserver.EpochBoard) Option {
	return func(o *options) { o.earlier = f }
}

// WithBindingsDir makes the sidecar keep, serve and pass on the sidecar key
// bindings of dir (a network whose committees come from the chain; the
// Runner sets it).
func WithBindingsDir(dir string) Option { return func(o *options) { o.bindings = dir } }

// WithQCCommittee uses c as the epoch's committee instead of the committee
// file's members (which then only tell where peers are): the Runner sets it
// to the committee it derived from the chain.
func WithQCCommittee(c *qc.Committee) Option { return func(o *options) { o.members = c } }

// WithHandover enters the committee's epoch from the previous one through
// h (SPEC §5a): the validator signs once h completes, and the sidecar
// gathers the previous committee's closes. The Runner sets it.
func WithHandover(h *epoch.Handover) Option { return func(o *options) { o.handover = h } }

// WithCloses has the sidecar serve closes (this validator's close of the
// previous epoch) to the members of the next committee.
func WithCloses(closes ...*qc.Close) Option {
	return func(o *options) { o.closes = append(o.closes, closes...) }
}

// WithSettler uses s, started and stopped by the caller, instead of a
// settler of the node's own: the Runner keeps one across epochs so nothing
// certified in one epoch is dropped at the boundary. The node feeds it its
// board's QCs and serves metrics, s's registry, with its own.
func WithSettler(s *settlement.Settler, metrics prometheus.Gatherer) Option {
	return func(o *options) { o.settler, o.sharedMetrics = s, metrics }
}

// WithIdentity uses key instead of reading the key file.
func WithIdentity(name string, key ed25519.PrivateKey) Option {
	return func(o *options) { o.identity = &Identity{Name: name, Key: key} }
}

// WithCommittee uses f instead of reading the committee file.
func WithCommittee(f *committee.File) Option { return func(o *options) { o.committee = f } }

// WithChain uses r as chain state instead of dialling cfg.Chain.URL.
func WithChain(r tempo.ChainReader) Option { return func(o *options) { o.chain = r } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithAPIExtension mounts more routes on the sidecar's API server (devnet
// adds its dev wallet this way; production sidecars have none).
func WithAPIExtension(ext APIExtension) Option {
	return func(o *options) { o.extensions = append(o.extensions, ext) }
}

// New builds a sidecar from cfg. Nothing runs until Start. The
// configuration, the committee, the key and the Byzantine mode are checked
// before any component is built, so such an error is one line naming its
// setting.
func New(cfg Config, opts ...Option) (*Node, error) {
	o := resolveOptions(opts)
	f, id, err := precheck(cfg, &o)
	if err != nil {
		return nil, err
	}
	n := &Node{Config: cfg, stopped: make(chan struct{})}
	held := &acquired{}
	app := fx.New(
		fx.NopLogger,
		fx.Supply(o.logger, cfg, f, id, o.extensions, held),
		fx.Provide(
			newRegistry,
			func(r *prometheus.Registry) prometheus.Registerer { return r },
			func(f *committee.File) (*qc.Committee, error) {
				if o.members != nil {
					return o.members, nil
				}
				return f.Committee()
			},
			newSigner,
			newStore,
			func(lc fx.Lifecycle, f *committee.File, store *validator.Store, reg prometheus.Registerer, log *slog.Logger) (tempo.ChainReader, error) {
				return newChain(lc, cfg, f, o.chain, store, reg, log)
			},
			func(cfg Config, f *committee.File, signer *qc.Signer, c *qc.Committee, ch tempo.ChainReader, store *validator.Store, reg prometheus.Registerer, log *slog.Logger) (*validator.Validator, error) {
				v, err := newValidator(cfg, f, signer, c, ch, store, reg, log)
				if err == nil && o.handover != nil {
					err = v.EnterEpoch(o.handover)
				}
				if err == nil && o.epochEnd > 0 {
					v.EndEpochAt(o.epochEnd)
				}
				return v, err
			},
			newMesh,
			newBoard,
			func(lc fx.Lifecycle, cfg Config, ch tempo.ChainReader, b *bulletin.Board, reg prometheus.Registerer, log *slog.Logger) (*settlement.Settler, error) {
				if o.settler != nil {
					stopFollow := func() {}
					lc.Append(fx.Hook{
						OnStart: func(context.Context) error { stopFollow = o.settler.FollowBoard(b); return nil },
						OnStop:  func(context.Context) error { stopFollow(); return nil },
					})
					return o.settler, nil
				}
				return newSettler(lc, cfg, ch, b, reg, log)
			},
			func(lc fx.Lifecycle, cfg Config, v *validator.Validator, b *bulletin.Board, m *p2p.Mesh, ch tempo.ChainReader, st *settlement.Settler, reg prometheus.Registerer, log *slog.Logger) (*sidecar.Sidecar, error) {
				return newSidecar(lc, cfg, v, b, m, ch, st, &o, reg, log)
			},
			func(s *sidecar.Sidecar, ch tempo.ChainReader, reg *prometheus.Registry, f *committee.File, st *storeState) apiserver.Backend {
				b := newBackend(s, ch, reg, f, st)
				b.resolver, b.shared, b.earlier = o.resolver, o.sharedMetrics, o.earlier
				return b
			},
			newAPI,
		),
		fx.Populate(&n.Sidecar, &n.API),
		fx.Invoke(mountRoutes),
	)
	if err := app.Err(); err != nil {
		if rerr := held.release(); rerr != nil {
			o.logger.Warn("releasing what a failed build acquired", "err", rerr)
		}
		return nil, rootCause(err)
	}
	n.app = app
	return n, nil
}

// acquired holds the releases of what constructors take hold of while the
// node is built (the store's lock, the mesh's listening ports). fx runs
// stop hooks only for components it started, so when a later constructor
// fails, New releases these itself: a Runner retrying an epoch's start
// must find the store and the ports free.
type acquired struct{ releases []func() error }

func (a *acquired) add(release func() error) { a.releases = append(a.releases, release) }

// release runs the releases, the last acquired first.
func (a *acquired) release() error {
	var errs []error
	for i := len(a.releases) - 1; i >= 0; i-- {
		errs = append(errs, a.releases[i]())
	}
	return errors.Join(errs...)
}

// resolveOptions applies opts over the defaults.
func resolveOptions(opts []Option) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	return o
}

// precheck checks the configuration, reads the committee and the key, and
// checks the Byzantine mode and the chain settings: everything that fails
// in one line naming its setting, before any component is built.
func precheck(cfg Config, o *options) (*committee.File, *Identity, error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	f, err := loadCommittee(cfg, o.committee)
	if err != nil {
		return nil, nil, err
	}
	id, err := loadIdentity(cfg, o.identity)
	if err != nil {
		return nil, nil, err
	}
	if mode := cfg.Byzantine.Mode; mode != sidecar.ByzantineHonest && !f.TestNetwork {
		return nil, nil, settingError("byzantine.mode", fmt.Sprintf("%q is only allowed on a test network", mode), "leave it empty (the committee file does not say test_network = true)")
	}
	if o.chain == nil {
		ccfg := cfg.Chain
		if ccfg.ExpectedChainID == 0 {
			ccfg.ExpectedChainID = f.ChainID
		}
		if err := ccfg.Validate(); err != nil {
			return nil, nil, sectionError(err)
		}
	}
	return f, id, nil
}

// Start starts every component in dependency order. Its error is the
// cause, without fx's trail (a *ConfigError when one setting is at fault).
func (n *Node) Start(ctx context.Context) error {
	return rootCause(n.app.Start(ctx))
}

// Stop stops every component in reverse order.
func (n *Node) Stop(ctx context.Context) error {
	n.stopOnce.Do(func() { close(n.stopped) })
	return n.app.Stop(ctx)
}

func newRegistry() (*prometheus.Registry, error) {
	r := prometheus.NewRegistry()
	_, err := promreg.Register("node", r, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Read().Collector())
	return r, err
}

func loadIdentity(cfg Config, injected *Identity) (*Identity, error) {
	if injected != nil {
		return injected, nil
	}
	path := cfg.KeyPath()
	name, key, err := committee.LoadKeyFile(path)
	var me *committee.KeyModeError
	switch {
	case err == nil:
		return &Identity{Name: name, Key: key}, nil
	case errors.As(err, &me):
		return nil, settingError("key_file", fmt.Sprintf("%s has mode %04o, open to group or others", path, me.Mode), me.Fix)
	case errors.Is(err, fs.ErrNotExist):
		return nil, settingError("key_file", path+" does not exist",
			"create it with: allegro keygen --out "+path+", or point key_file at the validator's key (default <data_dir>/validator.key)")
	default:
		return nil, settingError("key_file", err.Error(), "")
	}
}

func loadCommittee(cfg Config, injected *committee.File) (*committee.File, error) {
	if injected != nil {
		if err := injected.Validate(); err != nil {
			return nil, fmt.Errorf("committee: %w", err)
		}
		return injected, nil
	}
	if cfg.CommitteeFile == "" {
		return nil, settingError("committee_file", "not set", "point it at the network's committee file (allegro committee writes one)")
	}
	f, err := committee.LoadFile(cfg.CommitteeFile)
	switch {
	case err == nil:
		return f, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, settingError("committee_file", cfg.CommitteeFile+" does not exist", "point it at the network's committee file (allegro committee writes one)")
	default:
		return nil, settingError("committee_file", err.Error(), "")
	}
}

func newSigner(id *Identity, c *qc.Committee) (*qc.Signer, error) {
	var vid qc.ValidatorID
	copy(vid[:], id.Key.Public().(ed25519.PublicKey))
	m, ok := c.Member(vid)
	if !ok {
		return nil, fmt.Errorf("this key (public key %s) is not a member of the committee", vid.Hex())
	}
	return qc.NewSigner(id.Key, m.Name, c.Domain()), nil
}

// StateDir is where a sidecar with data directory dataDir keeps its durable
// validator state (the pebble store).
func StateDir(dataDir string) string { return filepath.Join(dataDir, "state") }

func newStore(lc fx.Lifecycle, cfg Config, held *acquired, log *slog.Logger) (*validator.Store, *storeState, error) {
	dir := StateDir(cfg.DataDir)
	s, err := validator.OpenStore(dir, cfg.Validator.GroupCommitWindow, log)
	if err != nil {
		return nil, nil, err
	}
	st := &storeState{dir: dir}
	closeStore := func() error { // Store.Close may be called again
		st.closed.Store(true)
		return s.Close()
	}
	held.add(closeStore)
	lc.Append(fx.StopHook(closeStore))
	return s, st, nil
}

// newChain dials the chain node. The validator's state belongs to one chain:
// the data directory records its chain id and genesis block at the first
// start, and the sidecar refuses any other chain from then on (a
// development chain restarted from scratch would otherwise meet nonce
// cursors and debits of a chain that no longer exists).
func newChain(lc fx.Lifecycle, cfg Config, f *committee.File, injected tempo.ChainReader, store *validator.Store, reg prometheus.Registerer, log *slog.Logger) (tempo.ChainReader, error) {
	if injected != nil {
		return injected, nil
	}
	ccfg := cfg.Chain
	ccfg.Registerer = reg
	switch ccfg.ExpectedChainID {
	case 0:
		ccfg.ExpectedChainID = f.ChainID
	case f.ChainID:
	default:
		return nil, settingError("chain.expected_chain_id", fmt.Sprintf("%d differs from the committee's chain_id %d", ccfg.ExpectedChainID, f.ChainID), "leave it unset (it defaults to the committee's)")
	}
	stateDir := StateDir(cfg.DataDir)
	recordedID, genesis, recorded, err := store.ChainIdentity()
	if err != nil {
		return nil, err
	}
	if recorded {
		if recordedID != f.ChainID {
			return nil, plain(fmt.Errorf("data dir %s holds the state of chain id %d, but the committee is for chain id %d: use the data dir of this committee's validator, or a new one", cfg.DataDir, recordedID, f.ChainID))
		}
		ccfg.ExpectedGenesis = genesis
	}
	c, err := chain.New(ccfg, log) // the client adds its component and URL
	if err != nil {
		return nil, plain(err)
	}
	// started finishes Start: a node serving another chain is refused, the
	// first start records the chain's identity.
	started := func(ctx context.Context, err error) error {
		switch {
		case errors.Is(err, chain.ErrGenesisMismatch):
			return settingError("chain.url", err.Error(), fmt.Sprintf("point it at the chain data dir %s was used with, or, if that was a development chain that has been reset, move %s away to start with empty state", cfg.DataDir, stateDir))
		case errors.Is(err, chain.ErrChainIDMismatch):
			return settingError("chain.url", err.Error(), fmt.Sprintf("point it at a node of chain %d, the committee's", f.ChainID))
		case err != nil || recorded:
			return err
		}
		g, _ := c.Genesis()
		if err := store.RecordChainIdentity(f.ChainID, g); err != nil {
			return errors.Join(err, c.Stop(ctx))
		}
		return nil
	}
	stopConnecting := func() {}
	lc.Append(fx.Hook{
		// A node that cannot be reached does not hold the sidecar's start:
		// the API comes up and /readyz says the chain is unreachable (an
		// operator and an orchestrator see why the sidecar is not ready)
		// while the client keeps trying. Nothing is certified meanwhile:
		// without a head there is no state to validate payments against.
		OnStart: func(ctx context.Context) error {
			life, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- c.Start(life) }()
			select {
			case err := <-errc:
				cancel()
				return started(ctx, err)
			case <-c.Unreachable():
				log.Warn("starting without the chain node; nothing is certified until it answers", "component", "chain", "url", c.URL())
				done := make(chan struct{})
				go func() {
					defer close(done)
					if err := started(life, <-errc); err != nil && life.Err() == nil {
						log.Error("chain node refused", "component", "chain", "url", c.URL(), "err", err)
					}
				}()
				stopConnecting = func() { cancel(); <-done }
				return nil
			case <-ctx.Done():
				cancel()
				<-errc
				return ctx.Err()
			}
		},
		OnStop: func(ctx context.Context) error {
			stopConnecting()
			return c.Stop(ctx)
		},
	})
	return c, nil
}

// validatorConfig is cfg's validator section with the network parameters of
// the committee file: every validator applies the same rules.
func validatorConfig(cfg Config, f *committee.File) (validator.Config, error) {
	vcfg := cfg.Validator
	fees, err := f.Fees()
	if err != nil {
		return vcfg, plain(fmt.Errorf("committee fee_model: %w", err))
	}
	vcfg.Fees, vcfg.SettlementMargin = fees, f.Margin()
	return vcfg, nil
}

func newValidator(cfg Config, f *committee.File, signer *qc.Signer, c *qc.Committee, ch tempo.ChainReader, store *validator.Store, reg prometheus.Registerer, log *slog.Logger) (*validator.Validator, error) {
	vcfg, err := validatorConfig(cfg, f)
	if err != nil {
		return nil, err
	}
	m, err := validator.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	return validator.New(vcfg, signer, c, ch, store, m, log.With("component", "validator"))
}

func newBoard(lc fx.Lifecycle, cfg Config, c *qc.Committee, signer *qc.Signer, m *p2p.Mesh, reg prometheus.Registerer, log *slog.Logger) (*bulletin.Board, error) {
	bcfg := cfg.Bulletin
	if cfg.P2P.CertRouting == p2p.CertRoutingEntry {
		// Only a transaction's entry gathers its certificates, so the QC
		// usually forms at one member, which publishes it at once rather
		// than in its turn.
		bcfg.PublishStep = 0
	}
	b, err := bulletin.New(bcfg, c, signer.ID(), m, reg, log.With("component", "bulletin"))
	if err != nil {
		return nil, err
	}
	lc.Append(fx.Hook{OnStart: b.Start, OnStop: b.Stop})
	return b, nil
}

func newMesh(lc fx.Lifecycle, cfg Config, id *Identity, f *committee.File, c *qc.Committee, held *acquired, reg prometheus.Registerer, log *slog.Logger) (*p2p.Mesh, error) {
	key, err := crypto.UnmarshalEd25519PrivateKey(id.Key)
	if err != nil {
		return nil, fmt.Errorf("libp2p key: %w", err)
	}
	boot, err := f.Bootstrap()
	if err != nil {
		return nil, err
	}
	// A sparse mesh dials groups (one per region) instead of every member.
	var groups []p2p.DialGroup
	if dials := (committee.Dials{InRegion: cfg.P2P.DialInRegion, PerOtherRegion: cfg.P2P.DialPerOtherRegion}); dials.Sparse() {
		regions, all, err := f.DialGroups(id.Key.Public().(ed25519.PublicKey), dials)
		if err != nil {
			return nil, settingError("p2p.dial_in_region", err.Error(), "")
		}
		for _, r := range regions {
			g := p2p.DialGroup{Want: r.Want}
			for _, j := range r.Members {
				g.Peers = append(g.Peers, all[j])
			}
			groups = append(groups, g)
		}
		boot = nil
	}
	pcfg := cfg.P2P
	pcfg.QCShards = f.QCShards
	if pcfg.ListenAddrs, err = meshListenAddrs(pcfg, f, id.Key.Public().(ed25519.PublicKey)); err != nil {
		return nil, sectionError(err)
	}
	m, err := p2p.New(pcfg, key, c, boot, reg, log.With("component", "p2p"))
	if errors.Is(err, p2p.ErrListen) {
		return nil, settingError("p2p.listen_addrs", err.Error(), "free those ports, or listen elsewhere and announce the committee entry's address (p2p.announce_addrs)")
	}
	if err != nil {
		return nil, err
	}
	held.add(func() error { return m.Stop(context.Background()) })
	if len(groups) > 0 {
		m.AddDialGroups(groups...)
		log.Info("sparse mesh", "dials", m.Host().ExpectedPeers(), "members", len(f.Members), "in_region", cfg.P2P.DialInRegion, "per_other_region", cfg.P2P.DialPerOtherRegion)
	}
	lc.Append(fx.Hook{OnStart: m.Start, OnStop: m.Stop})
	return m, nil
}

// newSettler returns the settler, or nil when the chain cannot take
// transactions (an in-memory test chain).
func newSettler(lc fx.Lifecycle, cfg Config, ch tempo.ChainReader, b *bulletin.Board, reg prometheus.Registerer, log *slog.Logger) (*settlement.Settler, error) {
	sc, ok := ch.(settlement.Chain)
	if !ok {
		return nil, nil
	}
	s, err := settlement.New(cfg.Settlement, sc, b, reg, log) // the settler adds its component
	if err != nil {
		return nil, err
	}
	stopFollow := func() {}
	lc.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			stopFollow = s.FollowBoard(b)
			return s.Start(ctx)
		},
		OnStop: func(ctx context.Context) error {
			stopFollow()
			return s.Stop(ctx)
		},
	})
	return s, nil
}

func newSidecar(lc fx.Lifecycle, cfg Config, v *validator.Validator, b *bulletin.Board, m *p2p.Mesh, ch tempo.ChainReader, st *settlement.Settler, o *options, reg prometheus.Registerer, log *slog.Logger) (*sidecar.Sidecar, error) {
	s, err := sidecar.New(cfg.Sidecar, sidecar.Deps{
		Validator: v, Board: b, Mesh: m, Chain: ch, Settler: st, Byzantine: cfg.Byzantine.Mode,
		Handover: o.handover, Closes: o.closes, BindingsDir: o.bindings,
		Registerer: reg, Logger: log.With("component", "sidecar"),
	})
	if err != nil {
		return nil, err
	}
	lc.Append(fx.Hook{OnStart: s.Start, OnStop: s.Stop})
	return s, nil
}

func newAPI(lc fx.Lifecycle, cfg Config, backend apiserver.Backend, log *slog.Logger) (*apiserver.Server, error) {
	srv, err := apiserver.New(cfg.API, backend, log) // the server adds its component
	if err != nil {
		return nil, err
	}
	lc.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			err := srv.Start(ctx)
			if errors.Is(err, apiserver.ErrListen) {
				return settingError("api.listen_addr", err.Error(), "free the port or choose another address")
			}
			return err
		},
		OnStop: srv.Stop,
	})
	return srv, nil
}
