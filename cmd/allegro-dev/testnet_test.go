package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/deploy/testnet"
	"github.com/allegro-mesh/allegro/sidecar"
)

func TestTestnetGen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tn")
	out, code := runCLI(t, "testnet", "gen", "--out", dir, "--validators", "7", "--light-clients", "2",
		"--byzantine", "v7=invalid-signatures", "--project", "allegro-e2e-cli", "--api-port-base", "9001")
	if code != 0 || !strings.Contains(out, "7 validators (f=2, quorum 5)") || !strings.Contains(out, "BYZANTINE invalid-signatures") {
		t.Fatalf("testnet gen: %d %s", code, out)
	}
	m, err := testnet.LoadManifest(dir)
	if err != nil || m.Sidecars[6].Byzantine != sidecar.ByzantineInvalidSignatures || m.Sidecars[0].API != "127.0.0.1:9001" {
		t.Fatalf("manifest %+v %v", m, err)
	}
	if _, err := committee.LoadFile(filepath.Join(dir, testnet.CommitteeFile)); err != nil {
		t.Fatal(err)
	}
	checkGeneratedCompose(t, dir, m, "unless-stopped")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"testnet"}, "usage"},
		{[]string{"testnet", "gen"}, "--out"},
		{[]string{"testnet", "gen", "--out", t.TempDir(), "--byzantine", "v1"}, ""}, // the flag package reports it
		{[]string{"testnet", "gen", "--out", t.TempDir(), "--byzantine", "v1=equivocate", "--test-network=false"}, "TestNetwork"},
		{[]string{"testnet", "gen", "--out", dir}, "already exists"},
		{[]string{"testnet", "gen", "--out", t.TempDir(), "--restart", "sometimes"}, "Restart"},
		{[]string{"testnet", "install-keys", "--keys", dir}, "required"},
		{[]string{"testnet", "install-keys", "--keys", filepath.Join(dir, testnet.KeysDir), "--into", t.TempDir(), "v8"}, "v8.key"},
	} {
		out, code := runCLI(t, tc.args...)
		if code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d %q, want an error with %q", tc.args, code, out, tc.want)
		}
	}
}

// TestTestnetGenRestartOff: --restart no (what the e2e runner uses) leaves
// the dev chain and sidecars without a restart policy.
func TestTestnetGenRestartOff(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tn")
	if out, code := runCLI(t, "testnet", "gen", "--out", dir, "--restart", "no"); code != 0 {
		t.Fatalf("testnet gen --restart no: %d %s", code, out)
	}
	m, err := testnet.LoadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	checkGeneratedCompose(t, dir, m, "no")
}

// TestTestnetInstallKeys: the command the keys service runs installs each
// validator's key 0600 into its volume directory, from keys that git left
// world-readable, and the sidecar's key loader accepts the result.
func TestTestnetInstallKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tn")
	if out, code := runCLI(t, "testnet", "gen", "--out", dir); code != 0 {
		t.Fatalf("testnet gen: %d %s", code, out)
	}
	m, err := testnet.LoadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	keys, into := filepath.Join(dir, testnet.KeysDir), t.TempDir()
	args := []string{"testnet", "install-keys", "--keys", keys, "--into", into}
	for _, s := range m.Sidecars {
		if err := os.Chmod(filepath.Join(keys, s.Name+".key"), 0o644); err != nil { // as after a git checkout
			t.Fatal(err)
		}
		args = append(args, s.Name)
	}
	if out, code := runCLI(t, args...); code != 0 || !strings.Contains(out, "installed 4 validator key(s)") {
		t.Fatalf("install-keys: %d %s", code, out)
	}
	for _, s := range m.Sidecars {
		path := filepath.Join(into, s.Name, testnet.InstalledKeyFile)
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v %v", path, st.Mode().Perm(), err)
		}
		if name, _, err := committee.LoadKeyFile(path); err != nil || name != s.Name {
			t.Fatalf("%s: %q %v", path, name, err)
		}
	}
}

