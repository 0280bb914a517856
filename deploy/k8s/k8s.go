// Package k8s generates Kubernetes manifests for an Allegro test network,
// so one can span several hosts: `allegro-dev testnet gen --format k8s`. It
// is the multi-host sibling of package testnet (docker compose on one
// host) and runs the same containers with the same ALLEGRO_* settings:
//
//   - the validator sidecars as one StatefulSet (pods <project>-v-1 ...
//     <project>-v-N, validator vI in pod <project>-v-I), each with its own
//     PersistentVolumeClaim for its data directory;
//   - a headless Service giving every sidecar pod a stable DNS name, which
//     the committee file lists as the member's libp2p addresses
//     (/dns4/<pod>.<service>.<namespace>.svc.<cluster domain>/tcp/4001 and
//     its QUIC twin), and a Service for the client API;
//   - the dev chain (`allegro-dev devchain`) as a one-pod StatefulSet with
//     its own claim and a Service;
//   - the committee as a ConfigMap and the validator keys as a Secret. An
//     init container installs the pod's own key into its data volume with
//     mode 0600 (`allegro-dev testnet install-keys`, what the compose
//     file's "keys" service runs), since sidecars refuse key files that
//     group or others may read;
//   - light clients (`allegro watch`) as Deployments.
//
// The output is plain manifests, not a Helm chart: one multi-document file
// (testnet.yaml) that `kubectl apply -f` takes, and a kustomization.yaml
// for `kubectl apply -k` and for an operator's own patches (storage,
// resources, node selection). Everything that varies (keys, committee,
// names) is fixed when the network is generated, so a chart's templating
// would add a second configuration language without a value to fill in.
//
// Every object is built from the typed Kubernetes API structs and then
// marshalled, so the tests' strict decoding back into those types guards
// both the field names and the marshalling.
package k8s

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/deploy/testnet"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
)

// Defaults of DefaultConfig.
const (
	DefaultNamespace       = "allegro-testnet"
	DefaultClusterDomain   = "cluster.local"
	DefaultDataSize        = "1Gi"
	DefaultChainDataSize   = "2Gi"
	DefaultImagePullPolicy = corev1.PullIfNotPresent
)

// File names inside a generated directory.
const (
	// ManifestsFile holds every object, one YAML document each, in the
	// order kubectl should create them.
	ManifestsFile = "testnet.yaml"
	// KustomizationFile lists ManifestsFile for `kubectl apply -k`.
	KustomizationFile = "kustomization.yaml"
	// CommitteeFile is the committee (the ConfigMap's content), for tools
	// run outside the cluster.
	CommitteeFile = testnet.CommitteeFile
	// KeysDir holds the validator keys (the Secret's content).
	KeysDir = testnet.KeysDir
)

// Ports inside the containers, the same as in the compose file.
const (
	apiPort   = 7070
	chainPort = 8545
)

// Config describes the manifests to generate. Start from DefaultConfig.
type Config struct {
	// Testnet is the network: Validators, LightClients, Watch, TestNetwork,
	// Project (the prefix of every object name and the
	// app.kubernetes.io/instance label), Image, ChainID, BlockPeriod,
	// LoadAccounts, LogLevel and P2PPort mean what they mean for compose
	// and are validated by testnet.Config.Validate. Its docker-only fields
	// (host ports, subnets, Restart, monitoring) are not used: pods always
	// restart, and services are reached in the cluster. Byzantine must be
	// empty: a StatefulSet's pods share one template, so a mode for one
	// validator has no place to go.
	Testnet testnet.Config
	// Namespace of every object; the committee's addresses name it, so the
	// manifests work in this namespace only (default "allegro-testnet").
	Namespace string
	// ClusterDomain is the cluster's DNS domain (default "cluster.local").
	ClusterDomain string
	// StorageClass of the persistent volume claims; empty (the default)
	// means the cluster's default class.
	StorageClass string
	// DataSize is each sidecar's volume (default "1Gi"), ChainDataSize the
	// dev chain's (default "2Gi"): Kubernetes quantities.
	DataSize, ChainDataSize string
	// ImagePullPolicy of every container (default IfNotPresent: an image
	// loaded into the nodes by hand works; push a new tag for a new build).
	ImagePullPolicy corev1.PullPolicy
}

