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
	"log/slog"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/fx"

	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/bulletin"
	"github.com/allegro-mesh/allegro/committee"
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
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f, err := loadCommittee(cfg, o.committee)
	if err != nil {
		return nil, err
	}
	id, err := loadIdentity(cfg, o.identity)
	if err != nil {
		return nil, err
	}
	if mode := cfg.Byzantine.Mode; mode != sidecar.ByzantineHonest && !f.TestNetwork {
		return nil, fmt.Errorf("[byzantine] mode %q is only allowed on a test network (committee file test_network = true)", mode)
	}
	n := &Node{Config: cfg}
	app := fx.New(
		fx.NopLogger,
		fx.Supply(o.logger, cfg, f, id, o.extensions),
		fx.Provide(
			newRegistry,
			func(r *prometheus.Registry) prometheus.Registerer { return r },
			func(f *committee.File) (*qc.Committee, error) { return f.Committee() },
			newSigner,
			newStore,
			func(lc fx.Lifecycle, f *committee.File, store *validator.Store, reg prometheus.Registerer, log *slog.Logger) (tempo.ChainReader, error) {
				return newChain(lc, cfg, f, o.chain, store, reg, log)
			},
			newValidator,
			newMesh,
			newBoard,
			newSettler,
			newSidecar,
			newBackend,
			newAPI,
		),
		fx.Populate(&n.Sidecar, &n.API),
		fx.Invoke(mountRoutes),
	)
	if err := app.Err(); err != nil {
		var pe plainError
		if errors.As(err, &pe) {
			return nil, pe.err
		}
		return nil, err
	}
	n.app = app
	return n, nil
}

// plainError marks an error that names the configuration field at fault:
// New returns it as is, without the trail of constructors fx adds.
type plainError struct{ err error }

func (e plainError) Error() string { return e.err.Error() }
func (e plainError) Unwrap() error { return e.err }

// plain marks err (nil stays nil).
func plain(err error) error {
	if err == nil {
		return nil
	}
	return plainError{err}
}

// Start starts every component in dependency order. An error that names
// its setting and fix comes back as is, without fx's trail.
func (n *Node) Start(ctx context.Context) error {
	err := n.app.Start(ctx)
	var pe plainError
	if errors.As(err, &pe) {
		return pe.err
	}
	return err
}

// Stop stops every component in reverse order.
func (n *Node) Stop(ctx context.Context) error { return n.app.Stop(ctx) }

func newRegistry() (*prometheus.Registry, error) {
	r := prometheus.NewRegistry()
	_, err := promreg.Register("node", r, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Read().Collector())
	return r, err
}

func loadIdentity(cfg Config, injected *Identity) (*Identity, error) {
	if injected != nil {
		return injected, nil
	}
	name, key, err := committee.LoadKeyFile(cfg.KeyPath())
	if err != nil {
		return nil, fmt.Errorf("%w (create one with: allegro keygen --out %s)", err, cfg.KeyPath())
	}
	return &Identity{Name: name, Key: key}, nil
}

func loadCommittee(cfg Config, injected *committee.File) (*committee.File, error) {
	if injected != nil {
		if err := injected.Validate(); err != nil {
			return nil, fmt.Errorf("committee: %w", err)
		}
		return injected, nil
	}
	if cfg.CommitteeFile == "" {
		return nil, fmt.Errorf("committee_file must be set")
	}
	return committee.LoadFile(cfg.CommitteeFile)
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

func newStore(lc fx.Lifecycle, cfg Config, log *slog.Logger) (*validator.Store, *storeState, error) {
	dir := StateDir(cfg.DataDir)
	s, err := validator.OpenStore(dir, cfg.Validator.GroupCommitWindow, log)
	if err != nil {
		return nil, nil, err
	}
	st := &storeState{dir: dir}
	lc.Append(fx.StopHook(func() error {
		st.closed.Store(true)
		return s.Close()
	}))
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
		return nil, plain(fmt.Errorf("[chain] expected_chain_id %d differs from the committee's chain_id %d", ccfg.ExpectedChainID, f.ChainID))
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
	lc.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			err := c.Start(ctx)
			if errors.Is(err, chain.ErrGenesisMismatch) {
				return plain(fmt.Errorf("%w; data dir %s holds the state of that earlier chain: point [chain] url at it, or, if it was a development chain that has been reset, move %s away to start with empty state", err, cfg.DataDir, stateDir))
			}
			if err != nil || recorded {
				return err
			}
			g, _ := c.Genesis()
			if err := store.RecordChainIdentity(f.ChainID, g); err != nil {
				return errors.Join(err, c.Stop(ctx))
			}
			return nil
		},
		OnStop: c.Stop,
	})
	return c, nil
}

func newValidator(cfg Config, f *committee.File, signer *qc.Signer, c *qc.Committee, ch tempo.ChainReader, store *validator.Store, reg prometheus.Registerer, log *slog.Logger) (*validator.Validator, error) {
	vcfg := cfg.Validator
	fees, err := f.Fees()
	if err != nil {
		return nil, plain(fmt.Errorf("committee fee_model: %w", err))
	}
	// Network parameters come from the committee: every validator applies
	// the same rules.
	vcfg.Fees, vcfg.SettlementMargin = fees, f.Margin()
	m, err := validator.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	return validator.New(vcfg, signer, c, ch, store, m, log.With("component", "validator"))
}

func newBoard(lc fx.Lifecycle, cfg Config, c *qc.Committee, signer *qc.Signer, m *p2p.Mesh, reg prometheus.Registerer, log *slog.Logger) (*bulletin.Board, error) {
	b, err := bulletin.New(cfg.Bulletin, c, signer.ID(), m, reg, log.With("component", "bulletin"))
	if err != nil {
		return nil, err
	}
	lc.Append(fx.Hook{OnStart: b.Start, OnStop: b.Stop})
	return b, nil
}

func newMesh(lc fx.Lifecycle, cfg Config, id *Identity, f *committee.File, c *qc.Committee, reg prometheus.Registerer, log *slog.Logger) (*p2p.Mesh, error) {
	key, err := crypto.UnmarshalEd25519PrivateKey(id.Key)
	if err != nil {
		return nil, fmt.Errorf("libp2p key: %w", err)
	}
	boot, err := f.Bootstrap()
	if err != nil {
		return nil, err
	}
	pcfg := cfg.P2P
	pcfg.QCShards = f.QCShards
	if pcfg.ListenAddrs, err = meshListenAddrs(pcfg, f, id.Key.Public().(ed25519.PublicKey)); err != nil {
		return nil, err
	}
	m, err := p2p.New(pcfg, key, c, boot, reg, log.With("component", "p2p"))
	if err != nil {
		return nil, err
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

func newSidecar(lc fx.Lifecycle, cfg Config, v *validator.Validator, b *bulletin.Board, m *p2p.Mesh, ch tempo.ChainReader, st *settlement.Settler, reg prometheus.Registerer, log *slog.Logger) (*sidecar.Sidecar, error) {
	s, err := sidecar.New(cfg.Sidecar, sidecar.Deps{
		Validator: v, Board: b, Mesh: m, Chain: ch, Settler: st, Byzantine: cfg.Byzantine.Mode,
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
	lc.Append(fx.Hook{OnStart: srv.Start, OnStop: srv.Stop})
	return srv, nil
}
