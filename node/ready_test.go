package node_test

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"runtime"
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
	// The answer turns as soon as fewer than a quorum's worth of peers is
	// connected; wait until all three disconnects have been seen.
	testkit.Eventually(t, 20*time.Second, "node 0 not ready, no committee peer connected", func() bool {
		code, r := readyz(t, cl.Nodes[0])
		last = r
		return code == http.StatusServiceUnavailable && !r.Ready && slices.Equal(r.Missing, []string{apiserver.CheckCommitteePeers}) &&
			committeeDetail(r, "connected to 0 of 3")
	})

	for i := 1; i < 4; i++ {
		cl.Start(i)
	}
	testkit.Eventually(t, 30*time.Second, "node 0 ready again after its peers returned", ready)
	if t.Failed() {
		t.Logf("last /readyz: %+v", last)
	}
}

// committeeDetail reports whether r's committee check detail contains want.
func committeeDetail(r apiserver.ReadyResponse, want string) bool {
	for _, c := range r.Checks {
		if c.Name == apiserver.CheckCommitteePeers {
			return strings.Contains(c.Detail, want)
		}
	}
	return false
}

// TestMetricsNameTheBuild: a sidecar's /metrics carries allegro_build_info
// with the Go version it was built with.
func TestMetricsNameTheBuild(t *testing.T) {
	cl := nodetest.New(t, 4, chainID, nodetest.Funded())
	cl.StartAll()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, b := testkit.Get(t, ctx, "http://"+cl.Nodes[0].API.Addr().String()+"/metrics")
	want := regexp.MustCompile(`(?m)^allegro_build_info\{[^}]*go_version="` + regexp.QuoteMeta(runtime.Version()) + `"[^}]*\} 1$`)
	if !want.Match(b) {
		t.Errorf("/metrics has no allegro_build_info for %s:\n%s", runtime.Version(), grepLines(b, "allegro_build_info"))
	}
}

// grepLines returns the lines of b containing s.
func grepLines(b []byte, s string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
