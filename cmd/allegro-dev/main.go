// Command allegro-dev holds the development tools of the Allegro mesh: the
// embedded development chain, a whole local network in one process with
// the chained-payment demo, generated docker test networks and the
// benchmark suite. What an operator runs is cmd/allegro.
package main

import (
	"github.com/allegro-mesh/allegro/internal/cli"
)

var app = cli.New("allegro-dev", "development tools of the Allegro mesh: dev chain, local network, test networks, benchmarks")

func main() { app.Main() }
