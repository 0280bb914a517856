package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/committee"
)

func runCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := app.Run(context.Background(), args, &out, &errOut)
	return out.String() + errOut.String(), code
}

func TestKeygenAndCommittee(t *testing.T) {
	dir := t.TempDir()
	var keyFiles []string
	for _, name := range []string{"v0", "v1", "v2", "v3"} {
		path := filepath.Join(dir, name+".key")
		out, code := runCLI(t, "keygen", "--out", path)
		if code != 0 || !strings.Contains(out, "peer id:") || !strings.Contains(out, "public key:") {
			t.Fatalf("keygen: %d %s", code, out)
		}
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("key file mode %v %v", st.Mode(), err)
		}
		keyFiles = append(keyFiles, "--key-file", path+"@/ip4/127.0.0.1/tcp/4001")
	}
	// Never overwrites.
	if out, code := runCLI(t, "keygen", "--out", filepath.Join(dir, "v0.key")); code == 0 || !strings.Contains(out, "already exists") {
		t.Fatalf("keygen over an existing file: %d %s", code, out)
	}
	// Creates the key's directory (a data directory that does not exist
	// yet), readable by its owner only.
	nested := filepath.Join(dir, "data", "v4", "validator.key")
	if out, code := runCLI(t, "keygen", "--out", nested); code != 0 {
		t.Fatalf("keygen into a new directory: %d %s", code, out)
	}
	if st, err := os.Stat(filepath.Dir(nested)); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("created key directory: %v %v", st, err)
	}
	committeePath := filepath.Join(dir, "committee.toml")
	out, code := runCLI(t, append([]string{"committee", "--chain-id", "1337", "--out", committeePath}, keyFiles...)...)
	if code != 0 || !strings.Contains(out, "quorum 3") {
		t.Fatalf("committee: %d %s", code, out)
	}
	f, err := committee.LoadFile(committeePath)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Members) != 4 || f.Members[2].Name != "v2" || len(f.Members[0].Addrs) != 1 {
		t.Fatalf("committee file %+v", f)
	}
	// A bad public key names the member.
	out, code = runCLI(t, "committee", "--out", filepath.Join(dir, "bad.toml"), "--member", "x=abcd")
	if code == 0 || !strings.Contains(out, `"x"`) {
		t.Fatalf("bad member: %d %s", code, out)
	}
}

func TestLoadKeyFileRefusesOpenPermissions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.key")
	if _, code := runCLI(t, "keygen", "--out", path); code != 0 {
		t.Fatal("keygen failed")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := committee.LoadKeyFile(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("LoadKeyFile on a 0644 file: %v", err)
	}
}

