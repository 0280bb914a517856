package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

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
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"testnet"}, "usage"},
		{[]string{"testnet", "gen"}, "--out"},
		{[]string{"testnet", "gen", "--out", t.TempDir(), "--byzantine", "v1"}, ""}, // the flag package reports it
		{[]string{"testnet", "gen", "--out", t.TempDir(), "--byzantine", "v1=equivocate", "--test-network=false"}, "TestNetwork"},
		{[]string{"testnet", "gen", "--out", dir}, "already exists"},
	} {
		out, code := runCLI(t, tc.args...)
		if code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d %q, want an error with %q", tc.args, code, out, tc.want)
		}
	}
}

func runCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := app.Run(context.Background(), args, &out, &errOut)
	return out.String() + errOut.String(), code
}
