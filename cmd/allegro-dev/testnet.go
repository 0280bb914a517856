package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/allegro-mesh/allegro/deploy/k8s"
	"github.com/allegro-mesh/allegro/deploy/testnet"
	"github.com/allegro-mesh/allegro/internal/cli"
)

func init() {
	app.Register("testnet", "generate a docker-compose, docker swarm or Kubernetes test network (allegro-dev testnet gen [--format swarm|k8s] --validators N --out DIR); install its keys (testnet install-keys, run by the network itself)", runTestnet)
}

// byzantineFlag collects repeated --byzantine NAME=MODE values.
type byzantineFlag map[string]string

func (b byzantineFlag) String() string { return fmt.Sprint(len(b), " Byzantine validators") }

func (b byzantineFlag) Set(v string) error {
	name, mode, ok := strings.Cut(v, "=")
	if !ok || name == "" || mode == "" {
		return errors.New("want NAME=MODE, such as v4=equivocate")
	}
	b[name] = mode
	return nil
}

func runTestnet(ctx context.Context, args []string, stdout io.Writer) error {
	switch {
	case len(args) > 0 && args[0] == "gen":
		return runTestnetGen(ctx, args[1:], stdout)
	case len(args) > 0 && args[0] == "install-keys":
		return runTestnetInstallKeys(args[1:], stdout)
	}
	fmt.Fprintln(stdout, "usage: allegro-dev testnet gen --out DIR [flags]   (allegro-dev testnet gen -h for the flags)")
	fmt.Fprintln(stdout, "       allegro-dev testnet install-keys --keys DIR --into DIR NAME...   (what a testnet's keys service runs)")
	return cli.ErrUsage
}

// runTestnetInstallKeys copies validator keys into their data volumes with
// mode 0600 (the keys service of a generated compose file runs it).
func runTestnetInstallKeys(args []string, stdout io.Writer) error {
	fs := app.Flags("testnet install-keys", "--keys DIR --into DIR [--bindings DIR] NAME...")
	keys := fs.String("keys", "", "directory holding NAME.key files (required)")
	bindings := fs.String("bindings", "", "directory of binding files to copy into each DIR/NAME/bindings too (a network whose committees come from the chain)")
	into := fs.String("into", "", "directory of the data volumes: NAME's key goes to DIR/NAME/"+testnet.InstalledKeyFile+" (required)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *keys == "" || *into == "" || fs.NArg() == 0 {
		return errors.New("--keys, --into and at least one validator name are required")
	}
	if err := testnet.InstallKeys(*keys, *into, fs.Args()); err != nil {
		return err
	}
	if *bindings != "" {
		if err := testnet.InstallBindings(*bindings, *into, fs.Args()); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "installed %d validator key(s) into %s (mode 0600)\n", fs.NArg(), *into)
	return nil
}