// DefaultConfig returns a 4-validator network with one light client in the
// namespace allegro-testnet.
func DefaultConfig() Config {
	return Config{
		Testnet:         testnet.DefaultConfig(),
		Namespace:       DefaultNamespace,
		ClusterDomain:   DefaultClusterDomain,
		DataSize:        DefaultDataSize,
		ChainDataSize:   DefaultChainDataSize,
		ImagePullPolicy: DefaultImagePullPolicy,
	}
}

// Object names, all derived from the project.
func (c Config) sidecarSet() string       { return c.Testnet.Project + "-v" }
func (c Config) meshService() string      { return c.Testnet.Project + "-mesh" }
func (c Config) apiService() string       { return c.Testnet.Project + "-api" }
func (c Config) chainName() string        { return c.Testnet.Project + "-devchain" }
func (c Config) committeeMap() string     { return c.Testnet.Project + "-committee" }
func (c Config) keysSecret() string       { return c.Testnet.Project + "-keys" }
func (c Config) lightClient(j int) string { return c.Testnet.Project + "-lc" + strconv.Itoa(j) }

// podName is the sidecar pod of validator i (1-based): the StatefulSet's
// ordinals start at 1, so pod <set>-i runs vi.
func (c Config) podName(i int) string { return c.sidecarSet() + "-" + strconv.Itoa(i) }

// serviceHost is a Service's name in the cluster's DNS.
func (c Config) serviceHost(svc string) string {
	return svc + "." + c.Namespace + ".svc." + c.ClusterDomain
}

// podHost is a sidecar pod's stable name under the headless Service.
func (c Config) podHost(pod string) string { return pod + "." + c.serviceHost(c.meshService()) }

// maxSetName bounds StatefulSet names: the controller labels each pod
// with <name>-<10-character hash>, which must be a 63-character label.
const maxSetName = 52

// Validate checks every field; errors name the field.
func (c Config) Validate() error {
	var errs []error
	if err := c.Testnet.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(c.Testnet.Byzantine) > 0 {
		errs = append(errs, errors.New("k8s: Testnet.Byzantine must be empty: Byzantine validators are for the docker test networks"))
	}
	if c.Testnet.EpochLength > 0 || c.Testnet.Spares > 0 {
		errs = append(errs, errors.New("k8s: Testnet.EpochLength and Spares must be 0: the manifests carry one fixed committee (committees from the chain run in the docker test networks)"))
	}
	for _, msg := range validation.IsDNS1123Label(c.Namespace) {
		errs = append(errs, fmt.Errorf("k8s: Namespace %q: %s", c.Namespace, msg))
	}
	for _, msg := range validation.IsDNS1123Subdomain(c.ClusterDomain) {
		errs = append(errs, fmt.Errorf("k8s: ClusterDomain %q: %s", c.ClusterDomain, msg))
	}
	if c.StorageClass != "" {
		for _, msg := range validation.IsDNS1123Subdomain(c.StorageClass) {
			errs = append(errs, fmt.Errorf("k8s: StorageClass %q: %s", c.StorageClass, msg))
		}
	}
	for _, q := range []struct{ field, val string }{{"DataSize", c.DataSize}, {"ChainDataSize", c.ChainDataSize}} {
		if v, err := resource.ParseQuantity(q.val); err != nil || v.Sign() <= 0 {
			errs = append(errs, fmt.Errorf("k8s: %s %q must be a positive quantity such as 1Gi", q.field, q.val))
		}
	}
	switch c.ImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, fmt.Errorf("k8s: ImagePullPolicy must be Always, IfNotPresent or Never, got %q", c.ImagePullPolicy))
	}
	// Names: Services are DNS-1035 labels, pods and the rest DNS-1123
	// labels. Checked only for a project testnet accepts, whose errors
	// were reported above.
	if c.Testnet.Project != "" {
		for _, svc := range []string{c.meshService(), c.apiService(), c.chainName()} {
			for _, msg := range validation.IsDNS1035Label(svc) {
				errs = append(errs, fmt.Errorf("k8s: Testnet.Project %q gives the Service name %q: %s", c.Testnet.Project, svc, msg))
			}
		}
		for _, set := range []string{c.sidecarSet(), c.chainName()} {
			if len(set) > maxSetName {
				errs = append(errs, fmt.Errorf("k8s: Testnet.Project %q gives the StatefulSet name %q, longer than %d characters", c.Testnet.Project, set, maxSetName))
			}
		}
		for _, name := range []string{c.podName(max(c.Testnet.Validators, 1)), c.lightClient(max(c.Testnet.LightClients, 1))} {
			for _, msg := range validation.IsDNS1123Label(name) {
				errs = append(errs, fmt.Errorf("k8s: Testnet.Project %q gives the name %q: %s", c.Testnet.Project, name, msg))
			}
		}
	}
	return errors.Join(errs...)
}

