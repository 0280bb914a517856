// Command allegro-bench-sidecar runs the child processes of `allegro-dev
// bench` (a sidecar of the resources section, or the saturation run's load
// generator), like `allegro-dev bench-sidecar` does, from a binary that
// holds the sidecar's code and not the development chain's: the resident
// memory of its sidecar processes is then what an `allegro sidecar`
// process has, code pages included. `allegro-dev bench` uses it when it is
// built beside it (go build -o bin/ ./cmd/...), or given --child-exe.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/allegro-mesh/allegro/bench"
)

func main() {
	args := os.Args[1:]
	// allegro-dev starts every child as "<exe> bench-sidecar <flags>".
	if len(args) > 0 && args[0] == bench.ChildCommand {
		args = args[1:]
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := bench.SidecarMain(ctx, args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "allegro-bench-sidecar:", err)
		os.Exit(1)
	}
}