// TestSidecarConfigPrecedence: defaults < config file < environment < flags.
func TestSidecarConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "sidecar.toml")
	err := os.WriteFile(cfgPath, []byte(`
data_dir = "/from/file"
committee_file = "/file/committee.toml"
log_level = "debug"
memory_limit = "300MiB"
[chain]
url = "http://file:8545"
[api]
listen_addr = "127.0.0.1:9000"
body_read_timeout = "3s"
ready_max_head_age = "1m"
max_conns_per_ip = 64
[validator]
max_request_ids = 77
[bulletin]
publish_step = "40ms"
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"ALLEGRO_CHAIN_RPC": "ws://env:8546", "ALLEGRO_API_LISTEN": "127.0.0.1:9100", "ALLEGRO_MEMORY_LIMIT": "400MiB"}
	cfg, err := loadSidecarConfig([]string{"--config", cfgPath, "--api-listen", "127.0.0.1:9200"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/from/file" || cfg.LogLevel != "debug" || cfg.Validator.MaxRequestIDs != 77 || cfg.Bulletin.PublishStep.Milliseconds() != 40 {
		t.Fatalf("file values not applied: %+v", cfg)
	}
	if cfg.Chain.URL != "ws://env:8546" {
		t.Fatalf("env did not override the file: %q", cfg.Chain.URL)
	}
	if cfg.API.ListenAddr != "127.0.0.1:9200" {
		t.Fatalf("flag did not override env: %q", cfg.API.ListenAddr)
	}
	if cfg.MemoryLimit != "400MiB" {
		t.Fatalf("ALLEGRO_MEMORY_LIMIT did not override the file: %q", cfg.MemoryLimit)
	}
	if cfg.API.BodyReadTimeout.Seconds() != 3 || cfg.API.ReadyMaxHeadAge.Minutes() != 1 || cfg.API.MaxConnsPerIP != 64 {
		t.Fatalf("[api] limits from the file not applied: %+v", cfg.API)
	}
	env["ALLEGRO_API_MAX_CONNS_PER_IP"] = "512"
	if cfg, err := loadSidecarConfig([]string{"--config", cfgPath}, func(k string) string { return env[k] }); err != nil || cfg.API.MaxConnsPerIP != 512 {
		t.Fatalf("ALLEGRO_API_MAX_CONNS_PER_IP: %d %v", cfg.API.MaxConnsPerIP, err)
	}
	if _, err := loadSidecarConfig([]string{"--api-max-conns-per-ip", "lots"}, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "--api-max-conns-per-ip") {
		t.Fatalf("invalid --api-max-conns-per-ip: %v", err)
	}
	if _, err := loadSidecarConfig([]string{"--api-max-conns-per-ip", "0"}, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "max_conns_per_ip") {
		t.Fatalf("zero --api-max-conns-per-ip: %v", err)
	}
	if cfg.API.MetricsListenAddr != "" {
		t.Fatalf("metrics listen address %q by default, want none (/metrics on the API address)", cfg.API.MetricsListenAddr)
	}
	env["ALLEGRO_METRICS_LISTEN"] = "127.0.0.1:9464"
	if cfg, err := loadSidecarConfig([]string{"--config", cfgPath}, func(k string) string { return env[k] }); err != nil || cfg.API.MetricsListenAddr != "127.0.0.1:9464" {
		t.Fatalf("ALLEGRO_METRICS_LISTEN: %q %v", cfg.API.MetricsListenAddr, err)
	}
	if _, err := loadSidecarConfig([]string{"--metrics-listen", "9464"}, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "api.metrics_listen_addr") {
		t.Fatalf("--metrics-listen without a host: %v", err)
	}
	if cfg.Validator.MaxCertificates != 10_000 {
		t.Fatal("defaults lost for keys the file does not set")
	}

	// Unknown keys and invalid values are refused with the field named.
	if err := os.WriteFile(cfgPath, []byte("[validator]\nmax_credit = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadSidecarConfig([]string{"--config", cfgPath}, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "max_credit") {
		t.Fatalf("unknown key: %v", err)
	}
	if err := os.WriteFile(cfgPath, []byte("[validator]\nmax_credits = 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadSidecarConfig([]string{"--config", cfgPath}, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "validator.max_credits") {
		t.Fatalf("invalid value: %v", err)
	}
	if _, err := loadSidecarConfig([]string{"--memory-limit", "plenty"}, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "memory_limit") {
		t.Fatalf("invalid memory limit: %v", err)
	}
	if cfg, err := loadSidecarConfig([]string{"--gc-percent", "80"}, func(k string) string { return map[string]string{"ALLEGRO_GC_PERCENT": "30"}[k] }); err != nil || cfg.GCPercent != 80 {
		t.Fatalf("--gc-percent over ALLEGRO_GC_PERCENT: %d %v", cfg.GCPercent, err)
	}
	if _, err := loadSidecarConfig([]string{"--gc-percent", "5"}, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "gc_percent") {
		t.Fatalf("gc_percent out of range: %v", err)
	}
}

func TestUnknownCommand(t *testing.T) {
	if out, code := runCLI(t, "frobnicate"); code != 2 || !strings.Contains(out, "unknown command") {
		t.Fatalf("%d %s", code, out)
	}
}

// TestVersion: `allegro version` and `allegro --version` name the binary
// and the Go version it was built with.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, code := runCLI(t, args...)
		if code != 0 || !strings.HasPrefix(out, "allegro ") || !strings.Contains(out, runtime.Version()) {
			t.Errorf("allegro %s: status %d, output %q", args[0], code, out)
		}
	}
}

// TestSidecarLogFormat: --log-format and ALLEGRO_LOG_FORMAT choose the
// format; an unknown one fails naming the setting.
func TestSidecarLogFormat(t *testing.T) {
	env := func(k string) string {
		return map[string]string{"ALLEGRO_COMMITTEE_FILE": "/c.toml", "ALLEGRO_CHAIN_RPC": "http://x:8545", "ALLEGRO_LOG_FORMAT": "json"}[k]
	}
	cfg, err := loadSidecarConfig(nil, env)
	if err != nil || cfg.LogFormat != "json" {
		t.Fatalf("env: format %q, err %v", cfg.LogFormat, err)
	}
	if cfg, err = loadSidecarConfig([]string{"--log-format", "text"}, env); err != nil || cfg.LogFormat != "text" {
		t.Fatalf("flag: format %q, err %v", cfg.LogFormat, err)
	}
	if _, err = loadSidecarConfig([]string{"--log-format", "xml"}, env); err == nil || !strings.Contains(err.Error(), "log_format") {
		t.Fatalf("unknown format: %v", err)
	}
}

// TestSidecarDoppelgangerWindow: the window's default, its file key, flag
// and environment variable, and the refused values.
func TestSidecarDoppelgangerWindow(t *testing.T) {
	cfgPath := filepath.Join(t.TempDir(), "sidecar.toml")
	if err := os.WriteFile(cfgPath, []byte("[sidecar]\ndoppelganger_window = \"2s\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		env     string
		want    time.Duration
		wantErr string
	}{
		{name: "default", want: 5 * time.Second},
		{name: "file", args: []string{"--config", cfgPath}, want: 2 * time.Second},
		{name: "env over file", args: []string{"--config", cfgPath}, env: "30s", want: 30 * time.Second},
		{name: "flag over env", args: []string{"--doppelganger-window", "0"}, env: "30s", want: 0},
		{name: "negative", args: []string{"--doppelganger-window", "-1s"}, wantErr: "doppelganger_window: must be 0 (off) to 10m0s"},
		{name: "too long", args: []string{"--doppelganger-window", "11m"}, wantErr: "doppelganger_window"},
		{name: "not a duration", args: []string{"--doppelganger-window", "soon"}, wantErr: "--doppelganger-window: not a duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadSidecarConfig(tc.args, func(k string) string {
				if k == "ALLEGRO_DOPPELGANGER_WINDOW" {
					return tc.env
				}
				return ""
			})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || cfg.Sidecar.DoppelgangerWindow != tc.want {
				t.Fatalf("window %s (%v), want %s", cfg.Sidecar.DoppelgangerWindow, err, tc.want)
			}
		})
	}
}
