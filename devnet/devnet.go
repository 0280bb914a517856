// Package devnet runs a whole local Allegro network in one process: the
// embedded development chain and n validator sidecars on loopback, with
// their keys, committee file and data directories written to one folder.
// It backs `allegro-dev devnet` and end-to-end tests.
package devnet

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/devnet/devwallet"
	"github.com/allegro-mesh/allegro/internal/freeport"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devchain"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// Config describes a devnet. The zero value of a port means "any free port".
type Config struct {
	// Dir holds keys, the committee file and data directories (required).
	Dir string
	// Validators is the committee size (default 4).
	Validators int
	// BlockPeriod is the dev chain's block time (default 1 s).
	BlockPeriod time.Duration
	// ChainPort is the dev chain's HTTP and WebSocket JSON-RPC port.
	ChainPort int
	// APIBasePort: sidecar i serves its API on APIBasePort+i (0: any free).
	APIBasePort int
	// P2PBasePort: sidecar i listens for the mesh on P2PBasePort+i (0: any).
	P2PBasePort int
	// EpochLength, when set, makes the devnet's committees come from the
	// dev chain (SPEC §5a): each validator gets a consensus key, in the
	// chain's genesis validator set, and a sidecar key bound to it; the mesh
	// changes epochs every EpochLength blocks, and a validator added to or
	// removed from the chain's set (allegro-dev validators) joins or leaves
	// at the next epoch. 0: a committee file, one epoch.
	EpochLength uint64
	// Spares are validators beyond Validators with keys, bindings and a
	// running sidecar but outside the chain's genesis set: each joins the
	// committee once added on chain (its consensus key is
	// Dir/validator-<i>/consensus.key). Needs EpochLength.
	Spares int
	// Logger receives the nodes' logs (nil: discarded).
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Validators == 0 {
		c.Validators = 4
	}
	if c.BlockPeriod == 0 {
		c.BlockPeriod = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("devnet: Dir must be set")
	case c.Validators < 1 || c.Validators > 100:
		return fmt.Errorf("devnet: Validators must be between 1 and 100, got %d", c.Validators)
	case c.BlockPeriod < 50*time.Millisecond:
		return fmt.Errorf("devnet: BlockPeriod must be at least 50ms, got %s", c.BlockPeriod)
	case c.Spares < 0 || c.Spares > 10:
		return fmt.Errorf("devnet: Spares must be between 0 and 10, got %d", c.Spares)
	case c.Spares > 0 && c.EpochLength == 0:
		return errors.New("devnet: Spares join through the chain's validator set: they need EpochLength")
	}
	return nil
}

// Devnet is a running local network.
type Devnet struct {
	Config        Config
	Chain         *devchain.Chain
	Runners       []*node.Runner
	Committee     *qc.Committee // the first epoch's
	CommitteeFile string
	// BindingsDir holds the sidecar key bindings (with EpochLength).
	BindingsDir string
	// File is the committee file (with EpochLength: the network file whose
	// members are an address book).
	File *committee.File
}

// Nodes returns the running node of every sidecar that is in the current
// committee.
func (d *Devnet) Nodes() []*node.Node {
	var out []*node.Node
	for _, r := range d.Runners {
		if n := r.Node(); n != nil {
			out = append(out, n)
		}
	}
	return out
}

