// Command allegro is what a validator operator runs: the validator sidecar,
// its keys and committee file, and the wallet and light-client tools. The
// development chain, local networks, test networks and benchmarks are in
// cmd/allegro-dev.
package main

import (
	"github.com/allegro-mesh/allegro/internal/cli"
)

var app = cli.New("allegro", "payment pre-confirmation mesh for the Tempo chain")

func main() { app.Main() }
