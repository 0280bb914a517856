package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestOperatorBinaryLinksNoDevelopmentCode: what an operator runs contains
// neither the development chain (a whole go-ethereum node) nor the dev
// tools built on it.
func TestOperatorBinaryLinksNoDevelopmentCode(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "github.com/allegro-mesh/allegro/cmd/allegro").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 100 {
		t.Fatalf("go list -deps listed %d packages: the check would pass vacuously", len(deps))
	}
	forbidden := []string{
		"github.com/ethereum/go-ethereum/eth",
		"github.com/ethereum/go-ethereum/eth/catalyst",
		"github.com/ethereum/go-ethereum/node",
		"github.com/allegro-mesh/allegro/tempo/devchain",
		"github.com/allegro-mesh/allegro/devnet",
		"github.com/allegro-mesh/allegro/devnet/devwallet",
		"github.com/allegro-mesh/allegro/demo",
		"github.com/allegro-mesh/allegro/bench",
		"github.com/allegro-mesh/allegro/deploy/testnet",
		"github.com/allegro-mesh/allegro/deploy/k8s",
	}
	have := make(map[string]bool, len(deps))
	for _, d := range deps {
		have[d] = true
	}
	for _, f := range forbidden {
		if have[f] {
			t.Errorf("cmd/allegro links %s", f)
		}
	}
	// The Kubernetes API types serve the manifest generator of allegro-dev
	// only.
	for _, d := range deps {
		if strings.HasPrefix(d, "k8s.io/") || strings.HasPrefix(d, "sigs.k8s.io/") {
			t.Errorf("cmd/allegro links %s", d)
		}
	}
}
