package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksNoDevelopmentChain: the reason this binary exists is that its
// processes hold an allegro sidecar's code and not the development
// chain's, whose pages would count in the measured memory.
func TestLinksNoDevelopmentChain(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "github.com/allegro-mesh/allegro/cmd/allegro-bench-sidecar").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 100 {
		t.Fatalf("go list -deps listed %d packages: the check would pass vacuously", len(deps))
	}
	forbidden := map[string]bool{
		"github.com/ethereum/go-ethereum/eth":            true,
		"github.com/ethereum/go-ethereum/node":           true,
		"github.com/allegro-mesh/allegro/tempo/devchain": true,
		"github.com/allegro-mesh/allegro/devnet":         true,
		"github.com/allegro-mesh/allegro/sim":            true,
		"github.com/allegro-mesh/allegro/deploy/k8s":     true,
	}
	for _, d := range deps {
		if forbidden[d] || strings.HasPrefix(d, "k8s.io/") {
			t.Errorf("cmd/allegro-bench-sidecar links %s", d)
		}
	}
}
