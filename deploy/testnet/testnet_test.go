package testnet

import (
	"crypto/ed25519"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/sidecar"
	"github.com/allegro-mesh/allegro/tempo"
)

// composeDoc is the part of a compose file the tests read back.
type composeDoc struct {
	Version  string `yaml:"version"`
	Services map[string]struct {
		Image         string            `yaml:"image"`
		ContainerName string            `yaml:"container_name"`
		Profiles      []string          `yaml:"profiles"`
		Entrypoint    []string          `yaml:"entrypoint"`
		Command       []string          `yaml:"command"`
		Restart       string            `yaml:"restart"`
		NetworkMode   string            `yaml:"network_mode"`
		Environment   map[string]string `yaml:"environment"`
		Volumes       []string          `yaml:"volumes"`
		Networks      map[string]struct {
			IPv4 string `yaml:"ipv4_address"`
		} `yaml:"networks"`
		Ports       []string                     `yaml:"ports"`
		DependsOn   map[string]map[string]string `yaml:"depends_on"`
		Healthcheck struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
	Networks map[string]struct {
		Name string `yaml:"name"`
		IPAM struct {
			Config []struct {
				Subnet string `yaml:"subnet"`
			} `yaml:"config"`
		} `yaml:"ipam"`
	} `yaml:"networks"`
	Volumes map[string]struct {
		Name string `yaml:"name"`
	} `yaml:"volumes"`
}

func TestGenerate(t *testing.T) {
	for _, tc := range []struct {
		n, quorum, lightClients int
		byzantine               map[string]string
		certRouting             string
	}{
		{n: 4, quorum: 3, lightClients: 1},
		{n: 7, quorum: 5, lightClients: 2, byzantine: map[string]string{"v7": sidecar.ByzantineEquivocate}},
		{n: 10, quorum: 7, lightClients: 0, byzantine: map[string]string{"v1": sidecar.ByzantineInvalidSignatures}, certRouting: "entry"},
	} {
		cfg := DefaultConfig()
		cfg.Validators, cfg.LightClients, cfg.Byzantine, cfg.CertRouting = tc.n, tc.lightClients, tc.byzantine, tc.certRouting
		cfg.Project = "allegro-e2e-gen"
		dir := t.TempDir()
		m, err := Generate(cfg, dir)
		if err != nil {
			t.Fatalf("n=%d: %v", tc.n, err)
		}
		if m.Quorum != tc.quorum || m.F != tc.n-tc.quorum || len(m.Sidecars) != tc.n || len(m.LightClient) != tc.lightClients {
			t.Fatalf("n=%d: manifest quorum %d f %d sidecars %d light clients %d", tc.n, m.Quorum, m.F, len(m.Sidecars), len(m.LightClient))
		}

		// The committee file loads, has n members with the keys written,
		// and the quorum is right.
		f, err := committee.LoadFile(filepath.Join(dir, CommitteeFile))
		if err != nil {
			t.Fatalf("n=%d: %v", tc.n, err)
		}
		c, err := f.Committee()
		if err != nil || c.N() != tc.n || c.Quorum() != tc.quorum || !f.TestNetwork {
			t.Fatalf("n=%d: committee n %d quorum %d test_network %v: %v", tc.n, c.N(), c.Quorum(), f.TestNetwork, err)
		}
		for i, s := range m.Sidecars {
			name, key, err := committee.LoadKeyFile(filepath.Join(dir, KeysDir, s.Name+".key"))
			if err != nil || name != s.Name {
				t.Fatalf("key %s: %q %v", s.Name, name, err)
			}
			if f.Members[i].Name != s.Name || !strings.EqualFold(f.Members[i].PublicKey, s.PublicKey) ||
				!strings.EqualFold(s.PublicKey, hexPub(key)) {
				t.Fatalf("member %d %+v does not match key file of %s", i, f.Members[i], s.Name)
			}
			if len(f.Members[i].Addrs) != 4 || !strings.Contains(f.Members[i].Addrs[0], s.MeshAIP) || !strings.Contains(f.Members[i].Addrs[2], s.MeshBIP) {
				t.Fatalf("member %s addrs %v", s.Name, f.Members[i].Addrs)
			}
		}

		// The compose file parses; every service, address, port and volume
		// is where the manifest says.
		raw, err := os.ReadFile(filepath.Join(dir, ComposeFile))
		if err != nil {
			t.Fatal(err)
		}
		var doc composeDoc
		if err := yaml.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("n=%d: compose does not parse: %v\n%s", tc.n, err, raw)
		}
		// devchain, keys, v1..vn, lc1..lcK, prometheus, grafana.
		if doc.Version != ComposeVersion || len(doc.Services) != 2+tc.n+tc.lightClients+2 || len(doc.Networks) != 3 || len(doc.Volumes) != 1+tc.n {
			t.Fatalf("n=%d: compose version %q, %d services, %d networks, %d volumes", tc.n, doc.Version, len(doc.Services), len(doc.Networks), len(doc.Volumes))
		}
		for key, want := range map[string]string{"chain": m.Networks.ChainSubnet, "mesh-a": m.Networks.MeshASubnet, "mesh-b": m.Networks.MeshBSubnet} {
			nw := doc.Networks[key]
			if len(nw.IPAM.Config) != 1 || nw.IPAM.Config[0].Subnet != want || !strings.HasPrefix(nw.Name, cfg.Project+"-") {
				t.Fatalf("network %s: %+v", key, nw)
			}
		}
		chain := doc.Services["devchain"]
		if chain.ContainerName != m.Chain.Container || chain.Networks["chain"].IPv4 != m.Chain.IP ||
			!contains(chain.Command, "--datadir") || len(chain.Ports) != 1 || chain.Ports[0] != "127.0.0.1:8545:8545" ||
			chain.Restart != DefaultRestart || len(chain.Profiles) != 0 {
			t.Fatalf("devchain service %+v", chain)
		}
		inSubnet := func(ip, cidr string) bool {
			_, n, err := net.ParseCIDR(cidr)
			return err == nil && n.Contains(net.ParseIP(ip))
		}
		ips := map[string]bool{}
		for i, s := range m.Sidecars {
			svc, ok := doc.Services[s.Name]
			if !ok {
				t.Fatalf("no service %s", s.Name)
			}
			if svc.Image != cfg.Image || svc.ContainerName != cfg.Project+"-"+s.Name || svc.Command[0] != "sidecar" {
				t.Fatalf("service %s: %+v", s.Name, svc)
			}
			for net, ip := range map[string]string{"chain": s.ChainIP, "mesh-a": s.MeshAIP, "mesh-b": s.MeshBIP} {
				if svc.Networks[net].IPv4 != ip || ips[ip] {
					t.Fatalf("service %s network %s: %q (want unique %s)", s.Name, net, svc.Networks[net].IPv4, ip)
				}
				ips[ip] = true
			}
			if !inSubnet(s.ChainIP, m.Networks.ChainSubnet) || !inSubnet(s.MeshAIP, m.Networks.MeshASubnet) || !inSubnet(s.MeshBIP, m.Networks.MeshBSubnet) {
				t.Fatalf("sidecar %s addresses outside their subnets: %+v", s.Name, s)
			}
			wantPort := "127.0.0.1:" + itoa(cfg.APIPortBase+i) + ":7070"
			if len(svc.Ports) != 1 || svc.Ports[0] != wantPort || s.API != "127.0.0.1:"+itoa(cfg.APIPortBase+i) {
				t.Fatalf("service %s ports %v, want %s", s.Name, svc.Ports, wantPort)
			}
			env := svc.Environment
			if env["ALLEGRO_CHAIN_RPC"] != "ws://"+m.Chain.IP+":8545" || !strings.Contains(env["ALLEGRO_P2P_ANNOUNCE"], s.MeshAIP) ||
				!strings.Contains(env["ALLEGRO_P2P_ANNOUNCE"], s.MeshBIP) || strings.Contains(env["ALLEGRO_P2P_ANNOUNCE"], s.ChainIP) {
				t.Fatalf("service %s environment %v", s.Name, env)
			}
			if got, set := env["ALLEGRO_CERT_ROUTING"]; got != tc.certRouting || set != (tc.certRouting != "") {
				t.Fatalf("service %s: ALLEGRO_CERT_ROUTING %q (set %v), want %q", s.Name, got, set, tc.certRouting)
			}
			if mode := tc.byzantine[s.Name]; mode != "" {
				if env["ALLEGRO_BYZANTINE"] != "${"+ByzantineEnv(s.Name)+"-"+mode+"}" || s.Byzantine != mode {
					t.Fatalf("Byzantine %s: environment %q manifest %q", s.Name, env["ALLEGRO_BYZANTINE"], s.Byzantine)
				}
				// Honest again, it must not take its own Byzantine
				// certificates for a doppelganger's.
				if env["ALLEGRO_DOPPELGANGER_WINDOW"] != "0s" {
					t.Fatalf("Byzantine %s: doppelganger window %q, want 0s", s.Name, env["ALLEGRO_DOPPELGANGER_WINDOW"])
				}
			} else if _, ok := env["ALLEGRO_BYZANTINE"]; ok {
				t.Fatalf("honest %s has ALLEGRO_BYZANTINE", s.Name)
			} else if _, ok := env["ALLEGRO_DOPPELGANGER_WINDOW"]; ok {
				t.Fatalf("honest %s has its doppelganger check turned off", s.Name)
			}
			// A sidecar's health is its readiness.
			if svc.DependsOn["devchain"]["condition"] != "service_healthy" || !contains(svc.Healthcheck.Test, "healthcheck") ||
				!contains(svc.Healthcheck.Test, "http://127.0.0.1:7070/readyz") {
				t.Fatalf("service %s depends_on %v healthcheck %v", s.Name, svc.DependsOn, svc.Healthcheck.Test)
			}
			if svc.Restart != DefaultRestart || len(svc.Profiles) != 0 {
				t.Fatalf("service %s restart %q profiles %v", s.Name, svc.Restart, svc.Profiles)
			}
			// The key comes from the sidecar's own volume, where the keys
			// service installed it before the sidecar started; nothing of
			// keys/ is mounted into a sidecar.
			if env["ALLEGRO_KEY_FILE"] != "/data/"+InstalledKeyFile || svc.DependsOn["keys"]["condition"] != "service_completed_successfully" ||
				!contains(svc.Volumes, cfg.Project+"-"+s.Name+"-data:/data") {
				t.Fatalf("service %s key file %q depends_on %v volumes %v", s.Name, env["ALLEGRO_KEY_FILE"], svc.DependsOn, svc.Volumes)
			}
			for _, v := range svc.Volumes {
				if strings.Contains(v, KeysDir+"/") {
					t.Fatalf("service %s mounts a key from the host: %s", s.Name, v)
				}
			}
		}
		// The keys service installs every validator's key into that
		// validator's data volume, runs once (no restart) and is not
		// health-checked as a sidecar.
		keys := doc.Services["keys"]
		if keys.Restart != "no" || keys.NetworkMode != "none" || len(keys.Profiles) != 0 || !contains(keys.Entrypoint, "/allegro-dev") ||
			!contains(keys.Command, "install-keys") || !contains(keys.Volumes, "./keys:/keys:ro") || !contains(keys.Healthcheck.Test, "NONE") {
			t.Fatalf("keys service %+v", keys)
		}
		for _, s := range m.Sidecars {
			if !contains(keys.Command, s.Name) || !contains(keys.Volumes, cfg.Project+"-"+s.Name+"-data:/install/"+s.Name) {
				t.Fatalf("keys service does not install %s: command %v volumes %v", s.Name, keys.Command, keys.Volumes)
			}
		}
		// Monitoring only behind its profile, so a plain `up` pulls nothing.
		for _, name := range []string{"prometheus", "grafana"} {
			svc := doc.Services[name]
			if len(svc.Profiles) != 1 || svc.Profiles[0] != MonitoringProfile || svc.ContainerName != cfg.Project+"-"+name {
				t.Fatalf("%s service %+v", name, svc)
			}
		}
		for name, svc := range doc.Services {
			if name != "prometheus" && name != "grafana" && svc.Image != cfg.Image {
				t.Fatalf("service %s outside the monitoring profile uses image %q", name, svc.Image)
			}
		}
		checkPrometheus(t, dir, m)

		for _, lc := range m.LightClient {
			svc := doc.Services[lc.Name]
			if len(lc.Watch) != cfg.Watch || !contains(svc.Command, "--with-qc") || !contains(svc.Command, lc.Watch[0]) || len(svc.DependsOn) != tc.n {
				t.Fatalf("light client %s: %+v", lc.Name, svc)
			}
			if _, onChain := svc.Networks["chain"]; onChain || svc.Networks["mesh-a"].IPv4 != lc.MeshAIP {
				t.Fatalf("light client %s networks %+v", lc.Name, svc.Networks)
			}
		}

		// The manifest round-trips.
		back, err := LoadManifest(dir)
		if err != nil || back.Quorum != tc.quorum || len(back.Sidecars) != tc.n {
			t.Fatalf("manifest: %+v %v", back, err)
		}
		// Generating again into the same directory is refused.
		if _, err := Generate(cfg, dir); err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("second Generate: %v", err)
		}
	}
}

