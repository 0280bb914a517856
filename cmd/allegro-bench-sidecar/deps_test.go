package main

import (
	"strings"
	"testing"

	"github.com/allegro-mesh/allegro/internal/testkit"
)

// TestLinksNoDevelopmentChain: the reason this binary exists is that its
// processes hold an allegro sidecar's code and not the development
// chain's, whose pages would count in the measured memory.
func TestLinksNoDevelopmentChain(t *testing.T) {
	forbidden := map[string]bool{
		"github.com/ethereum/go-ethereum/eth":            true,
		"github.com/ethereum/go-ethereum/node":           true,
		"github.com/allegro-mesh/allegro/tempo/devchain": true,
		"github.com/allegro-mesh/allegro/devnet":         true,
		"github.com/allegro-mesh/allegro/sim":            true,
		"github.com/allegro-mesh/allegro/deploy/k8s":     true,
	}
	for _, d := range testkit.LinkedPackages(t, "github.com/allegro-mesh/allegro/cmd/allegro-bench-sidecar") {
		if forbidden[d] || strings.HasPrefix(d, "k8s.io/") {
			t.Errorf("cmd/allegro-bench-sidecar links %s", d)
		}
	}
}