// Start creates the folder's files (keeping existing keys, so a devnet can be
// restarted on the same folder) and starts the chain and every sidecar.
func Start(ctx context.Context, cfg Config) (*Devnet, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	d := &Devnet{Config: cfg}
	var err error
	f := &committee.File{ChainID: devchain.DefaultChainID, Epoch: 1, QCShards: 16, TestNetwork: true, FeeModel: tempo.FeeModelNative}
	if cfg.EpochLength > 0 {
		f.EpochLength, f.CommitteeSource = cfg.EpochLength, committee.SourceChain
		d.BindingsDir = filepath.Join(cfg.Dir, "bindings")
	}
	var genesis []tempo.Validator
	type member struct {
		name, dir, key string
		p2pPort        int
		apiPort        int
	}
	members := make([]member, cfg.Validators+cfg.Spares)
	for i := range members {
		m := &members[i]
		m.name = fmt.Sprintf("validator-%d", i)
		m.dir = filepath.Join(cfg.Dir, m.name)
		m.key = filepath.Join(m.dir, "validator.key")
		if m.p2pPort, err = port(cfg.P2PBasePort, i); err != nil {
			return nil, err
		}
		if m.apiPort, err = port(cfg.APIBasePort, i); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(m.dir, 0o700); err != nil {
			return nil, err
		}
		if _, statErr := os.Stat(m.key); errors.Is(statErr, os.ErrNotExist) {
			key, err := committee.GenerateKey()
			if err != nil {
				return nil, err
			}
			if err := committee.WriteKeyFile(m.key, m.name, key); err != nil {
				return nil, err
			}
		}
		_, key, err := committee.LoadKeyFile(m.key)
		if err != nil {
			return nil, err
		}
		if cfg.EpochLength > 0 {
			consensus, err := loadOrCreateKey(filepath.Join(m.dir, "consensus.key"), m.name)
			if err != nil {
				return nil, err
			}
			b, err := qc.SignBinding(consensus, key, f.ChainID, 0)
			if err != nil {
				return nil, err
			}
			if _, err := committee.AddBinding(d.BindingsDir, f.ChainID, b); err != nil {
				return nil, err
			}
			if i < cfg.Validators {
				genesis = append(genesis, tempo.Validator{PublicKey: b.ConsensusKey, Active: true,
					ValidatorAddress: devkit.ValidatorAddress(b.ConsensusKey), InboundAddress: fmt.Sprintf("127.0.0.1:%d", m.p2pPort)})
			}
		}
		f.Members = append(f.Members, committee.Member{
			Name: m.name, PublicKey: hex.EncodeToString(key.Public().(ed25519.PublicKey)),
			Addrs: []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", m.p2pPort)},
		})
	}
	d.Chain, err = devchain.New(devchain.Config{BlockPeriod: cfg.BlockPeriod, HTTPPort: cfg.ChainPort, DataDir: filepath.Join(cfg.Dir, "chain"), Validators: genesis})
	if err != nil {
		return nil, err
	}
	if err := d.Chain.Start(ctx); err != nil {
		return nil, fmt.Errorf("start dev chain: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			d.Stop(context.Background())
		}
	}()
	d.CommitteeFile, d.File = filepath.Join(cfg.Dir, "committee.toml"), f
	if err := f.Write(d.CommitteeFile); err != nil {
		return nil, err
	}
	if d.Committee, err = f.Committee(); err != nil {
		return nil, err
	}
	for _, m := range members {
		ncfg := node.DefaultConfig()
		ncfg.DataDir = m.dir
		// Every validator of a devnet is in this process: no doppelganger.
		ncfg.Sidecar.DoppelgangerWindow = 0
		ncfg.KeyFile = m.key
		ncfg.CommitteeFile = d.CommitteeFile
		ncfg.Chain.URL = d.Chain.WSEndpoint()
		ncfg.P2P = p2p.LocalConfig()
		ncfg.P2P.ListenAddrs = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", m.p2pPort)}
		ncfg.API.ListenAddr = fmt.Sprintf("127.0.0.1:%d", m.apiPort)
		ncfg.BindingsDir = d.BindingsDir
		// The dashboard's payment form and demo button (a test network).
		r, err := node.NewRunner(ncfg, node.WithLogger(cfg.Logger.With("node", m.name)), node.WithAPIExtension(devwallet.Extension()))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
		if err := r.Start(ctx); err != nil {
			return nil, fmt.Errorf("start %s: %w", m.name, err)
		}
		d.Runners = append(d.Runners, r)
	}
	if nodes := d.Nodes(); cfg.EpochLength > 0 && len(nodes) > 0 {
		d.Committee = nodes[0].Sidecar.Validator().Committee()
	}
	ok = true
	return d, nil
}

