package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/allegro-mesh/allegro/internal/buildinfo"
	"github.com/allegro-mesh/allegro/internal/cli"
	"github.com/allegro-mesh/allegro/node"
)

func init() {
	app.Register("sidecar", "run a validator sidecar (config file, flags, ALLEGRO_* environment)", runSidecar)
}

// setting is a sidecar option settable by flag and environment variable; the
// flag wins over the variable, which wins over the config file.
type setting struct {
	flag, env, usage string
	apply            func(cfg *node.Config, v string) error
}

var sidecarSettings = []setting{
	{"data-dir", "ALLEGRO_DATA_DIR", "directory of the durable validator state", func(c *node.Config, v string) error { c.DataDir = v; return nil }},
	{"key", "ALLEGRO_KEY_FILE", "validator key file (default <data-dir>/validator.key)", func(c *node.Config, v string) error { c.KeyFile = v; return nil }},
	{"committee", "ALLEGRO_COMMITTEE_FILE", "committee file", func(c *node.Config, v string) error { c.CommitteeFile = v; return nil }},
	{"chain-rpc", "ALLEGRO_CHAIN_RPC", "chain node JSON-RPC URL (http:// or ws://)", func(c *node.Config, v string) error { c.Chain.URL = v; return nil }},
	{"api-listen", "ALLEGRO_API_LISTEN", "client API listen address (gRPC and HTTP)", func(c *node.Config, v string) error { c.API.ListenAddr = v; return nil }},
	{"api-max-conns-per-ip", "ALLEGRO_API_MAX_CONNS_PER_IP", "open API connections allowed from one client address; raise it behind a proxy or NAT, whose clients all share its address (default 128)", func(c *node.Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("not a number: %q", v)
		}
		c.API.MaxConnsPerIP = n
		return nil
	}},
	{"p2p-listen", "ALLEGRO_P2P_LISTEN", "comma-separated libp2p listen multiaddrs", func(c *node.Config, v string) error { c.P2P.ListenAddrs = cli.SplitList(v); return nil }},
	{"p2p-announce", "ALLEGRO_P2P_ANNOUNCE", "comma-separated multiaddrs announced to peers", func(c *node.Config, v string) error { c.P2P.AnnounceAddrs = cli.SplitList(v); return nil }},
	{"log-level", "ALLEGRO_LOG_LEVEL", "debug, info, warn or error (default info)", func(c *node.Config, v string) error { c.LogLevel = v; return nil }},
	{"log-format", "ALLEGRO_LOG_FORMAT", "text (logfmt) or json, one object per line (default text)", func(c *node.Config, v string) error { c.LogFormat = v; return nil }},
	{"memory-limit", "ALLEGRO_MEMORY_LIMIT", "Go soft memory limit: auto (90% of a container limit), a size such as 512MiB, or off (GOMEMLIMIT wins when set)", func(c *node.Config, v string) error { c.MemoryLimit = v; return nil }},
	{"doppelganger-window", "ALLEGRO_DOPPELGANGER_WINDOW", "after start, sign nothing for this long while watching the mesh for certificates by this key that this data directory never signed (another sidecar with the same key: then exit); 0 turns it off (default 5s)", func(c *node.Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("not a duration: %q", v)
		}
		c.Sidecar.DoppelgangerWindow = d
		return nil
	}},
	{"byzantine", "ALLEGRO_BYZANTINE", "TEST NETWORKS ONLY: misbehave on purpose (equivocate, invalid-signatures); refused unless the committee file has test_network = true", func(c *node.Config, v string) error { c.Byzantine.Mode = v; return nil }},
}

// loadSidecarConfig applies defaults, then the config file, then the
// environment, then flags.
func loadSidecarConfig(args []string, getenv func(string) string) (node.Config, error) {
	fs := app.Flags("sidecar", "[--config FILE] [flags]")
	configPath := fs.String("config", "", "TOML config file (env ALLEGRO_CONFIG)")
	values := make([]*string, len(sidecarSettings))
	for i, s := range sidecarSettings {
		values[i] = fs.String(s.flag, "", s.usage+" (env "+s.env+")")
	}
	if err := cli.Parse(fs, args); err != nil {
		return node.Config{}, err
	}
	if fs.NArg() > 0 {
		return node.Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfg := node.DefaultConfig()
	if *configPath == "" {
		*configPath = getenv("ALLEGRO_CONFIG")
	}
	if *configPath != "" {
		md, err := toml.DecodeFile(*configPath, &cfg)
		if err != nil {
			return cfg, fmt.Errorf("config file %s: %w", *configPath, err)
		}
		if undecoded := md.Undecoded(); len(undecoded) > 0 {
			return cfg, fmt.Errorf("config file %s: unknown key %q", *configPath, undecoded[0].String())
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for i, s := range sidecarSettings {
		v, from := *values[i], "--"+s.flag
		if !set[s.flag] {
			v, from = getenv(s.env), s.env
		}
		if v == "" {
			continue
		}
		if err := s.apply(&cfg, v); err != nil {
			return cfg, fmt.Errorf("%s: %w", from, err)
		}
	}
	return cfg, cfg.Validate()
}

func runSidecar(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, err := loadSidecarConfig(args, os.Getenv)
	if err != nil {
		return err
	}
	logger, err := cli.NewLogger(cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	limit, source, err := node.ApplyMemoryLimit(cfg, os.Getenv, node.ContainerMemoryLimit)
	if err != nil {
		return err
	}
	logger.Info("memory limit", "bytes", limit, "from", source)
	n, err := node.New(cfg, node.WithLogger(logger))
	if err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := n.Start(startCtx); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	info := n.Sidecar.Mesh()
	logger.Info("sidecar running", "version", buildinfo.Read().String(), "validator", n.Sidecar.Validator().Signer().Name(), "api", n.API.Addr().String(), "peer_id", info.ID().String())
	fmt.Fprintf(stdout, "sidecar %s: API http://%s  peer %s\n", n.Sidecar.Validator().Signer().Name(), n.API.Addr(), info.ID())
	var fatal error
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case fatal = <-n.Sidecar.Fatal():
		// Like Lighthouse's doppelganger protection: exit rather than run
		// on unable to sign, so the operator notices.
		logger.Error("stopping: this sidecar must not sign", "err", fatal)
	}
	stopCtx, cancelStop := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelStop()
	if err := n.Stop(stopCtx); fatal == nil {
		return err
	}
	return fatal
}

func init() {
	app.Register("version", "print the version, commit and Go version this binary was built from", func(_ context.Context, _ []string, w io.Writer) error {
		fmt.Fprintln(w, "allegro", buildinfo.Read())
		return nil
	})
}
