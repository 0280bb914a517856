package testnet

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Swarm stacks. GenerateSwarm writes the same network as Generate as a
// docker swarm stack file (docker stack deploy), which spans several hosts:
//
//   - the three networks are attachable overlay networks with the same
//     subnets, so `docker network disconnect` still reaches a task's
//     container;
//   - swarm assigns addresses itself (no static ipv4_address): every
//     container is found by name. Each sidecar has one alias per mesh
//     network (v1-a, v1-b), which the committee file lists as its
//     addresses (/dns4/v1-a/tcp/4001 ...), and the dev chain is
//     "devchain" on the chain network. Services resolve to their task's
//     own address (endpoint_mode dnsrr), not a virtual IP, so libp2p sees
//     its peers' real addresses;
//   - each validator's key is a swarm secret mounted at
//     /run/secrets/validator.key with mode 0400 (the sidecars refuse keys
//     readable by group or others): no installer runs first. The
//     committee file is a swarm config;
//   - ports are published in host mode (dnsrr allows no routing mesh) on
//     the node running the task, on every interface: swarm cannot bind a
//     published port to 127.0.0.1;
//   - swarm has no start order (depends_on): a sidecar that starts before
//     the dev chain answers exits and is restarted (restart_policy
//     on-failure) unless Restart is "no".
//
// Committees from the chain (EpochLength, Spares) and the monitoring
// profile are not part of the stack yet.

// StackFile is the swarm stack file GenerateSwarm writes.
const StackFile = "docker-stack.yml"

// StackVersion is the stack file format: docker stack deploy reads the
// compose file format 3.x.
const StackVersion = "3.8"

// Swarm paths inside the containers.
const (
	// swarmKeyFile is where a sidecar's key secret is mounted.
	swarmKeyFile = "/run/secrets/" + InstalledKeyFile
	// swarmKeyMode is the key secret's file mode: the sidecars refuse
	// keys readable by group or others.
	swarmKeyMode = 0o400
	// swarmConfigMode is the committee config's mode (public data).
	swarmConfigMode = 0o444
	// swarmRuntimeUID owns the secrets: the image runs as root (FROM
	// scratch without a USER).
	swarmRuntimeUID = "0"
)

// SwarmChainHost is the dev chain's name on the chain network.
const SwarmChainHost = "devchain"

// SwarmMeshHost is validator name's host name on mesh network net ("a" or
// "b"): a network alias of its service.
func SwarmMeshHost(name, net string) string { return name + "-" + net }

// SwarmService is the swarm service of a stack's service: docker stack
// deploy prefixes every name with the stack's.
func SwarmService(stack, service string) string { return stack + "_" + service }

// swarmRestart maps Config.Restart to a swarm restart condition.
func swarmRestart(r string) string {
	switch r {
	case "no":
		return "none"
	case "on-failure":
		return "on-failure"
	default:
		return "any"
	}
}

type stackPort struct {
	Target    int    `yaml:"target"`
	Published int    `yaml:"published"`
	Protocol  string `yaml:"protocol"`
	Mode      string `yaml:"mode"`
}

type stackFileRef struct {
	Source string `yaml:"source"`
	Target string `yaml:"target"`
	UID    quoted `yaml:"uid,omitempty"`
	GID    quoted `yaml:"gid,omitempty"`
	// Mode is written in decimal: YAML 1.2 (which docker's loader reads)
	// takes 0400 for four hundred.
	Mode int `yaml:"mode"`
}

type stackRestart struct {
	Condition string `yaml:"condition"`
	Delay     string `yaml:"delay,omitempty"`
}

type stackDeploy struct {
	Replicas      int          `yaml:"replicas"`
	EndpointMode  string       `yaml:"endpoint_mode"`
	RestartPolicy stackRestart `yaml:"restart_policy"`
}

type stackHealth struct {
	Test        []quoted `yaml:"test,flow,omitempty"`
	Interval    string   `yaml:"interval,omitempty"`
	Timeout     string   `yaml:"timeout,omitempty"`
	Retries     int      `yaml:"retries,omitempty"`
	StartPeriod string   `yaml:"start_period,omitempty"`
	Disable     bool     `yaml:"disable,omitempty"`
}

type stackNetAttach struct {
	Aliases []string `yaml:"aliases,flow,omitempty"`
}

type stackService struct {
	Image           string         `yaml:"image"`
	Entrypoint      []quoted       `yaml:"entrypoint,flow,omitempty"`
	Command         []quoted       `yaml:"command,flow,omitempty"`
	Environment     *ordered       `yaml:"environment,omitempty"`
	Volumes         []quoted       `yaml:"volumes,omitempty"`
	Secrets         []stackFileRef `yaml:"secrets,omitempty"`
	Configs         []stackFileRef `yaml:"configs,omitempty"`
	Networks        *ordered       `yaml:"networks"`
	Ports           []stackPort    `yaml:"ports,omitempty"`
	Healthcheck     stackHealth    `yaml:"healthcheck"`
	StopGracePeriod string         `yaml:"stop_grace_period,omitempty"`
	Deploy          stackDeploy    `yaml:"deploy"`
}