// port returns base+i, or a free port when base is 0 (freeport.Draw: not
// from the ephemeral range, where anything on the machine connecting out
// could take it before the node listens).
func port(base, i int) (int, error) {
	if base != 0 {
		return base + i, nil
	}
	return freeport.Draw()
}

// APIAddrs returns every sidecar's API address (host:port).
func (d *Devnet) APIAddrs() []string {
	nodes := d.Nodes()
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.API.Addr().String()
	}
	return out
}

// Stop stops the sidecars, then the chain.
func (d *Devnet) Stop(ctx context.Context) error {
	var errs []error
	for i := len(d.Runners) - 1; i >= 0; i-- {
		errs = append(errs, d.Runners[i].Stop(ctx))
	}
	if d.Chain != nil {
		errs = append(errs, d.Chain.Stop(ctx))
	}
	return errors.Join(errs...)
}

// Describe writes where everything runs.
func (d *Devnet) Describe(w io.Writer) {
	fmt.Fprintf(w, "dev chain %d: %s (block every %s)\n", d.Chain.ChainID(), d.Chain.HTTPEndpoint(), d.Config.BlockPeriod)
	fmt.Fprintf(w, "committee: %s (%d validators, quorum %d)\n", d.CommitteeFile, d.Committee.N(), d.Committee.Quorum())
	for _, n := range d.Nodes() {
		m := n.Sidecar.Mesh()
		var addr string
		if addrs := m.Host().Addrs(); len(addrs) > 0 {
			addr = addrs[0].String() + "/p2p/" + m.ID().String()
		}
		fmt.Fprintf(w, "  %-12s api http://%-21s mesh %s\n", n.Sidecar.Validator().Signer().Name(), n.API.Addr(), addr)
	}
	if nodes := d.Nodes(); len(nodes) > 0 {
		fmt.Fprintf(w, "dashboard: http://%s/ (every sidecar serves one)\n", nodes[0].API.Addr())
	}
	if d.Config.EpochLength > 0 {
		fmt.Fprintf(w, "epochs: %d blocks; committees from the chain's validator set (bindings in %s)\n", d.Config.EpochLength, d.BindingsDir)
		for i := d.Config.Validators; i < len(d.Runners); i++ {
			fmt.Fprintf(w, "  validator-%d (spare) joins once added: allegro-dev validators add --rpc %s --key-file %s\n",
				i, d.Chain.HTTPEndpoint(), filepath.Join(d.Config.Dir, fmt.Sprintf("validator-%d", i), "consensus.key"))
		}
	}
}

// loadOrCreateKey reads the key file at path, creating it first if missing.
func loadOrCreateKey(path, name string) (ed25519.PrivateKey, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		key, err := committee.GenerateKey()
		if err != nil {
			return nil, err
		}
		if err := committee.WriteKeyFile(path, name, key); err != nil {
			return nil, err
		}
	}
	_, key, err := committee.LoadKeyFile(path)
	return key, err
}

// AddValidator adds the consensus key pub to the dev chain's validator
// set, as the ValidatorConfig's owner, and waits for the transaction: the
// validator joins the committee of the first epoch whose committee block
// follows (with a binding of its sidecar key).
func (d *Devnet) AddValidator(ctx context.Context, pub [32]byte) error {
	data, err := tempo.AddValidatorCalldata(tempo.Validator{PublicKey: pub, Active: true, ValidatorAddress: devkit.ValidatorAddress(pub)})
	if err != nil {
		return err
	}
	ec, err := ethclient.DialContext(ctx, d.Chain.HTTPEndpoint())
	if err != nil {
		return fmt.Errorf("devnet: dial the dev chain: %w", err)
	}
	defer ec.Close()
	return devkit.OwnerCall(ctx, ec, data)
}