func runTestnetGen(_ context.Context, args []string, stdout io.Writer) error {
	d := testnet.DefaultConfig()
	fs := app.Flags("testnet gen", "--out DIR [--validators N] [--light-clients K] [--byzantine NAME=MODE] [flags]")
	out := fs.String("out", "", "directory to write keys/, committee.toml, docker-compose.yml and testnet.json into (required)")
	format := fs.String("format", "compose", "compose (docker-compose.yml, one host), swarm (docker-stack.yml for docker stack deploy, any number of hosts; no --epoch-length, --spares or monitoring) or k8s (Kubernetes manifests testnet.yaml and kustomization.yaml, any number of hosts; host ports, subnets, --restart and monitoring do not apply)")
	kd := k8s.DefaultConfig()
	namespace := fs.String("namespace", kd.Namespace, "k8s: namespace of every object (the committee's addresses name it)")
	clusterDomain := fs.String("cluster-domain", kd.ClusterDomain, "k8s: the cluster's DNS domain")
	storageClass := fs.String("storage-class", "", "k8s: storage class of the data volumes (default: the cluster's default class)")
	cfg := d
	cfg.Byzantine = map[string]string{}
	fs.IntVar(&cfg.Validators, "validators", d.Validators, "number of validators n (quorum n - floor((n-1)/3))")
	fs.Uint64Var(&cfg.EpochLength, "epoch-length", d.EpochLength, "blocks per epoch: committees then come from the dev chain's validator set (0: one fixed committee)")
	fs.IntVar(&cfg.Spares, "spares", d.Spares, "validators with keys and bindings outside the genesis set, which join once added on chain (needs --epoch-length)")
	fs.IntVar(&cfg.LightClients, "light-clients", d.LightClients, "number of light-client containers (allegro watch)")
	fs.IntVar(&cfg.Watch, "watch", d.Watch, "load accounts each light client watches")
	fs.Var(byzantineFlag(cfg.Byzantine), "byzantine", "TEST NETWORKS ONLY: validator NAME runs Byzantine MODE (equivocate or invalid-signatures) by default; repeat")
	fs.BoolVar(&cfg.TestNetwork, "test-network", d.TestNetwork, "mark the committee as a test network (needed by --byzantine)")
	fs.StringVar(&cfg.Project, "project", d.Project, "compose project name; prefixes every container, network and volume")
	fs.StringVar(&cfg.Image, "image", d.Image, "allegro image with allegro-dev (built by deploy/build-image.sh --dev; nothing is pulled)")
	fs.IntVar(&cfg.APIPortBase, "api-port-base", d.APIPortBase, "host port of v1's API on 127.0.0.1; vi uses base+i-1")
	fs.IntVar(&cfg.ChainPort, "chain-port", d.ChainPort, "host port of the dev chain's JSON-RPC on 127.0.0.1")
	fs.StringVar(&cfg.SubnetPrefix, "subnet-prefix", d.SubnetPrefix, "first two octets of the three /24 networks (chain .0, mesh-a .1, mesh-b .2)")
	fs.Uint64Var(&cfg.ChainID, "chain-id", d.ChainID, "chain id")
	fs.DurationVar(&cfg.BlockPeriod, "block-period", d.BlockPeriod, "dev chain block time")
	fs.IntVar(&cfg.LoadAccounts, "load-accounts", d.LoadAccounts, "funded load-test accounts on the dev chain")
	fs.StringVar(&cfg.LogLevel, "log-level", d.LogLevel, "sidecar and light-client log level")
	fs.IntVar(&cfg.P2PPort, "p2p-port", d.P2PPort, "sidecars' libp2p port (TCP and QUIC) inside the containers")
	fs.StringVar(&cfg.Restart, "restart", d.Restart, "restart policy of the dev chain and sidecars: no, on-failure, always or unless-stopped (docker stop and kill suspend it)")
	fs.StringVar(&cfg.PrometheusImage, "prometheus-image", d.PrometheusImage, "Prometheus image of the monitoring profile (pulled only when that profile starts)")
	fs.StringVar(&cfg.GrafanaImage, "grafana-image", d.GrafanaImage, "Grafana image of the monitoring profile (pulled only when that profile starts)")
	fs.IntVar(&cfg.PrometheusPort, "prometheus-port", d.PrometheusPort, "host port of Prometheus on 127.0.0.1 (monitoring profile)")
	fs.IntVar(&cfg.GrafanaPort, "grafana-port", d.GrafanaPort, "host port of Grafana on 127.0.0.1 (monitoring profile)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *out == "" {
		return errors.New("--out is required")
	}
	switch *format {
	case "compose":
	case "swarm":
		m, err := testnet.GenerateSwarm(cfg, *out)
		if err != nil {
			return err
		}
		writeSwarmSummary(stdout, m, *out)
		return nil
	case "k8s":
		kc := kd
		kc.Testnet, kc.Namespace, kc.ClusterDomain, kc.StorageClass = cfg, *namespace, *clusterDomain, *storageClass
		n, err := k8s.Generate(kc, *out)
		if err != nil {
			return err
		}
		n.WriteSummary(stdout, *out)
		return nil
	default:
		return fmt.Errorf("--format must be compose, swarm or k8s, got %q", *format)
	}
	m, err := testnet.Generate(cfg, *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote testnet %q to %s: %d validators (f=%d, quorum %d), %d light client(s)\n",
		m.Project, *out, m.Validators, m.F, m.Quorum, len(m.LightClient))
	fmt.Fprintf(stdout, "  dev chain   %s  (JSON-RPC %s)\n", m.Chain.Container, m.Chain.RPC)
	if m.EpochLength > 0 {
		fmt.Fprintf(stdout, "  epochs of %d blocks; committees from the dev chain's validator set (bindings in %s)\n", m.EpochLength, filepath.Join(*out, testnet.BindingsDir))
	}
	for _, s := range m.Sidecars {
		extra := ""
		if s.Byzantine != "" {
			extra = fmt.Sprintf("  BYZANTINE %s (override with %s)", s.Byzantine, testnet.ByzantineEnv(s.Name))
		}
		if s.Spare {
			extra += fmt.Sprintf("  SPARE: joins once added on chain (allegro-dev validators add --rpc %s --key-file %s)",
				m.Chain.RPC, filepath.Join(*out, s.ConsensusKeyFile))
		}
		fmt.Fprintf(stdout, "  %-11s API %s  mesh %s, %s%s\n", s.Name, s.API, s.MeshAIP, s.MeshBIP, extra)
	}
	for _, lc := range m.LightClient {
		fmt.Fprintf(stdout, "  %-11s watches %d addresses\n", lc.Name, len(lc.Watch))
	}
	fmt.Fprintf(stdout, "keys in %s are TEST keys. Start it (nothing is pulled; build the image first):\n  cd %s && docker-compose -p %s up -d\n",
		filepath.Join(*out, testnet.KeysDir), *out, m.Project)
	fmt.Fprintf(stdout, "Prometheus (%s, scraping every sidecar) and Grafana, whose images are pulled: add --profile %s (http://127.0.0.1:%d, http://127.0.0.1:%d)\n",
		testnet.PrometheusFile, testnet.MonitoringProfile, cfg.PrometheusPort, cfg.GrafanaPort)
	return nil
}