// composeFile is what the tests read back of a generated compose file.
type composeFile struct {
	Services map[string]struct {
		Profiles    []string                     `yaml:"profiles"`
		Command     []string                     `yaml:"command"`
		Environment map[string]string            `yaml:"environment"`
		Volumes     []string                     `yaml:"volumes"`
		Restart     string                       `yaml:"restart"`
		DependsOn   map[string]map[string]string `yaml:"depends_on"`
		Healthcheck struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
}

// checkGeneratedCompose parses dir's compose file: the sidecars and dev
// chain have the restart policy, sidecars are healthy when ready (/readyz)
// and start after a healthy chain and the keys service; sidecars read their
// key from their own volume, installed 0600 by the keys service (never a
// bind mount, whose host mode git loses); prometheus.yml scrapes every
// sidecar.
func checkGeneratedCompose(t *testing.T, dir string, m *testnet.Manifest, restart string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, testnet.ComposeFile))
	if err != nil {
		t.Fatal(err)
	}
	var doc composeFile
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("compose file: %v", err)
	}
	if got := doc.Services[m.Chain.Service].Restart; got != restart {
		t.Errorf("devchain restart %q, want %q", got, restart)
	}
	keys := doc.Services["keys"]
	if keys.Restart != "no" || !slices.Contains(keys.Command, "install-keys") {
		t.Errorf("keys service: restart %q command %v", keys.Restart, keys.Command)
	}
	for _, s := range m.Sidecars {
		svc, ok := doc.Services[s.Name]
		if !ok {
			t.Fatalf("no service %s", s.Name)
		}
		if svc.Restart != restart {
			t.Errorf("%s restart %q, want %q", s.Name, svc.Restart, restart)
		}
		if want := []string{"CMD", "/allegro", "healthcheck", "--quiet", "--url", "http://127.0.0.1:7070/readyz"}; !slices.Equal(svc.Healthcheck.Test, want) {
			t.Errorf("%s healthcheck %v, want %v", s.Name, svc.Healthcheck.Test, want)
		}
		if svc.DependsOn[m.Chain.Service]["condition"] != "service_healthy" || svc.DependsOn["keys"]["condition"] != "service_completed_successfully" {
			t.Errorf("%s depends_on %v", s.Name, svc.DependsOn)
		}
		if svc.Environment["ALLEGRO_KEY_FILE"] != "/data/"+testnet.InstalledKeyFile ||
			!slices.Contains(svc.Volumes, m.Project+"-"+s.Name+"-data:/data") {
			t.Errorf("%s key file %q volumes %v", s.Name, svc.Environment["ALLEGRO_KEY_FILE"], svc.Volumes)
		}
		for _, v := range svc.Volumes {
			if strings.HasPrefix(v, "./"+testnet.KeysDir) {
				t.Errorf("%s bind-mounts a key from the host: %s", s.Name, v)
			}
		}
		if !slices.Contains(keys.Command, s.Name) || !slices.Contains(keys.Volumes, m.Project+"-"+s.Name+"-data:/install/"+s.Name) {
			t.Errorf("keys service does not install %s's key into its volume: %v %v", s.Name, keys.Command, keys.Volumes)
		}
	}
	for _, name := range []string{"prometheus", "grafana"} {
		if p := doc.Services[name].Profiles; !slices.Equal(p, []string{testnet.MonitoringProfile}) {
			t.Errorf("%s profiles %v, want only %q (off by default)", name, p, testnet.MonitoringProfile)
		}
	}

	raw, err = os.ReadFile(filepath.Join(dir, testnet.PrometheusFile))
	if err != nil {
		t.Fatal(err)
	}
	var pc testnet.PrometheusConfig
	if err := yaml.Unmarshal(raw, &pc); err != nil {
		t.Fatalf("%s: %v", testnet.PrometheusFile, err)
	}
	var targets []string
	for _, sc := range pc.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	for _, s := range m.Sidecars {
		if !slices.Contains(targets, s.ChainIP+":7070") {
			t.Errorf("%s does not scrape %s at %s:7070 (targets %v)", testnet.PrometheusFile, s.Name, s.ChainIP, targets)
		}
	}
	if len(targets) != len(m.Sidecars) {
		t.Errorf("%s has %d targets for %d sidecars", testnet.PrometheusFile, len(targets), len(m.Sidecars))
	}
}

func runCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := app.Run(context.Background(), args, &out, &errOut)
	return out.String() + errOut.String(), code
}