// validateSwarm checks what a stack cannot carry yet.
func (c Config) validateSwarm() error {
	var errs []error
	if c.EpochLength > 0 || c.Spares > 0 {
		errs = append(errs, errors.New("testnet: swarm: EpochLength and Spares must be 0 (committees from the chain need the bindings in each sidecar's data directory, which the stack does not install yet)"))
	}
	return errors.Join(errs...)
}

// swarmLayout rewrites the plan's addresses for a stack: names instead of
// static addresses.
func (p *plan) swarmLayout() {
	m := &p.manifest
	m.Stack = m.Project
	m.Chain.IP = SwarmChainHost
	for i := range m.Sidecars {
		s := &m.Sidecars[i]
		s.ChainIP = s.Name
		s.MeshAIP, s.MeshBIP = SwarmMeshHost(s.Name, "a"), SwarmMeshHost(s.Name, "b")
		s.Metrics = fmt.Sprintf("%s:%d", s.Name, containerAPIPort)
	}
	for i := range m.LightClient {
		lc := &m.LightClient[i]
		lc.ChainIP, lc.MeshAIP, lc.MeshBIP = "", "", ""
	}
}

func swarmMeshAddrs(s Sidecar, port int) []string {
	var out []string
	for _, h := range []string{s.MeshAIP, s.MeshBIP} {
		out = append(out, fmt.Sprintf("/dns4/%s/tcp/%d", h, port), fmt.Sprintf("/dns4/%s/udp/%d/quic-v1", h, port))
	}
	return out
}

