package node_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/node/nodetest"
)

// readyz fetches node's /readyz.
func readyz(t *testing.T, n *node.Node) (int, apiserver.ReadyResponse) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, b := testkit.Get(t, ctx, "http://"+n.API.Addr().String()+"/readyz")
	var r apiserver.ReadyResponse
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("/readyz body %s: %v", b, err)
	}
	return resp.StatusCode, r
}

// TestReadinessFollowsCommitteePeers: a sidecar is ready with its committee
// connected, not ready (naming the committee peers, nothing else) once its
// peers are stopped, and ready again when they return.
func TestReadinessFollowsCommitteePeers(t *testing.T) {
	// The in-memory chain's head does not move: only the peers may change
	// the answer.
	cl := nodetest.New(t, 4, chainID, nodetest.Funded(), nodetest.WithConfig(func(_ int, cfg *node.Config) {
		cfg.API.ReadyMaxHeadAge = time.Hour
	}))
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)

	var last apiserver.ReadyResponse
	ready := func() bool {
		code, r := readyz(t, cl.Nodes[0])
		last = r
		return code == http.StatusOK && r.Ready && len(r.Missing) == 0
	}
	testkit.Eventually(t, 20*time.Second, "node 0 ready with its committee", ready)

	for i := 1; i < 4; i++ {
		cl.Stop(i)
	}
	testkit.Eventually(t, 20*time.Second, "node 0 not ready, committee peers missing", func() bool {
		code, r := readyz(t, cl.Nodes[0])
		last = r
		return code == http.StatusServiceUnavailable && !r.Ready && slices.Equal(r.Missing, []string{apiserver.CheckCommitteePeers})
	})
	for _, c := range last.Checks {
		if c.Name == apiserver.CheckCommitteePeers && !strings.Contains(c.Detail, "connected to 0 of 3") {
			t.Errorf("committee check detail %q", c.Detail)
		}
	}

	for i := 1; i < 4; i++ {
		cl.Start(i)
	}
	testkit.Eventually(t, 30*time.Second, "node 0 ready again after its peers returned", ready)
	if t.Failed() {
		t.Logf("last /readyz: %+v", last)
	}
}
