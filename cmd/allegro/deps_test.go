package main

import (
	"strings"
	"testing"

	"github.com/allegro-mesh/allegro/internal/testkit"
)

// TestOperatorBinaryLinksNoDevelopmentCode: what an operator runs contains
// neither the development chain (a whole go-ethereum node) nor the dev
// tools built on it.
func TestOperatorBinaryLinksNoDevelopmentCode(t *testing.T) {
	deps := testkit.LinkedPackages(t, "github.com/allegro-mesh/allegro/cmd/allegro")
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
