package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/deploy/testnet"
)

// TestTestnetGenSwarm: --format swarm writes the stack file (its content
// is deploy/testnet's tests), the committee at service names, and no
// compose file; what a stack cannot carry is refused.
func TestTestnetGenSwarm(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tn")
	out, code := runCLI(t, "testnet", "gen", "--format", "swarm", "--out", dir, "--validators", "7",
		"--project", "allegro-cli", "--byzantine", "v7=equivocate")
	if code != 0 || !strings.Contains(out, "7 validators (f=2, quorum 5)") || !strings.Contains(out, "docker stack deploy") {
		t.Fatalf("testnet gen --format swarm: %d %s", code, out)
	}
	for _, name := range []string{testnet.StackFile, testnet.CommitteeFile, testnet.ManifestFile, filepath.Join(testnet.KeysDir, "v7.key")} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, testnet.ComposeFile)); err == nil {
		t.Errorf("--format swarm wrote %s", testnet.ComposeFile)
	}
	f, err := committee.LoadFile(filepath.Join(dir, testnet.CommitteeFile))
	if err != nil {
		t.Fatal(err)
	}
	if want := "/dns4/v7-a/tcp/4001"; f.Members[6].Addrs[0] != want {
		t.Errorf("v7's address %q, want %q", f.Members[6].Addrs[0], want)
	}
	m, err := testnet.LoadManifest(dir)
	if err != nil || m.Stack != "allegro-cli" {
		t.Errorf("manifest stack: %v %+v", err, m)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--format", "swarm", "--epoch-length", "12"}, "EpochLength"},
		{[]string{"--format", "swarm", "--out", dir}, "already exists"},
	} {
		args := append([]string{"testnet", "gen", "--out", t.TempDir()}, tc.args...)
		out, code := runCLI(t, args...)
		if code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d %q, want an error with %q", tc.args, code, out, tc.want)
		}
	}
}
