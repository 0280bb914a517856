package testnet

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// ComposeVersion is the compose file format written: "2.4" is understood by
// the python docker-compose 1.x (which needs it for static addresses,
// health-gated depends_on and network priorities) and by the `docker
// compose` plugin, which ignores the version.
const ComposeVersion = "2.4"

// ordered is a YAML mapping that keeps its insertion order.
type ordered struct {
	keys []string
	vals map[string]any
}

func newOrdered() *ordered { return &ordered{vals: map[string]any{}} }

func (o *ordered) set(k string, v any) *ordered {
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = v
	return o
}

// MarshalYAML implements yaml.Marshaler.
func (o *ordered) MarshalYAML() (any, error) {
	n := &yaml.Node{Kind: yaml.MappingNode}
	for _, k := range o.keys {
		var v yaml.Node
		if err := v.Encode(o.vals[k]); err != nil {
			return nil, fmt.Errorf("compose key %s: %w", k, err)
		}
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, &v)
	}
	return n, nil
}

// quoted is a string always written double-quoted: the python
// docker-compose reads YAML 1.1, where plain scalars such as 0x5C83… (an
// address), 1337 or "no" are numbers and booleans, not strings.
type quoted string

// MarshalYAML implements yaml.Marshaler.
func (q quoted) MarshalYAML() (any, error) {
	return &yaml.Node{Kind: yaml.ScalarNode, Style: yaml.DoubleQuotedStyle, Value: string(q)}, nil
}

func quoteAll(list []string) []quoted {
	out := make([]quoted, len(list))
	for i, s := range list {
		out[i] = quoted(s)
	}
	return out
}

type healthcheck struct {
	Test        []quoted `yaml:"test,flow"`
	Interval    string   `yaml:"interval,omitempty"`
	Timeout     string   `yaml:"timeout,omitempty"`
	Retries     int      `yaml:"retries,omitempty"`
	StartPeriod string   `yaml:"start_period,omitempty"`
}

type netAttach struct {
	IPv4     string `yaml:"ipv4_address"`
	Priority int    `yaml:"priority,omitempty"`
}

type service struct {
	Image           string       `yaml:"image"`
	ContainerName   string       `yaml:"container_name"`
	Profiles        []quoted     `yaml:"profiles,flow,omitempty"`
	Entrypoint      []quoted     `yaml:"entrypoint,flow,omitempty"`
	Command         []quoted     `yaml:"command,flow,omitempty"`
	Environment     *ordered     `yaml:"environment,omitempty"`
	Volumes         []quoted     `yaml:"volumes,omitempty"`
	NetworkMode     string       `yaml:"network_mode,omitempty"`
	Networks        *ordered     `yaml:"networks,omitempty"`
	Ports           []quoted     `yaml:"ports,omitempty"`
	Restart         quoted       `yaml:"restart,omitempty"`
	DependsOn       *ordered     `yaml:"depends_on,omitempty"`
	Healthcheck     *healthcheck `yaml:"healthcheck,omitempty"`
	StopGracePeriod string       `yaml:"stop_grace_period,omitempty"`
}

// Service names besides devchain, v1..vN and lc1..lcK.
const (
	keysService       = "keys"
	prometheusService = "prometheus"
	grafanaService    = "grafana"
	// keysInstallDir is where the key installer mounts the data volumes
	// (one directory per validator).
	keysInstallDir = "/install"
)

// The chain network has the highest priority: containers are attached to
// it first and keep their published ports and default route on it while
// the mesh networks are disconnected and reconnected.
const (
	priorityChain = 100
	priorityMesh  = 10
)

