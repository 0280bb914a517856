package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/deploy/k8s"
	"github.com/allegro-mesh/allegro/deploy/testnet"
)

// TestTestnetGenK8s: --format k8s writes the Kubernetes manifests (their
// content is deploy/k8s's tests) with the flags' namespace and storage
// class, and no compose file.
func TestTestnetGenK8s(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tn")
	out, code := runCLI(t, "testnet", "gen", "--format", "k8s", "--out", dir, "--validators", "7", "--light-clients", "2",
		"--project", "allegro-cli", "--namespace", "allegro-ci", "--cluster-domain", "k8s.internal", "--storage-class", "fast-ssd")
	if code != 0 || !strings.Contains(out, "7 validators (f=2, quorum 5)") || !strings.Contains(out, "kubectl apply -k "+dir) {
		t.Fatalf("testnet gen --format k8s: %d %s", code, out)
	}
	for _, name := range []string{k8s.ManifestsFile, k8s.KustomizationFile, k8s.CommitteeFile, filepath.Join(k8s.KeysDir, "v7.key")} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, testnet.ComposeFile)); err == nil {
		t.Errorf("--format k8s wrote %s", testnet.ComposeFile)
	}
	f, err := committee.LoadFile(filepath.Join(dir, k8s.CommitteeFile))
	if err != nil {
		t.Fatal(err)
	}
	if want := "/dns4/allegro-cli-v-7.allegro-cli-mesh.allegro-ci.svc.k8s.internal/tcp/4001"; f.Members[6].Addrs[0] != want {
		t.Errorf("v7's address %q, want %q", f.Members[6].Addrs[0], want)
	}
	raw, err := os.ReadFile(filepath.Join(dir, k8s.ManifestsFile))
	if err != nil || !strings.Contains(string(raw), "storageClassName: fast-ssd") {
		t.Errorf("%s lacks the storage class (%v)", k8s.ManifestsFile, err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--format", "helm"}, "--format"},
		{[]string{"--format", "k8s", "--byzantine", "v1=equivocate"}, "Byzantine"},
		{[]string{"--format", "k8s", "--namespace", "Allegro"}, "Namespace"},
		{[]string{"--format", "k8s", "--project", "allegro_net"}, "Project"},
		{[]string{"--format", "k8s", "--out", dir}, "already exists"},
	} {
		args := append([]string{"testnet", "gen", "--out", t.TempDir()}, tc.args...)
		out, code := runCLI(t, args...)
		if code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d %q, want an error with %q", tc.args, code, out, tc.want)
		}
	}
}
