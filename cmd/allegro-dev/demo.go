package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/devnet"
	"github.com/allegro-mesh/allegro/internal/cli"
)

func init() {
	app.Register("demo", "run the chained-payment demo (Alice → Bob → Carol) against a running dev network", runDemo)
}

// runDemoOn runs the demo against an in-process devnet.
func runDemoOn(ctx context.Context, d *devnet.Devnet, w io.Writer) error {
	fmt.Fprintln(w, "\nchained-payment demo: Alice pays Bob $10, Bob pays Carol $10 at once using the first QC")
	_, err := devnet.RunDemo(ctx, d.Target(), w)
	return err
}

func runDemo(ctx context.Context, args []string, stdout io.Writer) error {
	fs := app.Flags("demo", "--committee FILE --chain-rpc URL --sidecar HOST:PORT [--sidecar ...]")
	committeePath := fs.String("committee", "", "committee file of the network")
	chainRPC := fs.String("chain-rpc", "ws://127.0.0.1:8545", "dev chain JSON-RPC (ws:// for head updates)")
	period := fs.Duration("block-period", time.Second, "the chain's block time (bounds waits)")
	var sidecars []string
	fs.Func("sidecar", "sidecar API address host:port (repeat; the first is the entry)", func(v string) error {
		sidecars = append(sidecars, v)
		return nil
	})
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *committeePath == "" || len(sidecars) == 0 {
		fs.Usage()
		return errors.New("--committee and at least one --sidecar are required")
	}
	f, err := committee.LoadFile(*committeePath)
	if err != nil {
		return err
	}
	committee, err := f.Committee()
	if err != nil {
		return err
	}
	boot, err := f.Bootstrap()
	if err != nil {
		return err
	}
	_, err = devnet.RunDemo(ctx, devnet.Target{
		ChainURL: *chainRPC, BlockPeriod: *period, Sidecars: sidecars, Bootstrap: boot, Committee: committee, QCShards: f.QCShards,
	}, stdout)
	return err
}
