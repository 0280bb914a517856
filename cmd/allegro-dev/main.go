// Command allegro-dev holds the development tools of the Allegro mesh: the
// embedded development chain, a whole local network in one process with
// the chained-payment demo, generated docker test networks and the
// benchmark suite. What an operator runs is cmd/allegro.
package main

import (
	"flag"
	"log/slog"

	"github.com/allegro-mesh/allegro/internal/cli"
)

var app = cli.New("allegro-dev", "development tools of the Allegro mesh: dev chain, local network, test networks, benchmarks")

func register(name, summary string, run cli.RunFunc) { app.Register(name, summary, run) }

var errUsage = cli.ErrUsage

func main() { app.Main() }

func newFlags(name, synopsis string) *flag.FlagSet { return app.Flags(name, synopsis) }

func parse(fs *flag.FlagSet, args []string) error { return cli.Parse(fs, args) }

func newLogger(level string) (*slog.Logger, error) { return cli.NewLogger(level) }
