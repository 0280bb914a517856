// Package testnet generates a containerised Allegro test network: validator
// keys, the committee file, and one docker-compose file with a private
// network, the dev chain as its own container, the validator sidecars and
// optional light clients (`allegro watch`). `allegro-dev testnet gen` is its
// command line; the end-to-end runner (./e2e) uses it directly.
//
// Topology. Every container of a testnet is on up to three bridge networks
// with static addresses:
//
//   - chain (<prefix>.0.0/24): the dev chain, every sidecar and light client.
//     Sidecars reach the chain's JSON-RPC here and the API ports are
//     published from here (it is the containers' default route).
//   - mesh-a and mesh-b (<prefix>.1.0/24 and <prefix>.2.0/24): the libp2p
//     mesh. Each sidecar announces one address on each, and the committee
//     file lists both. Disconnecting a sidecar from both cuts it off the
//     mesh while it still sees the chain; disconnecting one half of the
//     committee from mesh-a and the other half from mesh-b splits the mesh
//     into two halves (each side still talks over its remaining network),
//     without iptables.
//
// Epochs. With an epoch length the committee of each epoch comes from the
// dev chain's validator set (SPEC §5a): every validator also has a
// consensus key, in the chain's genesis set, and a binding of its sidecar
// key; spares (v<n+1>...) have keys and bindings but are not in the genesis
// set, so their sidecars wait outside the committee until a runner adds
// them on chain.
//
// Names. Containers are <project>-<service> (services devchain, v1..vN,
// lc1..lcK); networks and volumes are <project>-<name>, so a project name
// starting with "allegro-e2e-" makes every object easy to find and remove.
package testnet

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/sidecar"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devchain"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// Defaults of DefaultConfig.
const (
	DefaultValidators   = 4
	DefaultLightClients = 1
	DefaultProject      = "allegro-e2e-testnet"
	DefaultImage        = "allegro-e2e-allegro:dev"
	DefaultAPIPortBase  = 7071
	DefaultChainPort    = 8545
	DefaultSubnetPrefix = "10.231"
	DefaultP2PPort      = 4001
	DefaultWatch        = 8
	DefaultRestart      = "unless-stopped"
	// The monitoring profile's images: pulled only when the profile is
	// started (docker-compose --profile monitoring up -d).
	DefaultPrometheusImage = "prom/prometheus:v2.55.1"
	DefaultGrafanaImage    = "grafana/grafana:11.3.0"
	DefaultPrometheusPort  = 9090
	DefaultGrafanaPort     = 3000
	// MonitoringProfile is the compose profile of the Prometheus and
	// Grafana services, off by default.
	MonitoringProfile = "monitoring"
	// MaxValidators bounds the committee size (addresses .11 to .99 of each
	// /24 are for validators).
	MaxValidators = 64
	// MaxLightClients bounds the light clients (addresses .101 to .199).
	MaxLightClients = 32
	// minEpochLength leaves an epoch room for its handover: a shorter one
	// would spend most of its blocks changing committees.
	minEpochLength = 4

	// Ports inside the containers.
	containerAPIPort        = 7070
	containerChainPort      = 8545
	containerPrometheusPort = 9090
	containerGrafanaPort    = 3000
)

// File names inside a generated directory.
const (
	ComposeFile   = "docker-compose.yml"
	CommitteeFile = "committee.toml"
	// GenesisValidatorsFile lists the consensus keys of the dev chain's
	// genesis validator set (with an epoch length).
	GenesisValidatorsFile = "genesis-validators.toml"
	// BindingsDir holds every validator's sidecar key binding (with an
	// epoch length).
	BindingsDir  = "bindings"
	ManifestFile = "testnet.json"
	KeysDir      = "keys"
	// PrometheusFile scrapes every sidecar (the monitoring profile's
	// Prometheus reads it).
	PrometheusFile = "prometheus.yml"
	// GrafanaDir holds the monitoring profile's Grafana provisioning and
	// dashboard.
	GrafanaDir = "grafana"
)

