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
	"io"
	"os"

	"github.com/allegro-mesh/allegro/bench"
	"github.com/allegro-mesh/allegro/internal/cli"
)

var app = cli.New("allegro-bench-sidecar", "the child processes of allegro-dev bench, without the development chain's code")

func main() {
	app.Register(bench.ChildCommand, "internal: a child process of `allegro-dev bench`; driven over stdin/stdout", func(ctx context.Context, args []string, stdout io.Writer) error {
		return bench.SidecarMain(ctx, args, os.Stdin, stdout, os.Stderr)
	})
	app.Main()
}
