package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/internal/cli"
	"github.com/allegro-mesh/allegro/qc"
)

func init() {
	app.Register("bind", "sign, with a validator's consensus key (offline), the binding of its sidecar key (SPEC §5a)", runBind)
}

func runBind(_ context.Context, args []string, stdout io.Writer) error {
	fs := app.Flags("bind", "--consensus-key FILE --sidecar-key FILE --chain-id N --first-epoch E --out FILE")
	consensusFile := fs.String("consensus-key", "", "the validator's ed25519 consensus key file (read only to sign; run this on the machine that keeps it)")
	sidecarFile := fs.String("sidecar-key", "", "the sidecar's key file (it signs too: the sidecar key's consent to the binding)")
	chainID := fs.Uint64("chain-id", 0, "chain id (Tempo mainnet 4217, testnet 42431, dev 1337)")
	firstEpoch := fs.Uint64("first-epoch", 0, "first mesh epoch the binding is valid in: at least the current epoch + 2, or 0 for a network's first committee (bindings given to sidecars as files)")
	out := fs.String("out", "binding.toml", "binding file to create (never overwritten)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	epochGiven := false
	fs.Visit(func(f *flag.Flag) { epochGiven = epochGiven || f.Name == "first-epoch" })
	switch {
	case *consensusFile == "" || *sidecarFile == "":
		return errors.New("want --consensus-key and --sidecar-key")
	case *chainID == 0:
		return errors.New("want --chain-id")
	case !epochGiven:
		return errors.New("want --first-epoch (the current epoch + 2 or later; 0 for a network's first committee)")
	}
	_, consensus, err := committee.LoadKeyFile(*consensusFile)
	if err != nil {
		return err
	}
	_, sidecarKey, err := committee.LoadKeyFile(*sidecarFile)
	if err != nil {
		return err
	}
	b, err := qc.SignBinding(consensus, sidecarKey, *chainID, *firstEpoch)
	if err != nil {
		return err
	}
	if b.ConsensusKey == b.SidecarKey {
		return errors.New("--sidecar-key is the consensus key itself: give the sidecar its own key (allegro keygen)")
	}
	if err := committee.WriteBinding(*out, b); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: consensus key %x binds sidecar key %x on chain %d from epoch %d\n", *out, b.ConsensusKey[:], b.SidecarKey[:], b.ChainID, b.FirstEpoch)
	return nil
}