// Config describes the testnet to generate. Start from DefaultConfig.
type Config struct {
	// Validators is the committee size n (default 4; 1 to MaxValidators).
	Validators int
	// EpochLength, when set, makes the network change epochs every
	// EpochLength blocks with committees derived from the dev chain's
	// validator set (committee_source = "chain"). Default 0: one fixed
	// committee, the committee file's.
	EpochLength uint64
	// Spares are validators beyond Validators (v<n+1>...) with keys,
	// bindings and containers but outside the genesis set: each joins the
	// committee once added on chain. Needs EpochLength. Default 0.
	Spares int
	// LightClients is the number of `allegro watch` containers (default 1;
	// 0 to MaxLightClients).
	LightClients int
	// Watch is how many load accounts each light client watches (default
	// 8): light client j (0-based) watches load accounts j*Watch ...
	// j*Watch+Watch-1, modulo LoadAccounts.
	Watch int
	// Byzantine maps validator names (v1..vN) to a Byzantine mode
	// (sidecar.ByzantineEquivocate or sidecar.ByzantineInvalidSignatures). The
	// mode is the default of the environment variable
	// ALLEGRO_BYZANTINE_<NAME> (see ByzantineEnv), so a runner can switch
	// it, or set it empty for an honest run, when it (re)creates the
	// container. Default none.
	Byzantine map[string]string
	// TestNetwork marks the committee as a test network (test_network =
	// true), which Byzantine modes require. Default true.
	TestNetwork bool
	// Project prefixes container, network and volume names and is the
	// compose project name (default "allegro-e2e-testnet").
	Project string
	// Image is the allegro image every container runs (default
	// "allegro-e2e-allegro:dev", built by deploy/build-image.sh --dev).
	Image string
	// APIPortBase is the host port (on 127.0.0.1) of validator 1's API;
	// validator i is published at APIPortBase+i-1 (default 7071).
	APIPortBase int
	// ChainPort is the host port (on 127.0.0.1) of the dev chain's
	// JSON-RPC, HTTP and WebSocket (default 8545).
	ChainPort int
	// SubnetPrefix is the first two octets of the three /24 networks
	// (default "10.231": 10.231.0.0/24 chain, .1 mesh-a, .2 mesh-b).
	SubnetPrefix string
	// ChainID of the dev chain and the committee (default 1337).
	ChainID uint64
	// BlockPeriod of the dev chain (default 1 s).
	BlockPeriod time.Duration
	// LoadAccounts is the number of funded load-test accounts of the dev
	// chain (default 64; see devkit.LoadAccounts).
	LoadAccounts int
	// LogLevel of the sidecars and light clients (default "info").
	LogLevel string
	// CertRouting, when set, is every sidecar's p2p cert_routing
	// (ALLEGRO_CERT_ROUTING); "" leaves the sidecars' default.
	CertRouting string
	// P2PPort is the sidecars' libp2p port, TCP and QUIC (default 4001).
	P2PPort int
	// Restart is the restart policy of the dev chain and the sidecars:
	// "no", "on-failure", "always" or "unless-stopped" (default). Docker
	// suspends it for a container stopped or killed by hand (docker stop,
	// docker kill) until it is started again, so faults injected that way
	// stay in place; a runner that must see crashes rather than have them
	// healed sets "no".
	Restart string
	// PrometheusImage and GrafanaImage are the images of the monitoring
	// profile (pulled only when that profile is started).
	PrometheusImage, GrafanaImage string
	// PrometheusPort and GrafanaPort are their host ports on 127.0.0.1
	// (defaults 9090 and 3000).
	PrometheusPort, GrafanaPort int
}

// DefaultConfig returns a 4-validator testnet with one light client.
func DefaultConfig() Config {
	return Config{
		Validators:   DefaultValidators,
		LightClients: DefaultLightClients,
		Watch:        DefaultWatch,
		TestNetwork:  true,
		Project:      DefaultProject,
		Image:        DefaultImage,
		APIPortBase:  DefaultAPIPortBase,
		ChainPort:    DefaultChainPort,
		SubnetPrefix: DefaultSubnetPrefix,
		ChainID:      devchain.DefaultChainID,
		BlockPeriod:  time.Second,
		LoadAccounts: devchain.DefaultLoadAccounts,
		LogLevel:     "info",
		P2PPort:      DefaultP2PPort,
		Restart:      DefaultRestart,

		PrometheusImage: DefaultPrometheusImage,
		GrafanaImage:    DefaultGrafanaImage,
		PrometheusPort:  DefaultPrometheusPort,
		GrafanaPort:     DefaultGrafanaPort,
	}
}

