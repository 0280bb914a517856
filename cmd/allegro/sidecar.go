package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/allegro-mesh/allegro/internal/buildinfo"
	"github.com/allegro-mesh/allegro/internal/cli"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/p2p"
)

func init() {
	app.Register("sidecar", "run a validator sidecar (config file, flags, ALLEGRO_* environment)", runSidecar)
}

// setting is a sidecar setting that a flag and an environment variable can
// set besides the config file (key is its TOML key, as node.Settings names
// it); the flag wins over the variable, which wins over the file. Every
// other setting is set in the file only.
type setting struct {
	key, flag, env, usage string
}

var sidecarSettings = []setting{
	{"data_dir", "data-dir", "ALLEGRO_DATA_DIR", "directory of the durable validator state"},
	{"key_file", "key", "ALLEGRO_KEY_FILE", "validator key file (default <data-dir>/validator.key)"},
	{"committee_file", "committee", "ALLEGRO_COMMITTEE_FILE", "committee file (required)"},
	{"bindings_dir", "bindings", "ALLEGRO_BINDINGS_DIR", "directory of the validators' sidecar key bindings, when the committee comes from the chain (default <data-dir>/bindings)"},
	{"chain.url", "chain-rpc", "ALLEGRO_CHAIN_RPC", "chain node JSON-RPC URL, http(s):// or ws(s):// (required)"},
	{"api.listen_addr", "api-listen", "ALLEGRO_API_LISTEN", "client API listen address (gRPC and HTTP)"},
	{"api.max_conns_per_ip", "api-max-conns-per-ip", "ALLEGRO_API_MAX_CONNS_PER_IP", "open API connections allowed from one client address; raise it behind a proxy or NAT, whose clients all share its address"},
	{"api.metrics_listen_addr", "metrics-listen", "ALLEGRO_METRICS_LISTEN", "separate host:port serving Prometheus /metrics, which the API address then no longer serves (default: /metrics on the API address)"},
	{"p2p.listen_addrs", "p2p-listen", "ALLEGRO_P2P_LISTEN", "comma-separated libp2p listen multiaddrs (default: TCP and QUIC on the ports of this validator's committee entry)"},
	{"p2p.announce_addrs", "p2p-announce", "ALLEGRO_P2P_ANNOUNCE", "comma-separated multiaddrs announced to peers"},
	{"p2p.cert_routing", "cert-routing", "ALLEGRO_CERT_ROUTING", "where this validator sends its certificates: bulletin (SPEC §5 revision 2) or entry (the proposed revision 3, experimental: docs/proposal-linear-certificates.md)"},
	{"log_level", "log-level", "ALLEGRO_LOG_LEVEL", "debug, info, warn or error"},
	{"log_format", "log-format", "ALLEGRO_LOG_FORMAT", "text (logfmt) or json, one object per line"},
	{"memory_limit", "memory-limit", "ALLEGRO_MEMORY_LIMIT", "Go soft memory limit: auto (90% of a container limit), a size such as 512MiB, or off (GOMEMLIMIT wins when set)"},
	{"gc_percent", "gc-percent", "ALLEGRO_GC_PERCENT", "collector heap growth as GOGC sets it, 10 to 1000: the heap may grow to (1 + N/100) times the live heap between collections (GOGC wins when set)"},
	{"sidecar.doppelganger_window", "doppelganger-window", "ALLEGRO_DOPPELGANGER_WINDOW", "after start, sign nothing for this long while watching the mesh for certificates by this key that this data directory never signed (another sidecar with the same key: then exit); 0 turns it off"},
	{"byzantine.mode", "byzantine", "ALLEGRO_BYZANTINE", "TEST NETWORKS ONLY: misbehave on purpose (equivocate, invalid-signatures); refused unless the committee file has test_network = true"},
}

// settingByKey returns the flag and variable of the setting key, if any.
func settingByKey(key string) (setting, bool) {
	for _, s := range sidecarSettings {
		if s.key == key {
			return s, true
		}
	}
	return setting{}, false
}

// loadSidecarConfig applies defaults, then the config file, then the
// environment, then flags.
func loadSidecarConfig(args []string, getenv func(string) string) (node.Config, error) {
	return loadConfig("sidecar", args, getenv)
}

