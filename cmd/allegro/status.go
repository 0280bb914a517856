package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/client"
	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/internal/cli"
)

func init() {
	app.Register("status", "ask a sidecar how far a payment got: stage, certificates, QC, settlement", runStatus)
}

const statusUsage = `--sidecar HOST:PORT [--sidecar ...] --committee FILE 0xTXHASH

Asks the first --sidecar that answers (the others are fallbacks) for the
transaction's status over its client API and prints its stage, the
certificates the sidecar holds, the QC and the settlement. Exits 1 when no
sidecar knows the transaction.`

func runStatus(ctx context.Context, args []string, stdout io.Writer) error {
	fs := app.Flags("status", statusUsage)
	var sidecars payStrings
	fs.Var(&sidecars, "sidecar", "sidecar API address host:port (repeat for fallbacks)")
	committeePath := fs.String("committee", "", "committee file")
	timeout := fs.Duration("timeout", client.DefaultTimeout, "time limit per sidecar")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	usageErr := func(format string, a ...any) error {
		fmt.Fprintf(fs.Output(), "allegro status: "+format+"\n", a...)
		return cli.ErrUsage
	}
	switch {
	case len(sidecars) == 0:
		return usageErr("--sidecar is required")
	case *committeePath == "":
		return usageErr("--committee is required")
	case fs.NArg() != 1:
		return usageErr("give one transaction hash")
	}
	txHash, err := client.ParseHash(fs.Arg(0))
	if err != nil {
		return usageErr("%v", err)
	}
	cf, err := committee.LoadFile(*committeePath)
	if err != nil {
		return err
	}
	members, err := cf.Committee()
	if err != nil {
		return err
	}
	c, err := client.New(client.Config{Endpoints: sidecars, Committee: members, Timeout: *timeout})
	if err != nil {
		return err
	}
	defer c.Close()
	st, err := c.Status(ctx, txHash)
	if errors.Is(err, client.ErrNotFound) {
		return fmt.Errorf("tx %s is not known to the sidecars asked (never submitted, refused, or pruned after settlement)", txHash.Hex())
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "tx %s (seen by %s)\n", txHash.Hex(), st.Endpoint)
	fmt.Fprintf(stdout, "  stage         %s\n", st.Stage)
	signers := ""
	if len(st.Signers) > 0 {
		signers = ": " + strings.Join(st.Signers, ", ")
	}
	fmt.Fprintf(stdout, "  certificates  %d of quorum %d%s\n", st.CertCount, st.Quorum, signers)
	if st.QCFormed {
		fmt.Fprintf(stdout, "  QC            %s\n", st.QCHash.Hex())
	} else {
		fmt.Fprintf(stdout, "  QC            not formed yet (%d more certificates needed)\n", max(st.Quorum-st.CertCount, 0))
	}
	fmt.Fprintf(stdout, "  settlement    %s\n", statusSettlement(st))
	return nil
}

// statusSettlement says where the transaction is on its way to the chain.
func statusSettlement(st *client.TxStatus) string {
	switch st.Stage {
	case fastpayv1.TxLifecycleUpdate_QUEUED_ONCHAIN:
		return "sent to the chain, not in a block yet"
	case fastpayv1.TxLifecycleUpdate_INCLUDED:
		return fmt.Sprintf("included in block %d", st.BlockHeight)
	case fastpayv1.TxLifecycleUpdate_FINALIZED:
		return fmt.Sprintf("finalized in block %d", st.BlockHeight)
	}
	if st.QCFormed {
		return "waiting to be sent to the chain"
	}
	return "none before the QC"
}