var (
	projectRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	prefixRe  = regexp.MustCompile(`^(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])$`)
)

// Validate checks every field; errors name the field.
func (c Config) Validate() error {
	var errs []error
	if c.Validators < 1 || c.Validators > MaxValidators {
		errs = append(errs, fmt.Errorf("testnet: Validators must be between 1 and %d, got %d", MaxValidators, c.Validators))
	}
	if c.Spares < 0 || c.Validators+c.Spares > MaxValidators {
		errs = append(errs, fmt.Errorf("testnet: Spares must be between 0 and %d (MaxValidators less Validators), got %d", MaxValidators-c.Validators, c.Spares))
	}
	if c.Spares > 0 && c.EpochLength == 0 {
		errs = append(errs, errors.New("testnet: Spares join through the chain's validator set: they need EpochLength"))
	}
	if c.EpochLength > 0 && c.EpochLength < minEpochLength {
		errs = append(errs, fmt.Errorf("testnet: EpochLength must be 0 or at least %d blocks, got %d", minEpochLength, c.EpochLength))
	}
	if c.LightClients < 0 || c.LightClients > MaxLightClients {
		errs = append(errs, fmt.Errorf("testnet: LightClients must be between 0 and %d, got %d", MaxLightClients, c.LightClients))
	}
	if c.LightClients > 0 && c.Watch < 1 {
		errs = append(errs, fmt.Errorf("testnet: Watch must be positive with light clients, got %d", c.Watch))
	}
	if c.LightClients > 0 && c.LoadAccounts < 1 {
		errs = append(errs, fmt.Errorf("testnet: light clients watch load accounts, but LoadAccounts is %d", c.LoadAccounts))
	}
	if c.LoadAccounts < 0 || c.LoadAccounts > 100_000 {
		errs = append(errs, fmt.Errorf("testnet: LoadAccounts must be between 0 and 100000, got %d", c.LoadAccounts))
	}
	if !projectRe.MatchString(c.Project) {
		errs = append(errs, fmt.Errorf("testnet: Project %q must be lower-case letters, digits, '-' and '_'", c.Project))
	}
	if c.Image == "" {
		errs = append(errs, errors.New("testnet: Image must be set"))
	}
	last := c.APIPortBase + c.Validators + c.Spares - 1
	if c.APIPortBase < 1 || last > 65535 {
		errs = append(errs, fmt.Errorf("testnet: APIPortBase %d leaves no room for %d validators below 65536", c.APIPortBase, c.Validators))
	}
	if c.ChainPort < 1 || c.ChainPort > 65535 {
		errs = append(errs, fmt.Errorf("testnet: ChainPort must be a port number, got %d", c.ChainPort))
	} else if c.ChainPort >= c.APIPortBase && c.ChainPort <= last {
		errs = append(errs, fmt.Errorf("testnet: ChainPort %d collides with the API ports %d-%d", c.ChainPort, c.APIPortBase, last))
	}
	switch c.Restart {
	case "no", "on-failure", "always", "unless-stopped":
	default:
		errs = append(errs, fmt.Errorf("testnet: Restart must be no, on-failure, always or unless-stopped, got %q", c.Restart))
	}
	if c.PrometheusImage == "" || c.GrafanaImage == "" {
		errs = append(errs, errors.New("testnet: PrometheusImage and GrafanaImage must be set"))
	}
	for _, p := range []struct {
		name string
		port int
	}{{"PrometheusPort", c.PrometheusPort}, {"GrafanaPort", c.GrafanaPort}} {
		switch {
		case p.port < 1 || p.port > 65535:
			errs = append(errs, fmt.Errorf("testnet: %s must be a port number, got %d", p.name, p.port))
		case p.port == c.ChainPort || (p.port >= c.APIPortBase && p.port <= last):
			errs = append(errs, fmt.Errorf("testnet: %s %d collides with the chain or API ports", p.name, p.port))
		}
	}
	if c.PrometheusPort == c.GrafanaPort {
		errs = append(errs, fmt.Errorf("testnet: PrometheusPort and GrafanaPort are both %d", c.GrafanaPort))
	}
	if c.P2PPort < 1 || c.P2PPort > 65535 {
		errs = append(errs, fmt.Errorf("testnet: P2PPort must be a port number, got %d", c.P2PPort))
	}
	if !prefixRe.MatchString(c.SubnetPrefix) {
		errs = append(errs, fmt.Errorf("testnet: SubnetPrefix %q must be two IPv4 octets such as %q", c.SubnetPrefix, DefaultSubnetPrefix))
	} else if o2, _ := strconv.Atoi(strings.Split(c.SubnetPrefix, ".")[1]); o2 > 253 {
		errs = append(errs, fmt.Errorf("testnet: SubnetPrefix %q: the second octet must be at most 253", c.SubnetPrefix))
	}
	if c.ChainID == 0 {
		errs = append(errs, errors.New("testnet: ChainID must be set"))
	}
	if c.BlockPeriod <= 0 {
		errs = append(errs, fmt.Errorf("testnet: BlockPeriod must be positive, got %s", c.BlockPeriod))
	}
	switch c.CertRouting {
	case "", "bulletin", "entry":
	default:
		errs = append(errs, fmt.Errorf("testnet: CertRouting must be bulletin or entry, got %q", c.CertRouting))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("testnet: LogLevel must be debug, info, warn or error, got %q", c.LogLevel))
	}
	names := make([]string, 0, len(c.Byzantine))
	for name := range c.Byzantine {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		i, ok := validatorIndex(name)
		if !ok || i > c.Validators {
			errs = append(errs, fmt.Errorf("testnet: Byzantine names %q, which is not a genesis validator (v1..v%d)", name, c.Validators))
		}
		mode := c.Byzantine[name]
		if mode != sidecar.ByzantineEquivocate && mode != sidecar.ByzantineInvalidSignatures {
			errs = append(errs, fmt.Errorf("testnet: Byzantine[%s] = %q: want %q or %q", name, mode, sidecar.ByzantineEquivocate, sidecar.ByzantineInvalidSignatures))
		}
	}
	if len(c.Byzantine) > 0 && !c.TestNetwork {
		errs = append(errs, errors.New("testnet: Byzantine validators need TestNetwork (sidecars refuse Byzantine modes otherwise)"))
	}
	return errors.Join(errs...)
}

