package node_test

import (
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/sidecar"
)

// TestConfigErrorsAreOneLine: a bad setting is reported before any
// component is built, in one line that names it — not wrapped in the trail
// of constructors the dependency graph would add.
func TestConfigErrorsAreOneLine(t *testing.T) {
	cl := nodetest.New(t, 4, chainID, nodetest.Funded())
	production := *cl.Committee
	production.TestNetwork = false
	// Two regions, for the sparse mesh's settings.
	regional := *cl.Committee
	regional.Members = slices.Clone(cl.Committee.Members)
	for i := range regional.Members {
		regional.Members[i].Region = []string{"east", "west"}[i%2]
	}
	cases := []struct {
		name string
		edit func(*node.Config)
		file *committee.File // nil: a production network's
		want string
	}{
		{"p2p listen address", func(c *node.Config) { c.P2P.ListenAddrs = []string{"/ip4/127.0.0.1/udp/1/webrtc"} }, cl.Committee, "p2p.listen_addrs: "},
		{"sidecar workers", func(c *node.Config) { c.Sidecar.Workers = 0 }, cl.Committee, "sidecar.workers: must be positive"},
		{"api timeout", func(c *node.Config) { c.API.StreamTimeout = 0 }, cl.Committee, "api.stream_timeout: must be positive"},
		{"metrics address", func(c *node.Config) { c.API.MetricsListenAddr = "localhost" }, cl.Committee, "api.metrics_listen_addr: "},
		{"log level", func(c *node.Config) { c.LogLevel = "loud" }, cl.Committee, `log_level: "loud" is not a level; fix: use debug, info, warn or error`},
		{"log format", func(c *node.Config) { c.LogFormat = "xml" }, cl.Committee, `log_format: "xml" is not a format`},
		{"byzantine mode unknown", func(c *node.Config) { c.Byzantine.Mode = "lie" }, cl.Committee, `byzantine.mode: "lie" is unknown`},
		{"byzantine mode in production", func(c *node.Config) { c.Byzantine.Mode = sidecar.ByzantineEquivocate }, nil, "byzantine.mode: \"equivocate\" is only allowed on a test network"},
		{"sparse mesh without relaying", func(c *node.Config) { c.P2P.DialInRegion = 1 }, &regional, "p2p.dial_in_region: needs relay = true"},
		{"sparse mesh without dials across regions", func(c *node.Config) { c.P2P.DialInRegion, c.P2P.Relay = 1, true }, &regional, "p2p.dial_in_region: the committee's mesh is not connected"},
		{"sparse mesh with remote dials alone", func(c *node.Config) { c.P2P.DialPerOtherRegion, c.P2P.Relay = 1, true }, &regional, "p2p.dial_per_other_region: needs dial_in_region"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := node.DefaultConfig()
			cfg.DataDir = t.TempDir()
			cfg.P2P = p2p.LocalConfig()
			cfg.API.ListenAddr = "127.0.0.1:0"
			tc.edit(&cfg)
			f := tc.file
			if f == nil {
				f = &production
			}
			_, err := node.New(cfg, node.WithIdentity(f.Members[0].Name, cl.Keys[0]), node.WithCommittee(f),
				node.WithChain(cl.Chain), node.WithLogger(slog.New(slog.DiscardHandler)))
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") ||
				strings.Contains(err.Error(), "fx.") || strings.Contains(err.Error(), "could not build") {
				t.Fatalf("got %v, want one line naming %q", err, tc.want)
			}
			var ce *node.ConfigError
			if !errors.As(err, &ce) || !strings.HasPrefix(tc.want, ce.Setting+": ") {
				t.Fatalf("got %#v, want a *node.ConfigError for the setting of %q", err, tc.want)
			}
		})
	}
}
