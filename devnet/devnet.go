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
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/devnet/devwallet"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devchain"
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
	}
	return nil
}

// Devnet is a running local network.
type Devnet struct {
	Config        Config
	Chain         *devchain.Chain
	Nodes         []*node.Node
	Committee     *qc.Committee
	CommitteeFile string
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
	d.Chain, err = devchain.New(devchain.Config{BlockPeriod: cfg.BlockPeriod, HTTPPort: cfg.ChainPort, DataDir: filepath.Join(cfg.Dir, "chain")})
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

	f := &committee.File{ChainID: d.Chain.ChainID().Uint64(), Epoch: 1, QCShards: 16, TestNetwork: true, FeeModel: tempo.FeeModelNative}
	type member struct {
		name, dir, key string
		p2pPort        int
		apiPort        int
	}
	members := make([]member, cfg.Validators)
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
		f.Members = append(f.Members, committee.Member{
			Name: m.name, PublicKey: hex.EncodeToString(key.Public().(ed25519.PublicKey)),
			Addrs: []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", m.p2pPort)},
		})
	}
	d.CommitteeFile = filepath.Join(cfg.Dir, "committee.toml")
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
		// The dashboard's payment form and demo button (a test network).
		n, err := node.New(ncfg, node.WithLogger(cfg.Logger.With("node", m.name)), node.WithAPIExtension(devwallet.Extension()))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
		if err := n.Start(ctx); err != nil {
			return nil, fmt.Errorf("start %s: %w", m.name, err)
		}
		d.Nodes = append(d.Nodes, n)
	}
	ok = true
	return d, nil
}

// port returns base+i, or a free port when base is 0.
func port(base, i int) (int, error) {
	if base != 0 {
		return base + i, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// APIAddrs returns every sidecar's API address (host:port).
func (d *Devnet) APIAddrs() []string {
	out := make([]string, len(d.Nodes))
	for i, n := range d.Nodes {
		out[i] = n.API.Addr().String()
	}
	return out
}

// Stop stops the sidecars, then the chain.
func (d *Devnet) Stop(ctx context.Context) error {
	var errs []error
	for i := len(d.Nodes) - 1; i >= 0; i-- {
		errs = append(errs, d.Nodes[i].Stop(ctx))
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
	for _, n := range d.Nodes {
		m := n.Sidecar.Mesh()
		var addr string
		if addrs := m.Host().Addrs(); len(addrs) > 0 {
			addr = addrs[0].String() + "/p2p/" + m.ID().String()
		}
		fmt.Fprintf(w, "  %-12s api http://%-21s mesh %s\n", n.Sidecar.Validator().Signer().Name(), n.API.Addr(), addr)
	}
	if len(d.Nodes) > 0 {
		fmt.Fprintf(w, "dashboard: http://%s/ (every sidecar serves one)\n", d.Nodes[0].API.Addr())
	}
}
