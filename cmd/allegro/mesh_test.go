package main

import (
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/allegro-mesh/allegro/committee"
)

// TestCommitteeMesh: the shape of a regional mesh, the full mesh for
// comparison, and dials that would leave the regions apart refused.
func TestCommitteeMesh(t *testing.T) {
	path := filepath.Join(t.TempDir(), "committee.toml")
	f := &committee.File{ChainID: 1337, Epoch: 1, QCShards: 16}
	regions := []string{"us-east-1", "eu-west-1", "ap-northeast-1", "sa-east-1"}
	for i := range 120 {
		seed := make([]byte, ed25519.SeedSize)
		copy(seed, fmt.Sprintf("mesh-cli-%d", i))
		f.Members = append(f.Members, committee.Member{Name: fmt.Sprintf("v%d", i),
			PublicKey: hex.EncodeToString(ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)),
			Addrs:     []string{fmt.Sprintf("/dns4/v%d/tcp/4001", i)}, Region: regions[i%len(regions)]})
	}
	if err := f.Write(path); err != nil {
		t.Fatal(err)
	}

	out, code := runCLI(t, "committee", "mesh", "--committee", path, "--dial-in-region", "4", "--dial-per-other-region", "1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	shape, err := f.Shape(committee.Dials{InRegion: 4, PerOtherRegion: 1})
	if err != nil || !shape.Connected || shape.MaxHops < 2 || shape.MeanLinks >= 30 {
		t.Fatalf("shape %+v, %v: want a connected sparse mesh", shape, err)
	}
	for _, want := range []string{
		"120 members in 4 regions; each sidecar dials 4 of its region and 1 of every other",
		fmt.Sprintf("min %d, mean %.1f, max %d (a full mesh: 119)", shape.MinLinks, shape.MeanLinks, shape.MaxLinks),
		fmt.Sprintf("relay hops between members: at most %d", shape.MaxHops),
		"relay = true, dial_in_region = 4, dial_per_other_region = 1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	out, code = runCLI(t, "committee", "mesh", "--committee", path)
	if code != 0 || !strings.Contains(out, "min 119, mean 119.0, max 119") || !strings.Contains(out, "at most 1, mean 1.00") {
		t.Fatalf("full mesh: exit %d:\n%s", code, out)
	}

	out, code = runCLI(t, "committee", "mesh", "--committee", path, "--dial-in-region", "4")
	if code == 0 || !strings.Contains(out, "not connected") {
		t.Fatalf("regions without dials between them: exit %d:\n%s", code, out)
	}
	out, code = runCLI(t, "committee", "mesh", "--committee", path, "--dial-per-other-region", "1")
	if code == 0 || !strings.Contains(out, "needs dial_in_region") {
		t.Fatalf("remote dials alone: exit %d:\n%s", code, out)
	}
}
