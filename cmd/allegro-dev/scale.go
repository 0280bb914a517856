package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/allegro-mesh/allegro/internal/cli"
	"github.com/allegro-mesh/allegro/sim"
)

func init() {
	app.Register("scale", "simulate 100–1,000 validators in virtual time on a WAN or LAN profile and print the scale table and plot (docs/scale.md); needs the Go toolchain and this source tree", runScale)
}

// modulePath is this repository's module: the scale command runs its
// simulation package from a checkout of it.
const modulePath = "github.com/allegro-mesh/allegro"

// scaleArgs turns the command line into the go test invocation of the
// simulation. The simulation runs under testing/synctest, whose virtual
// time exists only inside a test, so the command is a front for the test
// rather than a section of `allegro-dev bench`.
func scaleArgs(args []string, stderr io.Writer) ([]string, error) {
	fs := app.Flags("scale", "[flags]")
	fs.SetOutput(stderr)
	validators := fs.String("validators", "100,300", "committee sizes")
	payments := fs.Int("payments", 10, "payments per case (light load: one a second)")
	cases := fs.String("cases", "wan", "cases per size: "+strings.Join(sim.Cases, ", ")+" (crashed: f down; partition: halves cut for --cut)")
	degree := fs.Int("degree", 0, "validators each one dials (0: every other, as a node does with its committee; from 3)")
	remote := fs.Int("remote", 0, "with --degree, a regional mesh: --degree of the own region and this many of every other region")
	cut := fs.Duration("cut", sim.DefaultCut, "how long the partition case cuts the network")
	out := fs.String("out", "scale-results", "folder for results.json (kept across runs), scale.txt and scale.svg")
	if err := cli.Parse(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	sizes, err := parseInts(*validators)
	if err != nil {
		return nil, fmt.Errorf("--validators: %w", err)
	}
	for _, n := range sizes {
		if n < 4 {
			return nil, fmt.Errorf("--validators: %d is below the smallest committee, 4", n)
		}
	}
	if *cut <= 0 {
		return nil, fmt.Errorf("--cut must be positive, got %s", *cut)
	}
	if *payments <= 0 {
		return nil, fmt.Errorf("--payments must be positive, got %d", *payments)
	}
	cs := cli.SplitList(*cases)
	if len(cs) == 0 {
		return nil, errors.New("--cases: empty list")
	}
	for _, c := range cs {
		if err := (&sim.Config{}).ApplyCase(c); err != nil {
			return nil, fmt.Errorf("--cases: %w", err)
		}
	}
	if *degree < 0 || (*degree > 0 && *degree < 3) {
		return nil, fmt.Errorf("--degree must be 0 or at least 3, got %d", *degree)
	}
	if *remote < 0 || (*remote > 0 && *degree == 0) {
		return nil, fmt.Errorf("--remote must be 0, or positive with --degree, got %d", *remote)
	}
	dir, err := filepath.Abs(*out)
	if err != nil {
		return nil, fmt.Errorf("--out: %w", err)
	}
	ints := make([]string, len(sizes))
	for i, n := range sizes {
		ints[i] = strconv.Itoa(n)
	}
	return []string{"test", "./sim", "-run", "^TestScaleReport$", "-count", "1", "-timeout", "0", "-v", "-args",
		"-sim.validators", strings.Join(ints, ","), "-sim.payments", strconv.Itoa(*payments),
		"-sim.cases", strings.Join(cs, ","), "-sim.degree", strconv.Itoa(*degree), "-sim.remote", strconv.Itoa(*remote),
		"-sim.cut", cut.String(), "-sim.out", dir}, nil
}

// moduleRoot finds the checkout of this module that holds the working
// directory.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Path}} {{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("the scale simulation runs from a checkout of %s with the Go toolchain: `go list -m` failed (%w); run this command inside the repository", modulePath, err)
	}
	path, dir, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if path != modulePath {
		return "", fmt.Errorf("the working directory is not inside a checkout of %s (its module: %q): run this command inside the repository", modulePath, path)
	}
	return dir, nil
}

func runScale(ctx context.Context, args []string, stdout io.Writer) error {
	goArgs, err := scaleArgs(args, os.Stderr)
	if err != nil {
		return err
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", goArgs...)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = stdout, os.Stderr
	fmt.Fprintf(os.Stderr, "running: go %s\n(in %s; progress lines follow, the table at the end; virtual time for QC, real CPU)\n", strings.Join(goArgs, " "), root)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("the simulation failed: %w", err)
	}
	return nil
}