// loadConfig is loadSidecarConfig for subcommand name, which takes the
// sidecar's flags.
func loadConfig(name string, args []string, getenv func(string) string) (node.Config, error) {
	fs := app.Flags(name, "[--config FILE] [flags]")
	configPath := fs.String("config", "", "TOML config file; allegro config dump writes one with every setting (env ALLEGRO_CONFIG)")
	defaults := map[string]string{}
	for _, s := range node.Settings(node.DefaultConfig()) {
		defaults[s.Key] = flagText(s.Value)
	}
	values := make([]*string, len(sidecarSettings))
	for i, s := range sidecarSettings {
		values[i] = fs.String(s.flag, "", s.usage+" (env "+s.env+", TOML "+tomlName(s.key)+")")
		// Shown by -h; read only when the flag is given.
		if !strings.Contains(s.usage, "(default") {
			fs.Lookup(s.flag).DefValue = defaults[s.key]
		}
	}
	usage := fs.Usage
	fs.Usage = func() {
		usage()
		fmt.Fprintln(fs.Output(), "\nEvery setting, with its default and TOML key: allegro config dump, docs/configuration.md.")
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
			return cfg, fmt.Errorf("config file %s: %s", *configPath, oneLine(err))
		}
		if undecoded := md.Undecoded(); len(undecoded) > 0 {
			return cfg, fmt.Errorf("config file %s: unknown key %q (allegro config dump lists every key)", *configPath, undecoded[0].String())
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
		if err := node.SetSetting(&cfg, s.key, v); err != nil {
			return cfg, fmt.Errorf("%s: %w", from, err)
		}
	}
	return cfg, cfg.Validate()
}

// tomlName writes a dotted key as it appears in a file: "[chain] url".
func tomlName(key string) string {
	if i := strings.LastIndex(key, "."); i >= 0 {
		return "[" + key[:i] + "] " + key[i+1:]
	}
	return key
}

// flagText writes a setting's value as a flag takes it.
func flagText(v any) string {
	switch v := v.(type) {
	case []string:
		return strings.Join(v, ",")
	case time.Duration:
		return v.String()
	}
	return fmt.Sprint(v)
}

// oneLine folds a multi-line error (a TOML parse error quotes the line)
// into one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// describeStartupError names the flag, variable and TOML key of the
// setting at fault, so the operator knows where to fix it.
func describeStartupError(err error) error {
	var ce *node.ConfigError
	if !errors.As(err, &ce) {
		return err
	}
	where := "TOML " + tomlName(ce.Setting)
	if s, ok := settingByKey(ce.Setting); ok {
		where = "--" + s.flag + ", " + s.env + ", " + where
	}
	msg := fmt.Sprintf("%s (%s): %s", ce.Setting, where, ce.Problem)
	if ce.Fix != "" {
		msg += "; fix: " + ce.Fix
	}
	return errors.New(msg)
}

func runSidecar(ctx context.Context, args []string, stdout io.Writer) error {
	err := sidecar(ctx, args, stdout)
	return describeStartupError(err)
}

func sidecar(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, err := loadSidecarConfig(args, os.Getenv)
	if err != nil {
		return err
	}
	logger, err := cli.NewLogger(cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	p2p.LogLibp2pTo(logger)
	limit, source, err := node.ApplyMemoryLimit(cfg, os.Getenv, node.ContainerMemoryLimit)
	if err != nil {
		return err
	}
	gcPercent, gcSource, err := node.ApplyGCPercent(cfg, os.Getenv)
	if err != nil {
		return err
	}
	r, err := node.NewRunner(cfg, node.WithLogger(logger))
	if err != nil {
		return err
	}
	logger.Info("memory limit", "bytes", limit, "from", source, "gc_percent", gcPercent, "gc_percent_from", gcSource)
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := r.Start(startCtx); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if n := r.Node(); n != nil {
		info := n.Sidecar.Mesh()
		metrics := n.API.Addr().String()
		if a := n.API.MetricsAddr(); a != nil {
			metrics = a.String()
		}
		e, _ := r.Epoch()
		logger.Info("sidecar running", "version", buildinfo.Read().String(), "validator", n.Sidecar.Validator().Signer().Name(), "api", n.API.Addr().String(), "metrics", metrics, "peer_id", info.ID().String(), "epoch", e, "epochs_follow_chain", r.Epochs())
		fmt.Fprintf(stdout, "sidecar %s: API http://%s  peer %s\n", n.Sidecar.Validator().Signer().Name(), n.API.Addr(), info.ID())
	} else {
		// The Runner logged why; the API comes up with the first epoch whose
		// committee holds this validator.
		fmt.Fprintf(stdout, "sidecar: waiting for an epoch whose committee holds this validator (API %s then)\n", cfg.API.ListenAddr)
	}
	var fatal error
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case fatal = <-r.Fatal():
		// Like Lighthouse's doppelganger protection: exit rather than run
		// on unable to sign, so the operator notices.
		logger.Error("stopping: this sidecar must not sign", "err", fatal)
	}
	stopCtx, cancelStop := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelStop()
	if err := r.Stop(stopCtx); fatal == nil {
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