// checkPrometheus: prometheus.yml scrapes every sidecar's /metrics on its
// chain address and API port, labelled with its name, and Grafana's data
// source points at the Prometheus container.
func checkPrometheus(t *testing.T, dir string, m *Manifest) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, PrometheusFile))
	if err != nil {
		t.Fatal(err)
	}
	var pc PrometheusConfig
	if err := yaml.Unmarshal(raw, &pc); err != nil {
		t.Fatalf("%s: %v", PrometheusFile, err)
	}
	if len(pc.ScrapeConfigs) != 1 || pc.ScrapeConfigs[0].JobName != SidecarJob || pc.ScrapeConfigs[0].MetricsPath != "/metrics" {
		t.Fatalf("%s: %+v", PrometheusFile, pc)
	}
	targets := map[string]string{}
	for _, sc := range pc.ScrapeConfigs[0].StaticConfigs {
		for _, tg := range sc.Targets {
			targets[tg] = sc.Labels["instance"]
		}
	}
	if len(targets) != len(m.Sidecars) {
		t.Fatalf("%s scrapes %d targets for %d sidecars: %v", PrometheusFile, len(targets), len(m.Sidecars), targets)
	}
	for _, s := range m.Sidecars {
		want := s.ChainIP + ":7070"
		if s.Metrics != want || targets[want] != s.Name {
			t.Fatalf("sidecar %s: manifest metrics %q, %s target %q labelled %q", s.Name, s.Metrics, PrometheusFile, want, targets[want])
		}
	}
	ds, err := os.ReadFile(filepath.Join(dir, grafanaDatasources))
	if err != nil || !strings.Contains(string(ds), "url: http://"+strings.TrimSuffix(m.Chain.IP, ".2")+".3:9090") {
		t.Fatalf("grafana data source %s: %v", ds, err)
	}
	if d, err := os.ReadFile(filepath.Join(dir, grafanaDashboard)); err != nil || !strings.Contains(string(d), "allegro_bulletin_time_to_qc_seconds") {
		t.Fatalf("grafana dashboard not written: %v", err)
	}
}

