// Command e2e is the Allegro end-to-end runner: it builds the allegro image
// (FROM scratch, nothing pulled), generates a testnet (deploy/testnet),
// starts it with compose, drives a steady payment load (chained payments,
// deliberate double-spends and payments from fee-tight accounts, funded
// with exactly a payment's amount and maximum fee or less, included) from
// the host through the sidecars' published APIs, applies perturbations in
// turn (mesh disconnect of one node and of a minority, a partition into two
// halves without a quorum, SIGKILL and restart, pause, a dev-chain restart,
// a Byzantine validator equivocating and publishing invalid signatures),
// then gathers every certificate and QC from all nodes and light clients
// and checks SPEC §7 (and the fee and validity rules of §4) with package
// safety. It prints the report, saves history, run and
// report JSON with every container's log, tears the testnet down, and exits
// non-zero on any violation.
//
//	go run ./e2e                 # short suite (4 validators, every perturbation once)
//	go run ./e2e -validators 7 -rounds 3 -payments 3000
//	go run ./e2e -recheck DIR    # check a saved history.json + run.json again
//
// Exit status: 0 safe; 1 a safety violation, or a fee-tight payment whose
// outcome was not the planned one; 2 usage; 3 the run could not be carried
// out (docker, build or testnet failure). See deploy/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// Exit statuses.
const (
	exitOK        = 0
	exitViolation = 1
	exitUsage     = 2
	exitFailed    = 3
)

func main() {
	if len(os.Args) > 2 && (os.Args[1] == "-recheck" || os.Args[1] == "--recheck") {
		os.Exit(recheck(os.Args[2], os.Stdout, os.Stderr))
	}
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(exitOK)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(exitUsage)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	os.Exit(runSuite(ctx, cfg, logger, os.Stdout))
}

// recheck checks dir/history.json (and dir/run.json when present) again.
func recheck(dir string, stdout, stderr io.Writer) int {
	rep, err := checkSaved(dir)
	if err != nil {
		fmt.Fprintln(stderr, "e2e -recheck:", err)
		return exitFailed
	}
	if err := rep.WriteText(stdout); err != nil {
		fmt.Fprintln(stderr, "e2e -recheck:", err)
		return exitFailed
	}
	if !rep.OK() {
		return exitViolation
	}
	return exitOK
}
