package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/internal/cli"
	"github.com/allegro-mesh/allegro/qc"
)

const deriveSynopsis = "derive --chain URL --chain-id N --epoch-length L [--epoch E|current] [--bindings FILE|DIR]"

// runCommitteeDerive prints the committee of one epoch derived from the
// chain's validator set and the sidecar key bindings given (SPEC §5a).
func runCommitteeDerive(ctx context.Context, args []string, stdout io.Writer) error {
	fs := app.Flags("committee", deriveSynopsis)
	url := fs.String("chain", "", "JSON-RPC URL of a node of the chain: http(s):// or ws(s)://")
	chainID := fs.Uint64("chain-id", 0, "chain id (Tempo mainnet 4217, testnet 42431, dev 1337)")
	length := fs.Uint64("epoch-length", 0, "blocks per mesh epoch (a network parameter)")
	epochArg := fs.String("epoch", "current", `the epoch: a number, or "current" (the epoch of the chain's head)`)
	bindingsPath := fs.String("bindings", "", "a binding file, or a directory of them (*.toml); none: every seat is unbound")
	timeout := fs.Duration("timeout", 30*time.Second, "give up reaching the chain after this long")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	sched := committee.Schedule{EpochLength: *length}
	switch {
	case *url == "":
		return fmt.Errorf("--chain is required")
	case *chainID == 0:
		return fmt.Errorf("--chain-id is required")
	case sched.Validate() != nil:
		return fmt.Errorf("--epoch-length is required (a positive number of blocks)")
	case fs.NArg() != 0:
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var epoch uint64
	if *epochArg != "current" {
		e, err := strconv.ParseUint(*epochArg, 10, 64)
		if err != nil {
			return fmt.Errorf(`--epoch %q: want a number or "current"`, *epochArg)
		}
		epoch = e
	}
	var bindings []qc.Binding
	var badFiles []committee.BindingFileError
	if *bindingsPath != "" {
		var err error
		if bindings, badFiles, err = committee.LoadBindings(*bindingsPath); err != nil {
			return err
		}
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c, err := dialChain(ctx, *url, *chainID, nil)
	if err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Stop(stopCtx)
	}()
	// Tempo's blocks are final once produced, so the head is finalized.
	head, ok := c.Head()
	if !ok {
		return errors.New("the chain client has no head")
	}
	if *epochArg == "current" {
		epoch = sched.EpochOf(head.Number)
	}
	block, err := sched.CommitteeBlock(epoch)
	if err != nil {
		return err
	}
	if block > head.Number {
		return fmt.Errorf("the committee of epoch %d is read after block %d, and the chain's head is block %d (epoch %d)",
			epoch, block, head.Number, sched.EpochOf(head.Number))
	}
	validators, err := c.Validators(ctx, block)
	if err != nil {
		return err
	}
	com, report, err := committee.Derive(*chainID, epoch, validators, bindings)
	if err != nil {
		return fmt.Errorf("epoch %d (validator set after block %d): %w", epoch, block, err)
	}
	printDerived(stdout, sched, block, head.Number, com, report, badFiles)
	return nil
}

func printDerived(w io.Writer, sched committee.Schedule, block, head uint64, c *qc.Committee, r committee.DeriveReport, badFiles []committee.BindingFileError) {
	d := c.Domain()
	first, _ := sched.FirstBlock(d.Epoch) // CommitteeBlock(epoch) succeeded, so epoch·L fits
	fmt.Fprintf(w, "chain %d, epoch %d: blocks from %d (epoch length %d); validator set after block %d; head %d\n",
		d.ChainID, d.Epoch, first, sched.EpochLength, block, head)
	fmt.Fprintf(w, "n %d, f %d, quorum %d; %d of %d seats can sign; committee hash %s\n\n",
		c.N(), c.F(), c.Quorum(), c.N()-len(r.Unbound), c.N(), c.Hash())

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEAT\tVALIDATOR ADDRESS\tCONSENSUS KEY\tMEMBER\tSIDECAR KEY\tFROM EPOCH")
	for _, s := range r.Seats {
		if len(s.Members) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%x\t-\tunbound: counts in n, cannot sign\t\n", s.Name, s.Address, s.Key[:])
			continue
		}
		for _, id := range s.Members {
			m, _ := c.Member(id)
			fmt.Fprintf(tw, "%s\t%s\t%x\t%s\t%x\t%d\n", s.Name, s.Address, s.Key[:], m.Name, id[:], s.FirstEpoch)
		}
	}
	tw.Flush()

	if len(r.Unbound) > 0 {
		fmt.Fprintf(w, "\nunbound seats (%d): count in n but cannot sign until a binding takes effect:", len(r.Unbound))
		for _, s := range r.Unbound {
			fmt.Fprintf(w, " %s", s.Name)
		}
		fmt.Fprintln(w)
	}
	if len(r.Refused) > 0 || len(badFiles) > 0 {
		fmt.Fprintf(w, "\nrefused bindings (%d):\n", len(r.Refused)+len(badFiles))
		for _, rb := range r.Refused {
			fmt.Fprintf(w, "  %s: %v\n", describeBinding(&rb.Binding), rb.Err)
		}
		for _, bf := range badFiles {
			fmt.Fprintf(w, "  %v\n", bf.Err)
		}
	}
	if len(r.Pending) > 0 {
		fmt.Fprintf(w, "\nnot yet in effect (%d):\n", len(r.Pending))
		for i := range r.Pending {
			fmt.Fprintf(w, "  %s\n", describeBinding(&r.Pending[i]))
		}
	}
	if len(r.Superseded) > 0 {
		fmt.Fprintf(w, "\nrevoked by a later binding (%d):\n", len(r.Superseded))
		for i := range r.Superseded {
			fmt.Fprintf(w, "  %s\n", describeBinding(&r.Superseded[i]))
		}
	}
	for _, k := range r.DuplicateKeys {
		fmt.Fprintf(w, "\nconsensus key %x is listed by more than one active validator: one seat\n", k[:])
	}
}

func describeBinding(b *qc.Binding) string {
	return fmt.Sprintf("consensus key %s binds sidecar key %s from epoch %d (chain %d)",
		hex.EncodeToString(b.ConsensusKey[:]), hex.EncodeToString(b.SidecarKey[:]), b.FirstEpoch, b.ChainID)
}