// TestInstallKeys: keys are installed 0600 whatever their mode in keys/
// (a git checkout makes them 0644), replace an earlier install, and a key
// of another validator or a broken one is refused.
func TestInstallKeys(t *testing.T) {
	src, into := t.TempDir(), t.TempDir()
	keys := map[string]ed25519.PrivateKey{}
	for _, name := range []string{"v1", "v2"} {
		k, err := committee.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		keys[name] = k
		path := filepath.Join(src, name+".key")
		if err := committee.WriteKeyFile(path, name, k); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // installing again replaces the key in place
		if err := InstallKeys(src, into, []string{"v1", "v2"}); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range keys {
		path := filepath.Join(into, name, InstalledKeyFile)
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", path, st.Mode(), err)
		}
		got, key, err := committee.LoadKeyFile(path)
		if err != nil || got != name || !key.Equal(want) {
			t.Fatalf("%s: %q %v", path, got, err)
		}
		if entries, _ := os.ReadDir(filepath.Join(into, name)); len(entries) != 1 {
			t.Fatalf("%s holds %d files, want only the key", filepath.Join(into, name), len(entries))
		}
	}
	if err := os.Rename(filepath.Join(src, "v2.key"), filepath.Join(src, "v3.key")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "v4.key"), []byte("private_key = \"zz\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, want string }{
		{"v3", `holds the key of "v2"`},
		{"v4", "private_key"},
		{"v5", "no such file"},
		{"x1", "not a validator name"},
	} {
		if err := InstallKeys(src, into, []string{tc.name}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
		if _, err := os.Stat(filepath.Join(into, tc.name, InstalledKeyFile)); err == nil {
			t.Errorf("%s: a refused key was installed", tc.name)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	cases := []struct {
		name   string
		mutate func(*Config)
		field  string
	}{
		{"no validators", func(c *Config) { c.Validators = 0 }, "Validators"},
		{"too many validators", func(c *Config) { c.Validators = MaxValidators + 1 }, "Validators"},
		{"negative light clients", func(c *Config) { c.LightClients = -1 }, "LightClients"},
		{"no watch", func(c *Config) { c.Watch = 0 }, "Watch"},
		{"bad project", func(c *Config) { c.Project = "Allegro E2E" }, "Project"},
		{"no image", func(c *Config) { c.Image = "" }, "Image"},
		{"api ports overflow", func(c *Config) { c.APIPortBase = 65534 }, "APIPortBase"},
		{"chain port collides", func(c *Config) { c.ChainPort = c.APIPortBase + 1 }, "ChainPort"},
		{"bad subnet prefix", func(c *Config) { c.SubnetPrefix = "10.300" }, "SubnetPrefix"},
		{"subnet prefix too high", func(c *Config) { c.SubnetPrefix = "10.255" }, "SubnetPrefix"},
		{"no chain id", func(c *Config) { c.ChainID = 0 }, "ChainID"},
		{"no block period", func(c *Config) { c.BlockPeriod = 0 }, "BlockPeriod"},
		{"bad log level", func(c *Config) { c.LogLevel = "loud" }, "LogLevel"},
		{"bad restart policy", func(c *Config) { c.Restart = "sometimes" }, "Restart"},
		{"no prometheus image", func(c *Config) { c.PrometheusImage = "" }, "PrometheusImage"},
		{"prometheus port collides", func(c *Config) { c.PrometheusPort = c.APIPortBase }, "PrometheusPort"},
		{"grafana port out of range", func(c *Config) { c.GrafanaPort = 70000 }, "GrafanaPort"},
		{"monitoring ports equal", func(c *Config) { c.GrafanaPort = c.PrometheusPort }, "GrafanaPort"},
		{"byzantine unknown validator", func(c *Config) { c.Byzantine = map[string]string{"v9": sidecar.ByzantineEquivocate} }, "Byzantine"},
		{"byzantine unknown mode", func(c *Config) { c.Byzantine = map[string]string{"v1": "lie"} }, "Byzantine[v1]"},
		{"negative spares", func(c *Config) { c.Spares = -1 }, "Spares"},
		{"spares without epochs", func(c *Config) { c.Spares = 1 }, "EpochLength"},
		{"epochs too short", func(c *Config) { c.EpochLength = 2 }, "EpochLength"},
		{"api ports overflow with spares", func(c *Config) { c.APIPortBase, c.EpochLength, c.Spares = 65532, 10, 1 }, "APIPortBase"},
		{"byzantine outside a test network", func(c *Config) {
			c.Byzantine = map[string]string{"v1": sidecar.ByzantineEquivocate}
			c.TestNetwork = false
		}, "TestNetwork"},
	}
	for _, tc := range cases {
		cfg := DefaultConfig()
		tc.mutate(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: error %v, want one naming %s", tc.name, err, tc.field)
		}
	}
}

func TestCheckSubnets(t *testing.T) {
	if err := CheckSubnets("10.231", []string{"172.17.0.0/16", "10.232.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	if err := CheckSubnets("10.231", []string{"10.231.2.0/24"}); err == nil || !strings.Contains(err.Error(), "10.231.2.0/24") {
		t.Fatalf("overlap not reported: %v", err)
	}
	if err := CheckSubnets("10.231", []string{"10.0.0.0/8"}); err == nil {
		t.Fatal("overlap with a wider network not reported")
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func itoa(i int) string { return strconv.Itoa(i) }

func hexPub(k ed25519.PrivateKey) string { return hex.EncodeToString(k.Public().(ed25519.PublicKey)) }

// TestCheckedInExamples: the example testnets under deploy/ are what the
// generator writes today (their compose files do not depend on the keys),
// so a change to the generator cannot leave them behind.
func TestCheckedInExamples(t *testing.T) {
	for _, ex := range []struct {
		dir                        string
		validators, lightClients   int
		byzantine, project, prefix string
		apiPortBase, chainPort     int
	}{
		{"../testnet-4", 4, 1, "v4", "allegro-e2e-testnet4", "10.231", 7071, 8545},
		{"../testnet-7", 7, 2, "v7", "allegro-e2e-testnet7", "10.232", 7171, 8546},
	} {
		cfg := DefaultConfig()
		cfg.Validators, cfg.LightClients, cfg.Project, cfg.SubnetPrefix = ex.validators, ex.lightClients, ex.project, ex.prefix
		cfg.APIPortBase, cfg.ChainPort = ex.apiPortBase, ex.chainPort
		cfg.Byzantine = map[string]string{ex.byzantine: sidecar.ByzantineEquivocate}
		dir := t.TempDir()
		if _, err := Generate(cfg, dir); err != nil {
			t.Fatalf("%s: %v", ex.dir, err)
		}
		for _, name := range []string{ComposeFile, PrometheusFile, grafanaDatasources, grafanaProviders, grafanaDashboard, filepath.Join(KeysDir, "README.txt")} {
			want, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(ex.dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("%s/%s differs from the generator's output; regenerate it (deploy/README.md)", ex.dir, name)
			}
		}
	}
}

// TestGenerateWithEpochs checks a network whose committees come from the dev
// chain: consensus keys, bindings the committee derivation accepts, the
// chain's genesis set without the spare, and the compose wiring (the chain
// reads the genesis set, the key installer copies the bindings, light
// clients follow the chain).
func TestGenerateWithEpochs(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Project, cfg.EpochLength, cfg.Spares, cfg.LightClients = "allegro-e2e-epochs", 12, 1, 1
	dir := t.TempDir()
	m, err := Generate(cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Sidecars) != 5 || len(m.Members()) != 4 || !m.Sidecars[4].Spare || m.Quorum != 3 || m.EpochLength != 12 {
		t.Fatalf("manifest: %d sidecars, %d members, quorum %d, epoch length %d", len(m.Sidecars), len(m.Members()), m.Quorum, m.EpochLength)
	}
	f, err := committee.LoadFile(filepath.Join(dir, CommitteeFile))
	if err != nil {
		t.Fatal(err)
	}
	if !f.FromChain() || f.EpochLength != 12 || len(f.Members) != 5 {
		t.Fatalf("committee file: from chain %v, epoch length %d, %d members", f.FromChain(), f.EpochLength, len(f.Members))
	}
	genesis, err := committee.LoadFile(filepath.Join(dir, GenesisValidatorsFile))
	if err != nil {
		t.Fatal(err)
	}
	var set []tempo.Validator
	for i, mem := range genesis.Members {
		s := m.Sidecars[i]
		if mem.Name != s.Name || !strings.EqualFold(mem.PublicKey, s.ConsensusKey) || s.Spare {
			t.Fatalf("genesis member %d %+v is not %s's consensus key", i, mem, s.Name)
		}
		name, key, err := committee.LoadKeyFile(filepath.Join(dir, s.ConsensusKeyFile))
		if err != nil || name != s.Name || hexPub(key) != s.ConsensusKey {
			t.Fatalf("consensus key file of %s: %q %v", s.Name, name, err)
		}
		set = append(set, tempo.Validator{PublicKey: [32]byte(key.Public().(ed25519.PublicKey)), Active: true, Index: uint64(i)})
	}
	if len(set) != 4 {
		t.Fatalf("genesis set has %d validators, want 4", len(set))
	}
	bindings, bad, err := committee.LoadBindings(filepath.Join(dir, BindingsDir))
	if err != nil || len(bad) != 0 || len(bindings) != 5 {
		t.Fatalf("bindings: %d, %d bad: %v", len(bindings), len(bad), err)
	}
	c, _, err := committee.Derive(cfg.ChainID, 1, set, bindings)
	if err != nil {
		t.Fatal(err)
	}
	if c.N() != 4 || c.Quorum() != 3 || len(c.Members()) != 4 {
		t.Fatalf("derived committee: n %d quorum %d members %d", c.N(), c.Quorum(), len(c.Members()))
	}
	for _, s := range m.Members() {
		id, _ := qc.ValidatorIDFromBytes(mustHex(t, s.PublicKey))
		if _, ok := c.Member(id); !ok {
			t.Fatalf("%s's sidecar key is not in the derived committee", s.Name)
		}
	}
	// The spare joins once its consensus key is on chain.
	spare := m.Sidecars[4]
	key := [32]byte(mustHex(t, spare.ConsensusKey))
	c, _, err = committee.Derive(cfg.ChainID, 2, append(set, tempo.Validator{PublicKey: key, Active: true, Index: 4}), bindings)
	if err != nil || c.N() != 5 {
		t.Fatalf("with the spare added: %v, n %d", err, c.N())
	}

	raw, err := os.ReadFile(filepath.Join(dir, ComposeFile))
	if err != nil {
		t.Fatal(err)
	}
	var doc composeDoc
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	chainCmd := strings.Join(doc.Services["devchain"].Command, " ")
	if !strings.Contains(chainCmd, "--validators /config/"+GenesisValidatorsFile) {
		t.Fatalf("devchain command %q does not read the genesis set", chainCmd)
	}
	install := strings.Join(doc.Services[keysService].Command, " ")
	if !strings.Contains(install, "--bindings /bindings") || !strings.HasSuffix(install, "v1 v2 v3 v4 v5") {
		t.Fatalf("key installer %q", install)
	}
	lc := doc.Services["lc1"]
	lcCmd := strings.Join(lc.Command, " ")
	if !strings.Contains(lcCmd, "--chain-rpc ws://"+m.Chain.IP) || !strings.Contains(lcCmd, "--bindings /config/"+BindingsDir) ||
		lc.Networks["chain"].IPv4 != m.LightClient[0].ChainIP || m.LightClient[0].ChainIP == "" {
		t.Fatalf("light client: command %q, networks %+v", lcCmd, lc.Networks)
	}
	if _, ok := doc.Services["v5"]; !ok {
		t.Fatal("no service for the spare")
	}
}

func TestInstallBindings(t *testing.T) {
	src, into := t.TempDir(), t.TempDir()
	if err := InstallBindings(src, into, []string{"v1"}); err == nil || !strings.Contains(err.Error(), "no binding files") {
		t.Fatalf("empty directory: %v", err)
	}
	for _, name := range []string{"a.toml", "b.toml", "README.txt"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := InstallBindings(src, into, []string{"x"}); err == nil || !strings.Contains(err.Error(), "not a validator name") {
		t.Fatalf("bad name: %v", err)
	}
	if err := InstallBindings(src, into, []string{"v1", "v2"}); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"v1", "v2"} {
		entries, err := os.ReadDir(filepath.Join(into, v, "bindings"))
		if err != nil || len(entries) != 2 {
			t.Fatalf("%s: %d files (want the 2 bindings): %v", v, len(entries), err)
		}
		got, err := os.ReadFile(filepath.Join(into, v, "bindings", "b.toml"))
		if err != nil || string(got) != "b.toml" {
			t.Fatalf("%s: %q %v", v, got, err)
		}
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
