package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/node"
)

// TestConfigDumpRoundTrip: what `allegro config dump` writes, with defaults
// or with a file, variables and flags, reads back through --config to the
// same configuration, and carries every setting under its documentation.
func TestConfigDumpRoundTrip(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "in.toml")
	if err := os.WriteFile(file, []byte("[p2p]\nqc_shards = 8\n[p2p.gossipsub]\nD = 6\nDlo = 5\nDhi = 12\nHeartbeatInterval = \"700ms\"\n[p2p.scoring]\nretain_score = \"1h\"\nip_colocation_whitelist = [\"10.0.0.0/8\"]\n[api]\nallowed_origins = [\"https://a.example\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"ALLEGRO_LOG_FORMAT": "json"}
	cases := []struct {
		name string
		args []string
	}{
		{"defaults", nil},
		{"file, environment and flags", []string{"--config", file, "--chain-rpc", "ws://127.0.0.1:8546", "--p2p-listen", "/ip4/127.0.0.1/tcp/4100", "--api-max-conns-per-ip", "9"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string { return env[k] }
			want, err := loadConfig("config dump", tc.args, getenv)
			if err != nil {
				t.Fatal(err)
			}
			dump := dumpConfig(want)
			path := filepath.Join(t.TempDir(), "dump.toml")
			if err := os.WriteFile(path, []byte(dump), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := loadSidecarConfig([]string{"--config", path}, func(string) string { return "" })
			if err != nil {
				t.Fatalf("the dump does not load: %v\n%s", err, dump)
			}
			if !reflect.DeepEqual(normalise(got), normalise(want)) {
				t.Fatalf("dump loads to\n%+v\nwant\n%+v", got, want)
			}
			for _, s := range node.Settings(want) {
				leaf := s.Key[strings.LastIndex(s.Key, ".")+1:]
				if s.Doc == "" || !strings.Contains(dump, "\n"+leaf+" = ") && !strings.Contains(dump, "# "+leaf+" is unset") {
					t.Errorf("setting %s missing from the dump or undocumented", s.Key)
				}
			}
		})
	}
	if !strings.Contains(dumpConfig(node.DefaultConfig()), "# flag --chain-rpc, env ALLEGRO_CHAIN_RPC\nurl = \"\"") {
		t.Error("the dump does not name the flag and variable of [chain] url")
	}
}

// normalise makes empty and nil lists equal: TOML writes both as [].
func normalise(c node.Config) node.Config {
	for _, l := range []*[]string{&c.P2P.ListenAddrs, &c.P2P.AnnounceAddrs, &c.P2P.Scoring.IPColocationWhitelist, &c.API.AllowedOrigins} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	return c
}

// TestConfigDocsUpToDate fails when docs/configuration.md differs from what
// `allegro config docs` generates: run go generate ./cmd/allegro.
func TestConfigDocsUpToDate(t *testing.T) {
	want, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runConfig(context.Background(), []string{"docs"}, &out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatal("docs/configuration.md is stale: run go generate ./cmd/allegro")
	}
	for _, s := range node.Settings(node.DefaultConfig()) {
		if !strings.Contains(out.String(), "| `"+s.Key[strings.LastIndex(s.Key, ".")+1:]+"` |") {
			t.Errorf("setting %s missing from docs/configuration.md", s.Key)
		}
	}
	if !strings.Contains(out.String(), "| `url` | `--chain-rpc` | `ALLEGRO_CHAIN_RPC` |") {
		t.Error("docs/configuration.md does not give [chain] url's flag and variable")
	}
}

// TestSidecarHelpShowsDefaults: -h shows each flag's default.
func TestSidecarHelpShowsDefaults(t *testing.T) {
	bin := testkit.Binary(t, "github.com/allegro-mesh/allegro/cmd/allegro")
	outB, err := exec.Command(bin, "sidecar", "-h").CombinedOutput()
	out, code := string(outB), 0
	if err != nil {
		code = -1
	}
	for _, want := range []string{`(default "127.0.0.1:7070")`, `(default "info")`, `(default "128")`, "TOML [api] listen_addr", "allegro config dump"} {
		if !strings.Contains(out, want) {
			t.Errorf("sidecar -h (status %d) lacks %q:\n%s", code, want, out)
		}
	}
}
