// Package cli is what the project's commands share: a table of
// subcommands, flag sets that report errors instead of exiting, and the
// logger. The operator's binary (cmd/allegro) and the development tools
// (cmd/allegro-dev) are each one App.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/allegro-mesh/allegro/internal/buildinfo"
)

// RunFunc runs one subcommand with its arguments.
type RunFunc func(ctx context.Context, args []string, stdout io.Writer) error

type command struct {
	summary string
	run     RunFunc
}

// App is a binary made of subcommands.
type App struct {
	name, summary string
	commands      map[string]command
}

// New returns an App called name (as typed on the command line).
func New(name, summary string) *App {
	return &App{name: name, summary: summary, commands: make(map[string]command)}
}

// Register adds a subcommand.
func (a *App) Register(name, summary string, run RunFunc) {
	a.commands[name] = command{summary: summary, run: run}
}

// ErrUsage marks a usage error: the flag package already printed why.
var ErrUsage = errors.New("usage")

// Main runs the subcommand named by os.Args until it returns or SIGINT or
// SIGTERM cancels it, and exits with its status.
func (a *App) Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := a.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Run runs the subcommand args[0] and returns the process status: 0, 1 for
// a failure, 2 for a usage error, or an ExitError's code.
func (a *App) Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		a.usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" {
		fmt.Fprintln(stdout, a.name, buildinfo.Read())
		return 0
	}
	cmd, ok := a.commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "%s: unknown command %q\n\n", a.name, args[0])
		a.usage(stderr)
		return 2
	}
	if err := cmd.run(ctx, args[1:], stdout); err != nil {
		if errors.Is(err, ErrUsage) || errors.Is(err, flag.ErrHelp) {
			return 2
		}
		fmt.Fprintf(stderr, "%s %s: %v\n", a.name, args[0], err)
		var ee *ExitError
		if errors.As(err, &ee) {
			return ee.Code
		}
		return 1
	}
	return 0
}

// ExitError is a failure with its own process status (other than 1, a
// failure, and 2, a usage error), for outcomes a script must tell apart.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

func (a *App) usage(w io.Writer) {
	fmt.Fprintf(w, "%s: %s\n", a.name, a.summary)
	fmt.Fprintf(w, "\nusage: %s <command> [flags]   (%s <command> -h for its flags)\n", a.name, a.name)
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(a.commands))
	for n := range a.commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-13s %s\n", n, a.commands[n].summary)
	}
}

// Flags returns a flag set for subcommand name that reports errors instead
// of exiting; synopsis follows the name in its usage line.
func (a *App) Flags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s %s %s\n\nflags:\n", a.name, name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// Parse parses args, turning a flag error into ErrUsage (already printed).
func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return ErrUsage
	}
	return nil
}

// NewLogger returns a logger at level on stderr, in format "text"
// (logfmt, the default when format is empty) or "json" (one object per
// line, for log collectors).
func NewLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	default:
		return nil, fmt.Errorf("log format %q: use text or json", format)
	}
}

// SplitList splits a comma-separated list, dropping empty items.
func SplitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
