package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/allegro-mesh/allegro/devnet"
	"github.com/allegro-mesh/allegro/internal/cli"
)

func init() {
	app.Register("devnet", "run a local network in one process: dev chain + validator sidecars (--demo runs the chained-payment demo)", runDevnet)
}

func runDevnet(ctx context.Context, args []string, stdout io.Writer) error {
	fs := app.Flags("devnet", "[--demo] [flags]")
	validators := fs.Int("validators", 4, "number of validator sidecars")
	period := fs.Duration("block-period", time.Second, "dev chain block time")
	dir := fs.String("dir", "", "keep keys, committee and state in this folder (default: a fresh temporary folder, removed on exit)")
	chainPort := fs.Int("chain-port", 8545, "dev chain JSON-RPC port (0: any free port)")
	apiBase := fs.Int("api-port", 7070, "first sidecar API port; sidecar i uses api-port+i (0: any free ports)")
	p2pBase := fs.Int("p2p-port", 4100, "first sidecar mesh port; sidecar i uses p2p-port+i (0: any free ports)")
	demo := fs.Bool("demo", false, "run the chained-payment demo (Alice → Bob → Carol), then keep running")
	exitAfterDemo := fs.Bool("exit-after-demo", false, "with --demo: stop the network when the demo ends")
	logLevel := fs.String("log-level", "warn", "sidecar log level: debug, info, warn, error")
	epochLength := fs.Uint64("epoch-length", 0, "blocks per mesh epoch: committees come from the dev chain's validator set, which allegro-dev validators changes while the devnet runs (0: a committee file, one epoch)")
	spares := fs.Int("spares", 0, "with --epoch-length: more validators, with keys and running sidecars, outside the chain's set until added")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	logger, err := cli.NewLogger(*logLevel, "")
	if err != nil {
		return err
	}
	folder := *dir
	if folder == "" {
		if folder, err = os.MkdirTemp("", "allegro-devnet-"); err != nil {
			return err
		}
		defer os.RemoveAll(folder)
	}
	fmt.Fprintf(stdout, "starting %d validators and a dev chain in %s ...\n", *validators, folder)
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	d, err := devnet.Start(startCtx, devnet.Config{
		Dir: folder, Validators: *validators, BlockPeriod: *period,
		ChainPort: *chainPort, APIBasePort: *apiBase, P2PBasePort: *p2pBase, Logger: logger,
		EpochLength: *epochLength, Spares: *spares,
	})
	if err != nil {
		return fmt.Errorf("%w (ports in use? try --chain-port 0 --api-port 0 --p2p-port 0)", err)
	}
	defer func() {
		fmt.Fprintln(stdout, "stopping ...")
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := d.Stop(stopCtx); err != nil {
			fmt.Fprintln(stdout, "stop:", err)
		}
	}()
	d.Describe(stdout)
	if *demo {
		if err := runDemoOn(ctx, d, stdout); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		if *exitAfterDemo {
			return nil
		}
	}
	fmt.Fprintln(stdout, "running; press Ctrl-C to stop")
	<-ctx.Done()
	return nil
}