func (p *plan) stack() ([]byte, error) {
	m := p.manifest
	cfg := p.cfg
	restart := stackRestart{Condition: swarmRestart(cfg.Restart), Delay: "2s"}
	deploy := stackDeploy{Replicas: 1, EndpointMode: "dnsrr", RestartPolicy: restart}
	chainVolume := "chain-data"
	services := newOrdered()
	services.set(m.Chain.Service, stackService{
		Image:      cfg.Image,
		Entrypoint: quoteAll([]string{"/allegro-dev"}),
		Command: quoteAll([]string{"devchain", "--host", "0.0.0.0", "--port", strconv.Itoa(containerChainPort),
			"--datadir", "/data/chain", "--chain-id", strconv.FormatUint(cfg.ChainID, 10),
			"--block-period", cfg.BlockPeriod.String(), "--load-accounts", strconv.Itoa(cfg.LoadAccounts)}),
		Volumes:  []quoted{quoted(chainVolume + ":/data")},
		Networks: newOrdered().set("chain", stackNetAttach{Aliases: []string{SwarmChainHost}}),
		Ports:    []stackPort{{Target: containerChainPort, Published: cfg.ChainPort, Protocol: "tcp", Mode: "host"}},
		Healthcheck: stackHealth{
			Test:     quoteAll([]string{"CMD", "/allegro", "healthcheck", "--quiet", "--jsonrpc", "--url", fmt.Sprintf("http://127.0.0.1:%d", containerChainPort)}),
			Interval: "2s", Timeout: "3s", Retries: 30, StartPeriod: "5s",
		},
		StopGracePeriod: "20s",
		Deploy:          deploy,
	})

	committeeRef := stackFileRef{Source: "committee", Target: "/config/committee.toml", Mode: swarmConfigMode}
	p2pListen := fmt.Sprintf("/ip4/0.0.0.0/tcp/%d,/ip4/0.0.0.0/udp/%d/quic-v1", cfg.P2PPort, cfg.P2PPort)
	secrets := newOrdered()
	volumes := newOrdered().set(chainVolume, map[string]string{"name": cfg.Project + "-chain-data"})
	for _, s := range m.Sidecars {
		env := newOrdered().
			set("ALLEGRO_DATA_DIR", quoted("/data")).
			set("ALLEGRO_KEY_FILE", quoted(swarmKeyFile)).
			set("ALLEGRO_COMMITTEE_FILE", quoted(committeeRef.Target)).
			set("ALLEGRO_CHAIN_RPC", quoted(fmt.Sprintf("ws://%s:%d", SwarmChainHost, containerChainPort))).
			set("ALLEGRO_API_LISTEN", quoted(fmt.Sprintf("0.0.0.0:%d", containerAPIPort))).
			set("ALLEGRO_P2P_LISTEN", quoted(p2pListen)).
			set("ALLEGRO_P2P_ANNOUNCE", quoted(strings.Join(swarmMeshAddrs(s, cfg.P2PPort), ","))).
			set("ALLEGRO_LOG_LEVEL", quoted(cfg.LogLevel))
		if cfg.CertRouting != "" {
			env.set("ALLEGRO_CERT_ROUTING", quoted(cfg.CertRouting))
		}
		if s.Byzantine != "" {
			// docker stack deploy substitutes the variable from its own
			// environment, as compose does; a runner switches a
			// deployed service with docker service update --env-add.
			env.set("ALLEGRO_BYZANTINE", quoted(fmt.Sprintf("${%s-%s}", ByzantineEnv(s.Name), s.Byzantine)))
			env.set("ALLEGRO_DOPPELGANGER_WINDOW", quoted("0s"))
		}
		secret := s.Name + "-key"
		secrets.set(secret, newOrdered().
			set("file", "./"+KeysDir+"/"+s.Name+".key").
			set("name", cfg.Project+"-"+secret))
		volume := s.Name + "-data"
		volumes.set(volume, map[string]string{"name": cfg.Project + "-" + volume})
		services.set(s.Name, stackService{
			Image:       cfg.Image,
			Command:     []quoted{"sidecar"},
			Environment: env,
			Volumes:     []quoted{quoted(volume + ":/data")},
			Secrets: []stackFileRef{{Source: secret, Target: InstalledKeyFile,
				UID: swarmRuntimeUID, GID: swarmRuntimeUID, Mode: swarmKeyMode}},
			Configs: []stackFileRef{committeeRef},
			Networks: newOrdered().
				set("chain", stackNetAttach{}).
				set("mesh-a", stackNetAttach{Aliases: []string{s.MeshAIP}}).
				set("mesh-b", stackNetAttach{Aliases: []string{s.MeshBIP}}),
			Ports: []stackPort{{Target: containerAPIPort, Published: cfg.APIPortBase + sidecarIndex(s.Name) - 1, Protocol: "tcp", Mode: "host"}},
			// Liveness, not readiness: swarm puts a task in its
			// service's DNS only once healthy, and a sidecar is ready
			// only once it reaches its peers by those names. Swarm
			// replaces a task that turns unhealthy.
			Healthcheck: stackHealth{
				Test:     quoteAll([]string{"CMD", "/allegro", "healthcheck", "--quiet", "--url", fmt.Sprintf("http://127.0.0.1:%d/livez", containerAPIPort)}),
				Interval: "2s", Timeout: "3s", Retries: 15, StartPeriod: "30s",
			},
			StopGracePeriod: "20s",
			Deploy:          deploy,
		})
	}
	for _, lc := range m.LightClient {
		cmd := []string{"watch", "--json", "--with-qc", "--committee", committeeRef.Target,
			"--listen", "/ip4/0.0.0.0/tcp/0", "--listen", "/ip4/0.0.0.0/udp/0/quic-v1", "--log-level", cfg.LogLevel}
		for _, a := range lc.Watch {
			cmd = append(cmd, "--address", a)
		}
		services.set(lc.Name, stackService{
			Image:       cfg.Image,
			Command:     quoteAll(cmd),
			Configs:     []stackFileRef{committeeRef},
			Networks:    newOrdered().set("mesh-a", stackNetAttach{}).set("mesh-b", stackNetAttach{}),
			Healthcheck: stackHealth{Disable: true},
			// A light client serves no HTTP; it retries its peers itself.
			StopGracePeriod: "10s",
			Deploy:          stackDeploy{Replicas: 1, EndpointMode: "dnsrr", RestartPolicy: stackRestart{Condition: "on-failure", Delay: "2s"}},
		})
	}

	networks := m.networksDoc(func(n *ordered) *ordered { return n.set("driver", "overlay").set("attachable", true) })
	configs := newOrdered().set("committee", newOrdered().
		set("file", "./"+CommitteeFile).
		set("name", cfg.Project+"-committee"))

	doc := newOrdered().
		set("version", StackVersion).
		set("services", services).
		set("networks", networks).
		set("volumes", volumes).
		set("secrets", secrets).
		set("configs", configs)
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Allegro testnet %q as a docker swarm stack: %d validators (quorum %d), %d light client(s), dev chain %d.\n",
		m.Project, m.Validators, m.Quorum, len(m.LightClient), m.ChainID)
	b.WriteString("# Generated by `allegro-dev testnet gen --format swarm`; the keys in keys/ are throw-away TEST keys.\n")
	b.WriteString("# Every node must have the image (one node: build it; several: push it to a registry they reach), then\n")
	fmt.Fprintf(&b, "#   docker stack deploy --resolve-image never -c %s %s     (on a swarm manager)\n", StackFile, m.Project)
	fmt.Fprintf(&b, "# Remove: docker stack rm %s; the volumes %s-* stay until docker volume rm.\n", m.Project, m.Project)
	if err := encodeYAML(&b, doc); err != nil {
		return nil, fmt.Errorf("testnet: encode stack file: %w", err)
	}
	return b.Bytes(), nil
}

func sidecarIndex(name string) int {
	i, _ := validatorIndex(name)
	return i
}
