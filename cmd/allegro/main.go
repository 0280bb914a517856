// Command allegro is what a validator operator runs: the validator sidecar,
// its keys and committee file, and the wallet and light-client tools. The
// development chain, local networks, test networks and benchmarks are in
// cmd/allegro-dev.
package main

import (
	"flag"
	"log/slog"

	"github.com/allegro-mesh/allegro/internal/cli"
)

var app = cli.New("allegro", "payment pre-confirmation mesh for the Tempo chain")

func register(name, summary string, run cli.RunFunc) { app.Register(name, summary, run) }

var errUsage = cli.ErrUsage

func main() { app.Main() }

func newFlags(name, synopsis string) *flag.FlagSet { return app.Flags(name, synopsis) }

func parse(fs *flag.FlagSet, args []string) error { return cli.Parse(fs, args) }

func newLogger(level string) (*slog.Logger, error) { return cli.NewLogger(level) }