func (p *plan) compose() ([]byte, error) {
	m := p.manifest
	cfg := p.cfg
	services := newOrdered()

	chainNets := newOrdered().set("chain", netAttach{IPv4: m.Chain.IP, Priority: priorityChain})
	chainCmd := []string{"devchain", "--host", "0.0.0.0", "--port", strconv.Itoa(containerChainPort),
		"--datadir", "/data/chain", "--chain-id", strconv.FormatUint(cfg.ChainID, 10),
		"--block-period", cfg.BlockPeriod.String(), "--load-accounts", strconv.Itoa(cfg.LoadAccounts)}
	chainVolumes := []string{cfg.Project + "-chain-data:/data"}
	if cfg.EpochLength > 0 {
		chainCmd = append(chainCmd, "--validators", "/config/"+GenesisValidatorsFile)
		chainVolumes = append(chainVolumes, "./"+GenesisValidatorsFile+":/config/"+GenesisValidatorsFile+":ro")
	}
	// The dev chain is a development tool: allegro-dev, in test images only.
	services.set(m.Chain.Service, service{
		Image: cfg.Image, ContainerName: m.Chain.Container,
		Entrypoint: quoteAll([]string{"/allegro-dev"}),
		Command:    quoteAll(chainCmd),
		Volumes:    quoteAll(chainVolumes),
		Networks:   chainNets,
		Ports:      []quoted{quoted(fmt.Sprintf("127.0.0.1:%d:%d", cfg.ChainPort, containerChainPort))},
		Healthcheck: &healthcheck{
			Test:     quoteAll([]string{"CMD", "/allegro", "healthcheck", "--quiet", "--jsonrpc", "--url", fmt.Sprintf("http://127.0.0.1:%d", containerChainPort)}),
			Interval: "2s", Timeout: "3s", Retries: 30, StartPeriod: "5s",
		},
		Restart:         quoted(cfg.Restart),
		StopGracePeriod: "20s",
	})

	// The key installer: copies each validator's key into its data volume
	// with mode 0600, owned by the user the sidecars run as (the image's),
	// before any sidecar starts. The sidecars refuse keys readable by group
	// or others, and a bind-mounted key keeps its host mode, which a git
	// checkout or a plain copy loosens. If it fails, compose reports the
	// failure and starts no sidecar.
	installCmd := []string{"testnet", "install-keys", "--keys", "/keys", "--into", keysInstallDir}
	installVolumes := []string{"./" + KeysDir + ":/keys:ro"}
	if cfg.EpochLength > 0 {
		// Each sidecar keeps the bindings in its data directory (the
		// default bindings_dir), where it also stores those it pulls
		// from its peers.
		installCmd = append(installCmd, "--bindings", "/bindings")
		installVolumes = append(installVolumes, "./"+BindingsDir+":/bindings:ro")
	}
	for _, s := range m.Sidecars {
		installCmd = append(installCmd, s.Name)
		installVolumes = append(installVolumes, cfg.Project+"-"+s.Name+"-data:"+keysInstallDir+"/"+s.Name)
	}
	services.set(keysService, service{
		Image: cfg.Image, ContainerName: cfg.Project + "-" + keysService,
		Entrypoint:  quoteAll([]string{"/allegro-dev"}),
		Command:     quoteAll(installCmd),
		Volumes:     quoteAll(installVolumes),
		NetworkMode: "none",
		Healthcheck: &healthcheck{Test: []quoted{"NONE"}},
		Restart:     "no",
	})

	p2pListen := fmt.Sprintf("/ip4/0.0.0.0/tcp/%d,/ip4/0.0.0.0/udp/%d/quic-v1", cfg.P2PPort, cfg.P2PPort)
	for _, s := range m.Sidecars {
		env := newOrdered().
			set("ALLEGRO_DATA_DIR", quoted("/data")).
			set("ALLEGRO_KEY_FILE", quoted("/data/"+InstalledKeyFile)).
			set("ALLEGRO_COMMITTEE_FILE", quoted("/config/committee.toml")).
			set("ALLEGRO_CHAIN_RPC", quoted(fmt.Sprintf("ws://%s:%d", m.Chain.IP, containerChainPort))).
			set("ALLEGRO_API_LISTEN", quoted(fmt.Sprintf("0.0.0.0:%d", containerAPIPort))).
			set("ALLEGRO_P2P_LISTEN", quoted(p2pListen)).
			set("ALLEGRO_P2P_ANNOUNCE", quoted(strings.Join(p.meshAddrs(s), ","))).
			set("ALLEGRO_LOG_LEVEL", quoted(cfg.LogLevel))
		if cfg.CertRouting != "" {
			env.set("ALLEGRO_CERT_ROUTING", quoted(cfg.CertRouting))
		}
		if s.Byzantine != "" {
			// Compose substitutes the variable when it creates the
			// container; unset means the generated mode, empty means honest.
			env.set("ALLEGRO_BYZANTINE", quoted(fmt.Sprintf("${%s-%s}", ByzantineEnv(s.Name), s.Byzantine)))
			// Run honest again after a Byzantine phase, it would find the
			// conflicting certificates it signed then (never recorded in
			// its data directory) in the mesh and stop as a doppelganger:
			// on a test network they are known to be its own.
			env.set("ALLEGRO_DOPPELGANGER_WINDOW", quoted("0s"))
		}
		services.set(s.Name, service{
			Image: cfg.Image, ContainerName: s.Container,
			Command:     []quoted{"sidecar"},
			Environment: env,
			Volumes: quoteAll([]string{
				cfg.Project + "-" + s.Name + "-data:/data",
				"./" + CommitteeFile + ":/config/committee.toml:ro",
			}),
			Networks: newOrdered().
				set("chain", netAttach{IPv4: s.ChainIP, Priority: priorityChain}).
				set("mesh-a", netAttach{IPv4: s.MeshAIP, Priority: priorityMesh}).
				set("mesh-b", netAttach{IPv4: s.MeshBIP, Priority: priorityMesh}),
			Ports: []quoted{quoted(fmt.Sprintf("%s:%d", s.API, containerAPIPort))},
			DependsOn: newOrdered().
				set(m.Chain.Service, map[string]string{"condition": "service_healthy"}).
				set(keysService, map[string]string{"condition": "service_completed_successfully"}),
			// Readiness: healthy once the sidecar can certify payments. A
			// sidecar partitioned from its peers is unhealthy until the
			// partition heals; the e2e runner waits for health only after
			// starting or restarting a sidecar in a connected mesh.
			Healthcheck: &healthcheck{
				Test:     quoteAll([]string{"CMD", "/allegro", "healthcheck", "--quiet", "--url", fmt.Sprintf("http://127.0.0.1:%d/readyz", containerAPIPort)}),
				Interval: "2s", Timeout: "3s", Retries: 15, StartPeriod: "10s",
			},
			Restart:         quoted(cfg.Restart),
			StopGracePeriod: "20s",
		})
	}

	for _, lc := range m.LightClient {
		cmd := []string{"watch", "--json", "--with-qc", "--committee", "/config/committee.toml",
			"--listen", "/ip4/0.0.0.0/tcp/0", "--listen", "/ip4/0.0.0.0/udp/0/quic-v1", "--log-level", cfg.LogLevel}
		for _, a := range lc.Watch {
			cmd = append(cmd, "--address", a)
		}
		deps := newOrdered()
		for _, s := range m.Sidecars {
			deps.set(s.Name, map[string]string{"condition": "service_started"})
		}
		volumes := []string{"./" + CommitteeFile + ":/config/committee.toml:ro"}
		nets := newOrdered()
		if cfg.EpochLength > 0 {
			// A light client follows the chain's epochs and checks each
			// epoch's committee from chain state and the bindings itself.
			cmd = append(cmd, "--chain-rpc", fmt.Sprintf("ws://%s:%d", m.Chain.IP, containerChainPort), "--bindings", "/config/"+BindingsDir)
			volumes = append(volumes, "./"+BindingsDir+":/config/"+BindingsDir+":ro")
			nets.set("chain", netAttach{IPv4: lc.ChainIP, Priority: priorityChain})
		}
		nets.set("mesh-a", netAttach{IPv4: lc.MeshAIP, Priority: priorityMesh}).
			set("mesh-b", netAttach{IPv4: lc.MeshBIP, Priority: priorityMesh})
		services.set(lc.Name, service{
			Image: cfg.Image, ContainerName: lc.Container,
			Command:   quoteAll(cmd),
			Volumes:   quoteAll(volumes),
			Networks:  nets,
			DependsOn: deps,
			// A light client serves no HTTP; the image's health check
			// (the sidecar API) does not apply.
			Healthcheck:     &healthcheck{Test: []quoted{"NONE"}},
			StopGracePeriod: "10s",
		})
	}

	// Monitoring, off by default (its images are pulled when it starts):
	// Prometheus scrapes every sidecar on the chain network, Grafana shows
	// deploy/grafana's dashboard.
	promIP := hostIP(cfg.SubnetPrefix, netChain, hostPrometheus)
	services.set(prometheusService, service{
		Image: cfg.PrometheusImage, ContainerName: cfg.Project + "-" + prometheusService,
		Profiles: []quoted{MonitoringProfile},
		Volumes:  []quoted{quoted("./" + PrometheusFile + ":/etc/prometheus/prometheus.yml:ro")},
		Networks: newOrdered().set("chain", netAttach{IPv4: promIP, Priority: priorityChain}),
		Ports:    []quoted{quoted(fmt.Sprintf("127.0.0.1:%d:%d", cfg.PrometheusPort, containerPrometheusPort))},
	})
	services.set(grafanaService, service{
		Image: cfg.GrafanaImage, ContainerName: cfg.Project + "-" + grafanaService,
		Profiles: []quoted{MonitoringProfile},
		Environment: newOrdered().
			set("GF_AUTH_ANONYMOUS_ENABLED", quoted("true")).
			set("GF_AUTH_ANONYMOUS_ORG_ROLE", quoted("Viewer")),
		Volumes: quoteAll([]string{
			"./" + GrafanaDir + "/provisioning:" + grafanaProvisioningMount + ":ro",
			"./" + GrafanaDir + "/dashboards:" + grafanaDashboardsMount + ":ro",
		}),
		Networks:  newOrdered().set("chain", netAttach{IPv4: hostIP(cfg.SubnetPrefix, netChain, hostGrafana), Priority: priorityChain}),
		Ports:     []quoted{quoted(fmt.Sprintf("127.0.0.1:%d:%d", cfg.GrafanaPort, containerGrafanaPort))},
		DependsOn: newOrdered().set(prometheusService, map[string]string{"condition": "service_started"}),
	})

	networks := m.networksDoc(func(n *ordered) *ordered { return n.set("driver", "bridge") })
	volumes := newOrdered().set(cfg.Project+"-chain-data", map[string]string{"name": cfg.Project + "-chain-data"})
	for _, s := range m.Sidecars {
		v := cfg.Project + "-" + s.Name + "-data"
		volumes.set(v, map[string]string{"name": v})
	}

	doc := newOrdered().
		set("version", ComposeVersion).
		set("services", services).
		set("networks", networks).
		set("volumes", volumes)
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Allegro testnet %q: %d validators (quorum %d), %d light client(s), dev chain %d.\n",
		m.Project, m.Validators, m.Quorum, len(m.LightClient), m.ChainID)
	b.WriteString("# Generated by `allegro-dev testnet gen`; the keys in keys/ are throw-away TEST keys.\n")
	b.WriteString("# Nothing is pulled: build the image first (deploy/build-image.sh --dev), then\n")
	fmt.Fprintf(&b, "#   docker-compose -p %s up -d     (or: docker compose -p %s up -d)\n", m.Project, m.Project)
	fmt.Fprintf(&b, "# Prometheus and Grafana (images pulled): add --profile %s; http://127.0.0.1:%d, http://127.0.0.1:%d\n",
		MonitoringProfile, cfg.PrometheusPort, cfg.GrafanaPort)
	if err := encodeYAML(&b, doc); err != nil {
		return nil, fmt.Errorf("testnet: encode compose file: %w", err)
	}
	return b.Bytes(), nil
}

// networksDoc describes the testnet's three networks (chain, mesh-a,
// mesh-b), each with its name and subnet and what driver adds.
func (m *Manifest) networksDoc(driver func(*ordered) *ordered) *ordered {
	networks := newOrdered()
	for _, n := range []struct{ key, name, subnet string }{
		{"chain", m.Networks.Chain, m.Networks.ChainSubnet},
		{"mesh-a", m.Networks.MeshA, m.Networks.MeshASubnet},
		{"mesh-b", m.Networks.MeshB, m.Networks.MeshBSubnet},
	} {
		networks.set(n.key, driver(newOrdered().set("name", n.name)).
			set("ipam", map[string]any{"config": []map[string]string{{"subnet": n.subnet}}}))
	}
	return networks
}

// encodeYAML appends doc to b as YAML indented by two spaces.
func encodeYAML(b *bytes.Buffer, doc any) error {
	enc := yaml.NewEncoder(b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return err
	}
	return enc.Close()
}
