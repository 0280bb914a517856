package node_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/p2p"
)

// TestDashboardWiring: the page and GET /api/v1/mesh are served by default
// and the page can be switched off; routes come only from API extensions
// (devnet's dev wallet), and an extension's refusal fails New.
func TestDashboardWiring(t *testing.T) {
	cl := nodetest.New(t, 4, chainID, nodetest.Funded())
	production := *cl.Committee
	production.TestNetwork = false

	// start builds and starts validator 0 alone and returns GET's status
	// for each path; the error is node.New's.
	start := func(f *committee.File, edit func(*node.Config), exts []node.APIExtension, paths ...string) ([]int, error) {
		cfg := node.DefaultConfig()
		cfg.DataDir = t.TempDir()
		cfg.P2P = p2p.LocalConfig()
		cfg.API.ListenAddr = "127.0.0.1:0"
		edit(&cfg)
		opts := []node.Option{node.WithIdentity(f.Members[0].Name, cl.Keys[0]), node.WithCommittee(f), node.WithChain(cl.Chain),
			node.WithLogger(slog.New(slog.DiscardHandler))}
		for _, ext := range exts {
			opts = append(opts, node.WithAPIExtension(ext))
		}
		n, err := node.New(cfg, opts...)
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
	paths := []string{"/", "/dashboard/style.css", "/api/v1/mesh", "/api/v1/extra", "/no-such-page"}
	extra := func(x node.ExtensionContext) error {
		if x.Committee == nil || x.Board == nil || x.Chain == nil || x.APIAddr == nil || x.Overlay == nil {
			t.Error("extension context incomplete")
		}
		x.Handle("GET /api/v1/extra", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
		return nil
	}
	refuse := func(node.ExtensionContext) error { return errors.New("not on this network") }
	if _, err := start(&production, func(*node.Config) {}, []node.APIExtension{refuse}); err == nil || err.Error() != "not on this network" {
		t.Fatalf("refusing extension: got error %v", err)
	}

	for _, tc := range []struct {
		name string
		f    *committee.File
		edit func(*node.Config)
		exts []node.APIExtension
		want []int
	}{
		{"defaults on production", &production, func(*node.Config) {}, nil, []int{200, 200, 200, 404, 404}},
		{"with an extension", cl.Committee, func(*node.Config) {}, []node.APIExtension{extra}, []int{200, 200, 200, 200, 404}},
		{"page off", &production, func(c *node.Config) { c.Dashboard.Enabled = false }, nil, []int{404, 404, 200, 404, 404}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			codes, err := start(tc.f, tc.edit, tc.exts, paths...)
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
