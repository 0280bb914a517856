package node_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/p2p"
)

// TestDashboardWiring: the page and GET /api/v1/mesh are served by default;
// the dev wallet is off by default, refused outside a test network, and
// served when enabled on one; the page can be switched off.
func TestDashboardWiring(t *testing.T) {
	cl := nodetest.New(t, 4, chainID, fundedChain())
	production := *cl.Committee
	production.TestNetwork = false

	// start builds and starts validator 0 alone and returns GET's status
	// for each path; the error is node.New's.
	start := func(f *node.CommitteeFile, edit func(*node.Config), paths ...string) ([]int, error) {
		cfg := node.DefaultConfig()
		cfg.DataDir = t.TempDir()
		cfg.P2P = p2p.LocalConfig()
		cfg.API.ListenAddr = "127.0.0.1:0"
		edit(&cfg)
		n, err := node.New(cfg, node.WithIdentity(f.Members[0].Name, cl.Keys[0]), node.WithCommittee(f), node.WithChain(cl.Chain),
			node.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := n.Start(ctx); err != nil {
			t.Fatalf("start: %v", err)
		}
		defer func() {
			if err := n.Stop(ctx); err != nil {
				t.Errorf("stop: %v", err)
			}
		}()
		var codes []int
		for _, p := range paths {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.API.Addr().String()+p, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && p == "/" && !strings.Contains(string(body), "/dashboard/app.js") {
				t.Errorf("GET / is not the dashboard: %.200s", body)
			}
			codes = append(codes, resp.StatusCode)
		}
		return codes, nil
	}
	paths := []string{"/", "/dashboard/style.css", "/api/v1/mesh", "/api/v1/dev/accounts", "/no-such-page"}

	_, err := start(&production, func(c *node.Config) { c.Dashboard.DevWallet = true })
	want := "config [dashboard]: dev_wallet is only allowed on a test network (committee file test_network = true)"
	if err == nil || err.Error() != want {
		t.Fatalf("dev wallet on a production committee: got error %v, want %q", err, want)
	}

	for _, tc := range []struct {
		name string
		f    *node.CommitteeFile
		edit func(*node.Config)
		want []int
	}{
		{"defaults on production", &production, func(*node.Config) {}, []int{200, 200, 200, 404, 404}},
		{"dev wallet on a test network", cl.Committee, func(c *node.Config) { c.Dashboard.DevWallet = true }, []int{200, 200, 200, 200, 404}},
		{"page off", &production, func(c *node.Config) { c.Dashboard.Enabled = false }, []int{404, 404, 200, 404, 404}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			codes, err := start(tc.f, tc.edit, paths...)
			if err != nil {
				t.Fatal(err)
			}
			for i := range paths {
				if codes[i] != tc.want[i] {
					t.Errorf("GET %s: %d, want %d", paths[i], codes[i], tc.want[i])
				}
			}
		})
	}
}