// Network describes generated manifests.
type Network struct {
	Namespace  string
	Project    string
	Validators int
	F, Quorum  int
	// ChainRPC is the dev chain's JSON-RPC URL inside the cluster
	// (WebSocket; HTTP on the same port).
	ChainRPC string
	Sidecars []Sidecar
	// LightClients are the light clients' Deployment names.
	LightClients []string
}

// Sidecar is one validator's pod.
type Sidecar struct {
	// Name is the committee name (v1..vN).
	Name string
	// Pod is the pod's name; Host its stable DNS name.
	Pod, Host string
	PublicKey string
	PeerID    string
	// Addrs are the member's libp2p addresses in the committee.
	Addrs []string
	// API is the pod's client API (gRPC and HTTP) inside the cluster.
	API string
}

// WriteSummary prints what was generated into dir and how to start it.
func (n *Network) WriteSummary(w io.Writer, dir string) {
	fmt.Fprintf(w, "wrote Kubernetes test network %q to %s: %d validators (f=%d, quorum %d), %d light client(s), namespace %s\n",
		n.Project, dir, n.Validators, n.F, n.Quorum, len(n.LightClients), n.Namespace)
	fmt.Fprintf(w, "  dev chain   %s\n", n.ChainRPC)
	for _, s := range n.Sidecars {
		fmt.Fprintf(w, "  %-11s pod %s  API %s\n", s.Name, s.Pod, s.API)
	}
	for _, lc := range n.LightClients {
		fmt.Fprintf(w, "  %s\n", lc)
	}
	fmt.Fprintf(w, "keys in %s are TEST keys (also in the Secret). Push the image to a registry every node can pull from, then:\n  kubectl apply -k %s     (or: kubectl apply -f %s)\n",
		filepath.Join(dir, KeysDir), dir, filepath.Join(dir, ManifestsFile))
}

// keysReadme is written beside the generated keys.
const keysReadme = `These validator keys were generated by "allegro-dev testnet gen --format k8s"
for a TEST network. They are not secret: never use them for anything else.

The Secret in testnet.yaml holds the same keys. Sidecars do not read these
files, nor the Secret directly: an init container of each sidecar pod copies
the pod's own key into its data volume with mode 0600.
`

