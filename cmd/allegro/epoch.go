package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/internal/cli"
	"github.com/allegro-mesh/allegro/tempo/chain"
)

func init() {
	app.Register("epoch", "the network's current mesh epoch and its committee (a committee file with epoch_length, and the chain)", runEpoch)
}

func runEpoch(ctx context.Context, args []string, stdout io.Writer) error {
	fs := app.Flags("epoch", "--committee FILE --chain-rpc URL [--bindings DIR] [--number]")
	committeePath := fs.String("committee", "", "the network's committee file (required)")
	chainRPC := fs.String("chain-rpc", "", "chain node JSON-RPC URL (required)")
	bindings := fs.String("bindings", "bindings", `with committee_source = "chain": directory of the validators' binding files`)
	number := fs.Bool("number", false, "print the epoch number only (for scripts: a binding made now takes effect at this + 2)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up reaching the chain after this long")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	switch {
	case *committeePath == "":
		return errors.New("--committee is required")
	case *chainRPC == "":
		return errors.New("--chain-rpc is required")
	}
	f, err := committee.LoadFile(*committeePath)
	if err != nil {
		return err
	}
	if f.EpochLength == 0 {
		return fmt.Errorf("%s has no epoch_length: its network stays in epoch %d", *committeePath, f.Epoch)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cl, err := dialChain(ctx, *chainRPC, f.ChainID, nil)
	if err != nil {
		return fmt.Errorf("--chain-rpc: %w", err)
	}
	defer cl.Stop(context.Background())
	view, err := cl.Latest(ctx)
	if err != nil {
		return err
	}
	head := view.Head().Number
	e := f.EpochOf(head)
	if *number {
		fmt.Fprintln(stdout, e)
		return nil
	}
	sched := committee.Schedule{EpochLength: f.EpochLength}
	next, err := sched.FirstBlock(e + 1)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "epoch %d: head %d, next epoch at block %d (in %d blocks); a binding made now takes effect at epoch %d\n",
		e, head, next, next-head, e+2)
	res, err := committee.NewResolver(f, cl, *bindings)
	if err != nil {
		return err
	}
	c, err := res.Committee(ctx, e)
	if err != nil {
		return fmt.Errorf("committee of epoch %d: %w", e, err)
	}
	fmt.Fprintf(stdout, "committee: %d seats, quorum %d, %d signing keys, hash %s\n", c.N(), c.Quorum(), len(c.Members()), c.Hash())
	for _, m := range c.Members() {
		fmt.Fprintf(stdout, "  %-24s sidecar key %s  seat %s\n", m.Name, m.ID.Hex(), m.SeatOrID().Hex())
	}
	return nil
}

// dialChain connects to the chain node at url, which must serve chainID;
// Stop the client when done.
func dialChain(ctx context.Context, url string, chainID uint64, log *slog.Logger) (*chain.Client, error) {
	c, err := chain.New(chain.Config{URL: url, ExpectedChainID: chainID}, log)
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	return c, nil
}
