package testnet

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/sidecar"
)

// stackDoc lists the compose file format 3.8 fields docker stack deploy
// reads that a stack may use; the tests decode with KnownFields, so a
// field swarm ignores or refuses (container_name, depends_on,
// ipv4_address, restart, profiles, network_mode) fails them.
type stackDoc struct {
	Version  string `yaml:"version"`
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Entrypoint  []string          `yaml:"entrypoint"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		Secrets     []stackRefDoc     `yaml:"secrets"`
		Configs     []stackRefDoc     `yaml:"configs"`
		Networks    map[string]struct {
			Aliases []string `yaml:"aliases"`
		} `yaml:"networks"`
		Ports []struct {
			Target    int    `yaml:"target"`
			Published int    `yaml:"published"`
			Protocol  string `yaml:"protocol"`
			Mode      string `yaml:"mode"`
		} `yaml:"ports"`
		Healthcheck struct {
			Test        []string `yaml:"test"`
			Interval    string   `yaml:"interval"`
			Timeout     string   `yaml:"timeout"`
			Retries     int      `yaml:"retries"`
			StartPeriod string   `yaml:"start_period"`
			Disable     bool     `yaml:"disable"`
		} `yaml:"healthcheck"`
		StopGracePeriod string `yaml:"stop_grace_period"`
		Deploy          struct {
			Replicas      int    `yaml:"replicas"`
			EndpointMode  string `yaml:"endpoint_mode"`
			RestartPolicy struct {
				Condition string `yaml:"condition"`
				Delay     string `yaml:"delay"`
			} `yaml:"restart_policy"`
		} `yaml:"deploy"`
	} `yaml:"services"`
	Networks map[string]struct {
		Name       string `yaml:"name"`
		Driver     string `yaml:"driver"`
		Attachable bool   `yaml:"attachable"`
		IPAM       struct {
			Config []struct {
				Subnet string `yaml:"subnet"`
			} `yaml:"config"`
		} `yaml:"ipam"`
	} `yaml:"networks"`
	Volumes map[string]struct {
		Name string `yaml:"name"`
	} `yaml:"volumes"`
	Secrets map[string]struct {
		File string `yaml:"file"`
		Name string `yaml:"name"`
	} `yaml:"secrets"`
	Configs map[string]struct {
		File string `yaml:"file"`
		Name string `yaml:"name"`
	} `yaml:"configs"`
}

type stackRefDoc struct {
	Source string `yaml:"source"`
	Target string `yaml:"target"`
	UID    string `yaml:"uid"`
	GID    string `yaml:"gid"`
	Mode   int    `yaml:"mode"`
}

func readStack(t *testing.T, dir string) stackDoc {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, StackFile))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var doc stackDoc
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("stack file does not decode strictly: %v", err)
	}
	return doc
}

func TestGenerateSwarm(t *testing.T) {
	for _, tc := range []struct {
		n, lightClients int
		byzantine       map[string]string
		restart, cond   string
	}{
		{n: 4, lightClients: 1, restart: DefaultRestart, cond: "any"},
		{n: 7, lightClients: 2, byzantine: map[string]string{"v7": sidecar.ByzantineEquivocate}, restart: "on-failure", cond: "on-failure"},
		{n: 4, lightClients: 0, byzantine: map[string]string{"v2": sidecar.ByzantineInvalidSignatures}, restart: "no", cond: "none"},
	} {
		cfg := DefaultConfig()
		cfg.Validators, cfg.LightClients, cfg.Byzantine, cfg.Restart = tc.n, tc.lightClients, tc.byzantine, tc.restart
		cfg.Project = "allegro-e2e-swarmtest"
		dir := t.TempDir()
		m, err := GenerateSwarm(cfg, dir)
		if err != nil {
			t.Fatalf("n=%d: %v", tc.n, err)
		}
		if m.Stack != cfg.Project {
			t.Errorf("manifest stack %q, want %q", m.Stack, cfg.Project)
		}
		for _, absent := range []string{ComposeFile, PrometheusFile} {
			if _, err := os.Stat(filepath.Join(dir, absent)); err == nil {
				t.Errorf("swarm output has %s", absent)
			}
		}
		doc := readStack(t, dir)
		if doc.Version != StackVersion {
			t.Errorf("version %q", doc.Version)
		}
		want := []string{"devchain"}
		for i := 1; i <= tc.n; i++ {
			want = append(want, ValidatorName(i))
		}
		for j := 1; j <= tc.lightClients; j++ {
			want = append(want, "lc"+string(rune('0'+j)))
		}
		var got []string
		for name := range doc.Services {
			got = append(got, name)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("services %v, want %v", got, want)
		}
		for key, nw := range doc.Networks {
			if nw.Driver != "overlay" || !nw.Attachable || len(nw.IPAM.Config) != 1 || !strings.HasPrefix(nw.Name, cfg.Project+"-") {
				t.Errorf("network %s: %+v: want an attachable overlay named after the project with one subnet", key, nw)
			}
		}
		if len(doc.Networks) != 3 {
			t.Errorf("%d networks, want 3", len(doc.Networks))
		}
		chain := doc.Services["devchain"]
		if len(chain.Networks["chain"].Aliases) != 1 || chain.Networks["chain"].Aliases[0] != SwarmChainHost {
			t.Errorf("devchain aliases %v", chain.Networks["chain"].Aliases)
		}
		if len(chain.Healthcheck.Test) == 0 || chain.Healthcheck.Disable {
			t.Error("devchain has no health check")
		}

		cf, err := committee.LoadFile(filepath.Join(dir, CommitteeFile))
		if err != nil {
			t.Fatal(err)
		}
		if len(cf.Members) != tc.n {
			t.Fatalf("%d committee members, want %d", len(cf.Members), tc.n)
		}
		for i, mem := range cf.Members {
			name := ValidatorName(i + 1)
			svc, ok := doc.Services[name]
			if !ok {
				t.Fatalf("no service for member %s", name)
			}
			// The committee names the services' mesh aliases.
			wantAddrs := []string{"/dns4/" + name + "-a/tcp/4001", "/dns4/" + name + "-a/udp/4001/quic-v1",
				"/dns4/" + name + "-b/tcp/4001", "/dns4/" + name + "-b/udp/4001/quic-v1"}
			if !slices.Equal(mem.Addrs, wantAddrs) {
				t.Errorf("%s addrs %v, want %v", name, mem.Addrs, wantAddrs)
			}
			if a := svc.Networks["mesh-a"].Aliases; !slices.Equal(a, []string{name + "-a"}) {
				t.Errorf("%s mesh-a aliases %v", name, a)
			}
			if a := svc.Networks["mesh-b"].Aliases; !slices.Equal(a, []string{name + "-b"}) {
				t.Errorf("%s mesh-b aliases %v", name, a)
			}
			if _, ok := svc.Networks["chain"]; !ok {
				t.Errorf("%s is not on the chain network", name)
			}
			if svc.Environment["ALLEGRO_P2P_ANNOUNCE"] != strings.Join(wantAddrs, ",") {
				t.Errorf("%s announces %q", name, svc.Environment["ALLEGRO_P2P_ANNOUNCE"])
			}
			if svc.Environment["ALLEGRO_CHAIN_RPC"] != "ws://devchain:8545" {
				t.Errorf("%s chain RPC %q", name, svc.Environment["ALLEGRO_CHAIN_RPC"])
			}
			// The key is a secret the sidecar can read and nobody else.
			if len(svc.Secrets) != 1 {
				t.Fatalf("%s secrets %+v", name, svc.Secrets)
			}
			sec := svc.Secrets[0]
			if sec.Mode != 0o400 || "/run/secrets/"+sec.Target != svc.Environment["ALLEGRO_KEY_FILE"] || sec.UID != "0" {
				t.Errorf("%s key secret %+v (key file %q): want mode 0400 at the key file, owned by the image's user", name, sec, svc.Environment["ALLEGRO_KEY_FILE"])
			}
			top, ok := doc.Secrets[sec.Source]
			if !ok || top.File != "./keys/"+name+".key" || top.Name != cfg.Project+"-"+name+"-key" {
				t.Errorf("%s secret %q: %+v", name, sec.Source, top)
			}
			if len(svc.Configs) != 1 || svc.Configs[0].Target != svc.Environment["ALLEGRO_COMMITTEE_FILE"] {
				t.Errorf("%s configs %+v", name, svc.Configs)
			}
			if len(svc.Healthcheck.Test) == 0 || !slices.Contains(svc.Healthcheck.Test, "http://127.0.0.1:7070/livez") {
				t.Errorf("%s health check %v", name, svc.Healthcheck.Test)
			}
			if len(svc.Ports) != 1 || svc.Ports[0].Mode != "host" || svc.Ports[0].Published != cfg.APIPortBase+i || svc.Ports[0].Target != 7070 {
				t.Errorf("%s ports %+v", name, svc.Ports)
			}
			if svc.Deploy.EndpointMode != "dnsrr" || svc.Deploy.Replicas != 1 || svc.Deploy.RestartPolicy.Condition != tc.cond {
				t.Errorf("%s deploy %+v, want dnsrr, 1 replica, restart %s", name, svc.Deploy, tc.cond)
			}
			mode, byz := tc.byzantine[name]
			env, has := svc.Environment["ALLEGRO_BYZANTINE"]
			switch {
			case byz && env != "${"+ByzantineEnv(name)+"-"+mode+"}":
				t.Errorf("%s ALLEGRO_BYZANTINE = %q, want a substitution defaulting to %s", name, env, mode)
			case !byz && has:
				t.Errorf("honest %s has ALLEGRO_BYZANTINE = %q", name, env)
			}
			if vol := svc.Volumes; len(vol) != 1 || vol[0] != name+"-data:/data" || doc.Volumes[name+"-data"].Name != cfg.Project+"-"+name+"-data" {
				t.Errorf("%s volumes %v", name, vol)
			}
		}
		for j := 1; j <= tc.lightClients; j++ {
			lc := doc.Services["lc"+string(rune('0'+j))]
			if !lc.Healthcheck.Disable || !slices.Contains(lc.Command, "watch") {
				t.Errorf("light client %d: %+v", j, lc)
			}
		}
		if len(doc.Secrets) != tc.n || len(doc.Configs) != 1 {
			t.Errorf("%d secrets, %d configs", len(doc.Secrets), len(doc.Configs))
		}
	}
}

// The stack's key secrets are the generated key files: each loads as its
// validator's key (the sidecars check name and key).
func TestGenerateSwarmKeys(t *testing.T) {
	cfg := DefaultConfig()
	dir := t.TempDir()
	m, err := GenerateSwarm(cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	doc := readStack(t, dir)
	for _, s := range m.Sidecars {
		sec := doc.Secrets[doc.Services[s.Name].Secrets[0].Source]
		name, key, err := committee.LoadKeyFile(filepath.Join(dir, sec.File))
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		if name != s.Name {
			t.Errorf("secret of %s holds the key of %s", s.Name, name)
		}
		if got := hex.EncodeToString(key.Public().(ed25519.PublicKey)); got != s.PublicKey {
			t.Errorf("secret of %s: public key %s, want %s", s.Name, got, s.PublicKey)
		}
	}
}

func TestGenerateSwarmRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"epochs", func(c *Config) { c.EpochLength = 12 }, "EpochLength"},
		{"spares", func(c *Config) { c.EpochLength, c.Spares = 12, 1 }, "Spares"},
		{"validators", func(c *Config) { c.Validators = 0 }, "Validators"},
	} {
		cfg := DefaultConfig()
		tc.mod(&cfg)
		_, err := GenerateSwarm(cfg, t.TempDir())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %s", tc.name, err, tc.want)
		}
	}
	// A directory holding a stack is not overwritten.
	dir := t.TempDir()
	if _, err := GenerateSwarm(DefaultConfig(), dir); err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateSwarm(DefaultConfig(), dir); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second generation: %v", err)
	}
}