// Generate writes the manifests into dir (created if missing; it must not
// already hold them): testnet.yaml, kustomization.yaml, committee.toml and
// keys/<name>.key (mode 0600). Keys are fresh random ed25519 keys.
func Generate(cfg Config, dir string) (*Network, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for _, name := range []string{ManifestsFile, KustomizationFile, CommitteeFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return nil, fmt.Errorf("k8s: %s already exists (generate into an empty directory)", filepath.Join(dir, name))
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, KeysDir), 0o755); err != nil {
		return nil, fmt.Errorf("k8s: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, KeysDir, "README.txt"), []byte(keysReadme), 0o644); err != nil {
		return nil, fmt.Errorf("k8s: %w", err)
	}
	net := &Network{
		Namespace: cfg.Namespace, Project: cfg.Testnet.Project, Validators: cfg.Testnet.Validators,
		ChainRPC: fmt.Sprintf("ws://%s:%d", cfg.serviceHost(cfg.chainName()), chainPort),
	}
	net.F = (cfg.Testnet.Validators - 1) / 3
	net.Quorum = cfg.Testnet.Validators - net.F
	keyFiles := map[string][]byte{}
	for i := 1; i <= cfg.Testnet.Validators; i++ {
		name := testnet.ValidatorName(i)
		key, err := committee.GenerateKey()
		if err != nil {
			return nil, fmt.Errorf("k8s: generate key: %w", err)
		}
		path := filepath.Join(dir, KeysDir, name+".key")
		if err := committee.WriteKeyFile(path, name, key); err != nil {
			return nil, fmt.Errorf("k8s: %w", err)
		}
		if keyFiles[name+".key"], err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("k8s: %w", err)
		}
		s, err := cfg.sidecar(i, key.Public().(ed25519.PublicKey))
		if err != nil {
			return nil, err
		}
		net.Sidecars = append(net.Sidecars, s)
	}
	for j := 1; j <= cfg.Testnet.LightClients; j++ {
		net.LightClients = append(net.LightClients, cfg.lightClient(j))
	}
	committeePath := filepath.Join(dir, CommitteeFile)
	if err := cfg.committee(net).Write(committeePath); err != nil {
		return nil, fmt.Errorf("k8s: write committee: %w", err)
	}
	committeeTOML, err := os.ReadFile(committeePath)
	if err != nil {
		return nil, fmt.Errorf("k8s: %w", err)
	}
	manifests, err := cfg.manifests(net, committeeTOML, keyFiles)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestsFile), manifests, 0o644); err != nil {
		return nil, fmt.Errorf("k8s: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, KustomizationFile), kustomization(), 0o644); err != nil {
		return nil, fmt.Errorf("k8s: %w", err)
	}
	return net, nil
}

func (c Config) sidecar(i int, pub ed25519.PublicKey) (Sidecar, error) {
	id, err := qc.ValidatorIDFromBytes(pub)
	if err != nil {
		return Sidecar{}, fmt.Errorf("k8s: %w", err)
	}
	pid, err := p2p.PeerIDFromValidatorID(id)
	if err != nil {
		return Sidecar{}, fmt.Errorf("k8s: %w", err)
	}
	pod := c.podName(i)
	host := c.podHost(pod)
	return Sidecar{
		Name: testnet.ValidatorName(i), Pod: pod, Host: host,
		PublicKey: hex.EncodeToString(pub), PeerID: pid.String(),
		Addrs: meshAddrs(host, c.Testnet.P2PPort),
		API:   fmt.Sprintf("%s:%d", host, apiPort),
	}, nil
}

// meshAddrs are a sidecar's libp2p addresses, TCP and QUIC, at host.
func meshAddrs(host string, port int) []string {
	return []string{
		fmt.Sprintf("/dns4/%s/tcp/%d", host, port),
		fmt.Sprintf("/dns4/%s/udp/%d/quic-v1", host, port),
	}
}

// committee is the network's committee file: the compose one's parameters,
// with each member at its pod's stable name.
func (c Config) committee(n *Network) *committee.File {
	// The embedded development chain pays gas in its native currency.
	f := &committee.File{ChainID: c.Testnet.ChainID, Epoch: 1, QCShards: 16, TestNetwork: c.Testnet.TestNetwork, FeeModel: tempo.FeeModelNative}
	for _, s := range n.Sidecars {
		f.Members = append(f.Members, committee.Member{Name: s.Name, PublicKey: s.PublicKey, Addrs: s.Addrs})
	}
	return f
}

// watched is what light client j (1-based) watches, as in compose.
func (c Config) watched(j int) []string {
	return testnet.WatchedAccounts(c.Testnet.LoadAccounts, c.Testnet.Watch, j-1)
}