// writeSwarmSummary prints what GenerateSwarm wrote and how to start it.
func writeSwarmSummary(w io.Writer, m *testnet.Manifest, dir string) {
	fmt.Fprintf(w, "wrote swarm stack %q to %s: %d validators (f=%d, quorum %d), %d light client(s)\n",
		m.Stack, dir, m.Validators, m.F, m.Quorum, len(m.LightClient))
	fmt.Fprintf(w, "  dev chain   service %s  (JSON-RPC on port %s of its node)\n", testnet.SwarmService(m.Stack, m.Chain.Service), m.Chain.RPC[strings.LastIndex(m.Chain.RPC, ":")+1:])
	for _, s := range m.Sidecars {
		extra := ""
		if s.Byzantine != "" {
			extra = fmt.Sprintf("  BYZANTINE %s (override with %s)", s.Byzantine, testnet.ByzantineEnv(s.Name))
		}
		fmt.Fprintf(w, "  %-11s service %s  API port %s  mesh %s, %s%s\n", s.Name, testnet.SwarmService(m.Stack, s.Name),
			s.API[strings.LastIndex(s.API, ":")+1:], s.MeshAIP, s.MeshBIP, extra)
	}
	for _, lc := range m.LightClient {
		fmt.Fprintf(w, "  %-11s watches %d addresses\n", lc.Name, len(lc.Watch))
	}
	fmt.Fprintf(w, "keys in %s are TEST keys (swarm secrets once deployed). Every node needs the image; on a manager:\n  cd %s && docker stack deploy --resolve-image never -c %s %s\n",
		filepath.Join(dir, testnet.KeysDir), dir, testnet.StackFile, m.Stack)
}