// ValidatorName is the committee and service name of validator i (1-based).
func ValidatorName(i int) string { return "v" + strconv.Itoa(i) }

func validatorIndex(name string) (int, bool) {
	if !strings.HasPrefix(name, "v") {
		return 0, false
	}
	i, err := strconv.Atoi(name[1:])
	if err != nil || i < 1 || strconv.Itoa(i) != name[1:] {
		return 0, false
	}
	return i, true
}

// ByzantineEnv is the compose variable that selects validator name's
// Byzantine mode; empty means honest.
func ByzantineEnv(name string) string {
	return "ALLEGRO_BYZANTINE_" + strings.ToUpper(name)
}

// Manifest describes a generated testnet (testnet.json): everything a
// runner needs to drive it from the host.
type Manifest struct {
	Project string `json:"project"`
	// Stack is the swarm stack name of a network generated by
	// GenerateSwarm ("" for compose). Its services are <stack>_<name>,
	// and the addresses below are host names on its overlay networks.
	Stack      string `json:"stack,omitempty"`
	Image      string `json:"image"`
	ChainID    uint64 `json:"chain_id"`
	Validators int    `json:"validators"`
	// EpochLength is the blocks per epoch (0: one fixed committee).
	EpochLength uint64        `json:"epoch_length,omitempty"`
	Quorum      int           `json:"quorum"`
	F           int           `json:"f"`
	TestNetwork bool          `json:"test_network"`
	Token       string        `json:"token"`
	Chain       ChainNode     `json:"chain"`
	Sidecars    []Sidecar     `json:"sidecars"`
	LightClient []LightClient `json:"light_clients"`
	Networks    Networks      `json:"networks"`
	// LoadAccounts is the dev chain's number of funded load accounts.
	LoadAccounts int `json:"load_accounts"`
}

// ChainNode is the dev chain container.
type ChainNode struct {
	Service   string `json:"service"`
	Container string `json:"container"`
	IP        string `json:"ip"`
	// RPC is the JSON-RPC URL from the host (HTTP; WebSocket on the same
	// port).
	RPC string `json:"rpc"`
}

