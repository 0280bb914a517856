package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/allegro-mesh/allegro/internal/cli"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/validator"
)

func init() {
	app.Register("history", "export or import a validator's signing history (moving it to another machine)", runHistory)
}

const historyUsage = `export --data-dir DIR --out FILE
       allegro history import --data-dir DIR --in FILE

Moves a validator to another machine without it ever signing two conflicting
certificates. export writes what the sidecar's durable state consults before
signing (the certificates of contention keys not yet settled, the last nonce
signed per sender and nonce key, their signed requests and reserved fees, the
chain identity); import writes it into the new machine's data directory.
Both refuse a data directory a running sidecar holds: stop it first, and do
not start the old one again. import refuses a data directory that already
holds signing history: histories are never merged.`

func runHistory(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "export" && args[0] != "import") {
		fs := app.Flags("history", historyUsage)
		fs.Usage()
		return cli.ErrUsage
	}
	op := args[0]
	fs := app.Flags("history "+op, historyUsage)
	dataDir := fs.String("data-dir", "", "the sidecar's data directory (its data_dir)")
	out := fs.String("out", "", "export: file to create (never overwritten)")
	in := fs.String("in", "", "import: file written by allegro history export")
	if err := cli.Parse(fs, args[1:]); err != nil {
		return err
	}
	usageErr := func(format string, a ...any) error {
		fmt.Fprintf(fs.Output(), "allegro history %s: "+format+"\n", append([]any{op}, a...)...)
		return cli.ErrUsage
	}
	switch {
	case *dataDir == "":
		return usageErr("--data-dir is required")
	case fs.NArg() != 0:
		return usageErr("unexpected arguments %q", fs.Args())
	case op == "export" && (*out == "" || *in != ""):
		return usageErr("export takes --out FILE")
	case op == "import" && (*in == "" || *out != ""):
		return usageErr("import takes --in FILE")
	}
	log := slog.New(slog.DiscardHandler)
	stateDir := node.StateDir(*dataDir)
	if op == "export" {
		if _, err := os.Stat(stateDir); err != nil {
			return fmt.Errorf("%s holds no sidecar state (%w): give the sidecar's data_dir", *dataDir, err)
		}
		store, err := validator.OpenStore(stateDir, 0, log)
		if err != nil {
			return err
		}
		defer store.Close()
		f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		stats, err := store.ExportHistory(f)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(*out)
			return err
		}
		fmt.Fprintf(stdout, "exported the signing history of %s to %s: %s\n", *dataDir, *out, historySummary(stats))
		fmt.Fprintf(stdout, "do not start a sidecar on %s again: import the file on the new machine before its sidecar first starts\n", *dataDir)
		return nil
	}
	f, err := os.Open(*in)
	if err != nil {
		return fmt.Errorf("--in: %w", err)
	}
	defer f.Close()
	store, err := validator.OpenStore(stateDir, 0, log)
	if err != nil {
		return err
	}
	defer store.Close()
	stats, err := store.ImportHistory(f)
	if errors.Is(err, validator.ErrHistoryExists) {
		return fmt.Errorf("%s: %w", *dataDir, err)
	}
	if err != nil {
		return err
	}
	if err := store.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported into %s: %s\n", *dataDir, historySummary(stats))
	fmt.Fprintln(stdout, "start the sidecar with the same validator key; it refuses to start with another key's history")
	return nil
}

func historySummary(st validator.HistoryStats) string {
	s := fmt.Sprintf("%d unsettled signatures, %d nonce cursors, %d signed requests, %d fee reservations", st.Signatures, st.Cursors, st.Requests, st.Fees)
	if st.ChainID != 0 {
		s += fmt.Sprintf(", chain id %d", st.ChainID)
	}
	if len(st.Signers) > 0 {
		ids := make([]string, len(st.Signers))
		for i, id := range st.Signers {
			ids[i] = id.Hex()
		}
		s += ", signed by " + strings.Join(ids, ", ")
	}
	return s
}