// Sidecar is one validator container.
type Sidecar struct {
	Name      string `json:"name"`
	Container string `json:"container"`
	PublicKey string `json:"public_key"`
	PeerID    string `json:"peer_id"`
	ChainIP   string `json:"chain_ip"`
	MeshAIP   string `json:"mesh_a_ip"`
	MeshBIP   string `json:"mesh_b_ip"`
	// API is the published API address on the host (gRPC and HTTP).
	API string `json:"api"`
	// Metrics is the address Prometheus scrapes /metrics at, on the chain
	// network.
	Metrics string `json:"metrics"`
	// Byzantine is the generated default mode ("" for honest validators);
	// ByzantineEnv(Name) overrides it.
	Byzantine string `json:"byzantine,omitempty"`
	// ConsensusKey is the validator's consensus public key (hex), with an
	// epoch length: the key the chain's validator set lists.
	ConsensusKey string `json:"consensus_key,omitempty"`
	// ConsensusKeyFile is its key file, relative to the testnet directory.
	ConsensusKeyFile string `json:"consensus_key_file,omitempty"`
	// Spare marks a validator outside the genesis set.
	Spare bool `json:"spare,omitempty"`
}

// WatchedAccounts returns the addresses light client j (0-based) watches:
// load accounts j*watch ... j*watch+watch-1, modulo loadAccounts, each once.
func WatchedAccounts(loadAccounts, watch, j int) []string {
	load := devkit.LoadAccounts(loadAccounts)
	var out []string
	seen := map[string]bool{}
	for k := 0; k < watch && len(load) > 0; k++ {
		a := load[(j*watch+k)%len(load)].Address.Hex()
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

// ID returns the sidecar's validator key.
func (s Sidecar) ID() (qc.ValidatorID, error) {
	raw, err := hex.DecodeString(s.PublicKey)
	if err != nil {
		return qc.ValidatorID{}, fmt.Errorf("testnet: sidecar %s: public key: %w", s.Name, err)
	}
	return qc.ValidatorIDFromBytes(raw)
}

// Members returns the sidecars of the genesis committee (not the spares).
func (m *Manifest) Members() []Sidecar {
	var out []Sidecar
	for _, s := range m.Sidecars {
		if !s.Spare {
			out = append(out, s)
		}
	}
	return out
}

// LightClient is one `allegro watch` container.
type LightClient struct {
	Name      string   `json:"name"`
	Container string   `json:"container"`
	Watch     []string `json:"watch"`
	// ChainIP is its address on the chain network, with an epoch length
	// (it follows the chain's epochs).
	ChainIP string `json:"chain_ip,omitempty"`
	MeshAIP string `json:"mesh_a_ip"`
	MeshBIP string `json:"mesh_b_ip"`
}

// Networks are the docker network names and subnets.
type Networks struct {
	Chain       string `json:"chain"`
	ChainSubnet string `json:"chain_subnet"`
	MeshA       string `json:"mesh_a"`
	MeshASubnet string `json:"mesh_a_subnet"`
	MeshB       string `json:"mesh_b"`
	MeshBSubnet string `json:"mesh_b_subnet"`
}

// Sidecar returns the sidecar called name.
func (m *Manifest) Sidecar(name string) (Sidecar, bool) {
	for _, s := range m.Sidecars {
		if s.Name == name {
			return s, true
		}
	}
	return Sidecar{}, false
}

// LoadManifest reads testnet.json from a generated directory.
func LoadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("testnet manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("testnet manifest %s: %w", filepath.Join(dir, ManifestFile), err)
	}
	return &m, nil
}

// plan is a testnet's layout, computed from a Config before anything is
// written.
type plan struct {
	cfg      Config
	manifest Manifest
	keys     []ed25519.PrivateKey
	// consensus are the validators' consensus keys (with an epoch length).
	consensus []ed25519.PrivateKey
	// swarm lays the network out as a swarm stack (names, not addresses).
	swarm bool
}

func subnet(prefix string, third int) string { return fmt.Sprintf("%s.%d.0/24", prefix, third) }
func hostIP(prefix string, third, host int) string {
	return fmt.Sprintf("%s.%d.%d", prefix, third, host)
}

// Network indexes (third octet) and host numbers.
const (
	netChain, netMeshA, netMeshB = 0, 1, 2
	hostChain                    = 2
	hostPrometheus               = 3
	hostGrafana                  = 4
	hostValidator0               = 10  // validator i is .10+i
	hostLightClient0             = 100 // light client j is .100+j
)

func newPlan(cfg Config, keys, consensus []ed25519.PrivateKey) (*plan, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	total := cfg.Validators + cfg.Spares
	if len(keys) != total {
		return nil, fmt.Errorf("testnet: %d keys for %d validators", len(keys), total)
	}
	if cfg.EpochLength > 0 && len(consensus) != total {
		return nil, fmt.Errorf("testnet: %d consensus keys for %d validators", len(consensus), total)
	}
	p := cfg.SubnetPrefix
	m := Manifest{
		Project: cfg.Project, Image: cfg.Image, ChainID: cfg.ChainID, Validators: cfg.Validators, EpochLength: cfg.EpochLength,
		TestNetwork: cfg.TestNetwork, Token: devkit.TokenAddress.Hex(), LoadAccounts: cfg.LoadAccounts,
		Chain: ChainNode{
			Service: "devchain", Container: cfg.Project + "-devchain", IP: hostIP(p, netChain, hostChain),
			RPC: fmt.Sprintf("http://127.0.0.1:%d", cfg.ChainPort),
		},
		Networks: Networks{
			Chain: cfg.Project + "-chain", ChainSubnet: subnet(p, netChain),
			MeshA: cfg.Project + "-mesh-a", MeshASubnet: subnet(p, netMeshA),
			MeshB: cfg.Project + "-mesh-b", MeshBSubnet: subnet(p, netMeshB),
		},
	}
	for i := 1; i <= total; i++ {
		name := ValidatorName(i)
		pub := keys[i-1].Public().(ed25519.PublicKey)
		id, err := qc.ValidatorIDFromBytes(pub)
		if err != nil {
			return nil, err
		}
		pid, err := p2p.PeerIDFromValidatorID(id)
		if err != nil {
			return nil, err
		}
		m.Sidecars = append(m.Sidecars, Sidecar{
			Name: name, Container: cfg.Project + "-" + name, PublicKey: hex.EncodeToString(pub), PeerID: pid.String(),
			ChainIP: hostIP(p, netChain, hostValidator0+i), MeshAIP: hostIP(p, netMeshA, hostValidator0+i),
			MeshBIP: hostIP(p, netMeshB, hostValidator0+i), API: fmt.Sprintf("127.0.0.1:%d", cfg.APIPortBase+i-1),
			Metrics:   fmt.Sprintf("%s:%d", hostIP(p, netChain, hostValidator0+i), containerAPIPort),
			Byzantine: cfg.Byzantine[name],
			Spare:     i > cfg.Validators,
		})
		if cfg.EpochLength > 0 {
			sc := &m.Sidecars[len(m.Sidecars)-1]
			sc.ConsensusKey = hex.EncodeToString(consensus[i-1].Public().(ed25519.PublicKey))
			sc.ConsensusKeyFile = filepath.Join(KeysDir, name+consensusKeySuffix)
		}
	}
	for j := 0; j < cfg.LightClients; j++ {
		name := "lc" + strconv.Itoa(j+1)
		lc := LightClient{
			Name: name, Container: cfg.Project + "-" + name,
			MeshAIP: hostIP(p, netMeshA, hostLightClient0+j+1), MeshBIP: hostIP(p, netMeshB, hostLightClient0+j+1),
		}
		if cfg.EpochLength > 0 {
			lc.ChainIP = hostIP(p, netChain, hostLightClient0+j+1)
		}
		lc.Watch = WatchedAccounts(cfg.LoadAccounts, cfg.Watch, j)
		m.LightClient = append(m.LightClient, lc)
	}
	f := (cfg.Validators - 1) / 3
	m.F, m.Quorum = f, cfg.Validators-f
	return &plan{cfg: cfg, manifest: m, keys: keys, consensus: consensus}, nil
}

// consensusKeySuffix names a validator's consensus key file in keys/.
const consensusKeySuffix = "-consensus.key"

// committee returns the committee file: each member with its TCP and QUIC
// addresses on both mesh networks.
func (p *plan) committee() *committee.File {
	// The embedded development chain pays gas in its native currency.
	f := &committee.File{ChainID: p.cfg.ChainID, Epoch: 1, QCShards: 16, TestNetwork: p.cfg.TestNetwork, FeeModel: tempo.FeeModelNative}
	if p.cfg.EpochLength > 0 {
		// The members below are then the address book of every sidecar
		// key, spares included.
		f.EpochLength, f.CommitteeSource = p.cfg.EpochLength, committee.SourceChain
	}
	for _, s := range p.manifest.Sidecars {
		f.Members = append(f.Members, committee.Member{Name: s.Name, PublicKey: s.PublicKey, Addrs: p.meshAddrs(s)})
	}
	return f
}

// genesisValidators returns the dev chain's genesis validator set as a
// committee file of consensus keys (allegro-dev devchain --validators): the
// validators that are not spares, each with its mesh-a address as the
// inbound address.
func (p *plan) genesisValidators() *committee.File {
	f := &committee.File{ChainID: p.cfg.ChainID, Epoch: 1, QCShards: 16, FeeModel: tempo.FeeModelNative}
	for _, s := range p.manifest.Members() {
		f.Members = append(f.Members, committee.Member{Name: s.Name, PublicKey: s.ConsensusKey, Addrs: p.meshAddrs(s)[:1]})
	}
	return f
}

// writeEpochFiles writes, with an epoch length, each validator's consensus
// key, the bindings (every one from the first epoch: the genesis set's and
// the spares', made before the network starts) and the genesis set.
func (p *plan) writeEpochFiles(dir string) error {
	if p.cfg.EpochLength == 0 {
		return nil
	}
	bdir := filepath.Join(dir, BindingsDir)
	for i, s := range p.manifest.Sidecars {
		if err := committee.WriteKeyFile(filepath.Join(dir, s.ConsensusKeyFile), s.Name, p.consensus[i]); err != nil {
			return fmt.Errorf("testnet: %w", err)
		}
		b, err := qc.SignBinding(p.consensus[i], p.keys[i], p.cfg.ChainID, 0)
		if err != nil {
			return fmt.Errorf("testnet: binding of %s: %w", s.Name, err)
		}
		if _, err := committee.AddBinding(bdir, p.cfg.ChainID, b); err != nil {
			return fmt.Errorf("testnet: binding of %s: %w", s.Name, err)
		}
	}
	if err := p.genesisValidators().Write(filepath.Join(dir, GenesisValidatorsFile)); err != nil {
		return fmt.Errorf("testnet: write genesis validators: %w", err)
	}
	return nil
}

func (p *plan) meshAddrs(s Sidecar) []string {
	port := p.cfg.P2PPort
	if p.swarm {
		return swarmMeshAddrs(s, port)
	}
	return []string{
		fmt.Sprintf("/ip4/%s/tcp/%d", s.MeshAIP, port), fmt.Sprintf("/ip4/%s/udp/%d/quic-v1", s.MeshAIP, port),
		fmt.Sprintf("/ip4/%s/tcp/%d", s.MeshBIP, port), fmt.Sprintf("/ip4/%s/udp/%d/quic-v1", s.MeshBIP, port),
	}
}

// keysReadme is written beside the generated keys.
const keysReadme = `These validator keys were generated by "allegro-dev testnet gen" for a TEST
network. They are not secret: never use them for anything else.

Sidecars refuse a key file readable by group or others. They do not read
these files: the compose file's "keys" service copies each into its
sidecar's data volume with mode 0600 before the sidecars start, so the
modes here (lost by git checkouts and plain copies) do not matter.
`

// swarmKeysReadme is written beside the keys of a swarm stack.
const swarmKeysReadme = `These validator keys were generated by "allegro-dev testnet gen --format swarm"
for a TEST network. They are not secret: never use them for anything else.

docker stack deploy makes each a swarm secret, which the sidecar reads at
/run/secrets/validator.key with mode 0400 (sidecars refuse key files that
group or others may read), whatever the modes here.
`

// Generate writes a testnet into dir (created if missing; it must not
// already hold a testnet): keys/<name>.key (mode 0600), committee.toml,
// docker-compose.yml, testnet.json, prometheus.yml and grafana/; with an
// epoch length also keys/<name>-consensus.key, bindings/ and
// genesis-validators.toml. Keys are fresh random ed25519 keys.
func Generate(cfg Config, dir string) (*Manifest, error) {
	return generate(cfg, dir, false)
}

// GenerateSwarm writes a testnet into dir as a docker swarm stack (see
// StackFile): keys/<name>.key (mode 0600, each also a swarm secret),
// committee.toml (its members at their service names), docker-stack.yml
// and testnet.json. It takes the Config of Generate less EpochLength and
// Spares; the subnets, the host ports and Restart apply, the monitoring
// profile does not.
func GenerateSwarm(cfg Config, dir string) (*Manifest, error) {
	return generate(cfg, dir, true)
}

func generate(cfg Config, dir string, swarm bool) (*Manifest, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if swarm {
		if err := cfg.validateSwarm(); err != nil {
			return nil, err
		}
	}
	newKeys := func(n int) ([]ed25519.PrivateKey, error) {
		keys := make([]ed25519.PrivateKey, n)
		for i := range keys {
			k, err := committee.GenerateKey()
			if err != nil {
				return nil, fmt.Errorf("testnet: generate key: %w", err)
			}
			keys[i] = k
		}
		return keys, nil
	}
	keys, err := newKeys(cfg.Validators + cfg.Spares)
	if err != nil {
		return nil, err
	}
	var consensus []ed25519.PrivateKey
	if cfg.EpochLength > 0 {
		if consensus, err = newKeys(cfg.Validators + cfg.Spares); err != nil {
			return nil, err
		}
	}
	p, err := newPlan(cfg, keys, consensus)
	if err != nil {
		return nil, err
	}
	if swarm {
		p.swarm = true
		p.swarmLayout()
	}
	for _, name := range []string{ComposeFile, StackFile, CommitteeFile, ManifestFile, PrometheusFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return nil, fmt.Errorf("testnet: %s already exists (generate into an empty directory)", filepath.Join(dir, name))
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, KeysDir), 0o755); err != nil {
		return nil, fmt.Errorf("testnet: %w", err)
	}
	readme := keysReadme
	if swarm {
		readme = swarmKeysReadme
	}
	if err := os.WriteFile(filepath.Join(dir, KeysDir, "README.txt"), []byte(readme), 0o644); err != nil {
		return nil, fmt.Errorf("testnet: %w", err)
	}
	for i, s := range p.manifest.Sidecars {
		if err := committee.WriteKeyFile(filepath.Join(dir, KeysDir, s.Name+".key"), s.Name, keys[i]); err != nil {
			return nil, fmt.Errorf("testnet: %w", err)
		}
	}
	if err := p.committee().Write(filepath.Join(dir, CommitteeFile)); err != nil {
		return nil, fmt.Errorf("testnet: write committee: %w", err)
	}
	if err := p.writeEpochFiles(dir); err != nil {
		return nil, err
	}
	if swarm {
		stack, err := p.stack()
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, StackFile), stack, 0o644); err != nil {
			return nil, fmt.Errorf("testnet: %w", err)
		}
	} else {
		compose, err := p.compose()
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, ComposeFile), compose, 0o644); err != nil {
			return nil, fmt.Errorf("testnet: %w", err)
		}
		if err := p.writeMonitoring(dir); err != nil {
			return nil, err
		}
	}
	mj, err := json.MarshalIndent(p.manifest, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), append(mj, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("testnet: %w", err)
	}
	m := p.manifest
	return &m, nil
}

// CheckSubnets reports which of the testnet's subnets overlap one of
// taken (CIDR strings, such as docker's existing networks).
func CheckSubnets(prefix string, taken []string) error {
	var errs []error
	for third := netChain; third <= netMeshB; third++ {
		_, mine, err := net.ParseCIDR(subnet(prefix, third))
		if err != nil {
			return fmt.Errorf("testnet: subnet prefix %q: %w", prefix, err)
		}
		for _, t := range taken {
			_, other, err := net.ParseCIDR(t)
			if err != nil {
				continue
			}
			if mine.Contains(other.IP) || other.Contains(mine.IP) {
				errs = append(errs, fmt.Errorf("testnet: subnet %s overlaps %s", mine, other))
			}
		}
	}
	return errors.Join(errs...)
}
