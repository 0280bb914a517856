package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/allegro-mesh/allegro/bench"
	"github.com/allegro-mesh/allegro/internal/cli"
)

func init() {
	app.Register("bench", "run the benchmark suite: latency, throughput vs the CPU-bound limit, mesh vs fan-out, resources (docs/benchmarks.md)", runBench)
	app.Register("bench-sidecar", "internal: a child process of `allegro-dev bench` (a sidecar of the resources section, or the throughput load generator); driven over stdin/stdout", runBenchSidecar)
}

// parseInts parses a comma-separated list of positive integers.
func parseInts(s string) ([]int, error) {
	var out []int
	for _, part := range cli.SplitList(s) {
		v, err := strconv.Atoi(part)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", part)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty list")
	}
	return out, nil
}

// parseSections parses --sections: a comma-separated list, or "all".
func parseSections(s string) ([]string, error) {
	if strings.TrimSpace(s) == "all" {
		return append([]string(nil), bench.AllSections...), nil
	}
	out := cli.SplitList(s)
	if len(out) == 0 {
		return nil, fmt.Errorf("empty list")
	}
	for _, sec := range out {
		known := false
		for _, k := range bench.AllSections {
			known = known || sec == k
		}
		if !known {
			return nil, fmt.Errorf("unknown section %q (have %s)", sec, strings.Join(bench.AllSections, ", "))
		}
	}
	return out, nil
}

// benchConfig builds the suite's configuration from the command line.
func benchConfig(args []string, stderr io.Writer) (cfg bench.Config, out, profile string, err error) {
	cfg = bench.DefaultConfig()
	fs := app.Flags("bench", "[flags]")
	fs.SetOutput(stderr)
	sections := fs.String("sections", "all", "comma-separated sections to run: "+strings.Join(bench.AllSections, ", ")+" (or all)")
	validators := fs.String("validators", "4,7,10,31", "committee sizes of the latency section")
	fs.DurationVar(&cfg.LinkLatency, "link-latency", cfg.LinkLatency, "emulated one-way latency per mesh hop of the second latency series (0: skip it)")
	fs.IntVar(&cfg.LatencyPayments, "latency-payments", cfg.LatencyPayments, "payments per latency case, one at a time")
	fs.DurationVar(&cfg.LatencyCaseTime, "latency-case-time", cfg.LatencyCaseTime, "time budget of one latency case: it stops early (after at least 10 payments) once spent (0: none)")
	fs.IntVar(&cfg.ThroughputValidators, "throughput-validators", cfg.ThroughputValidators, "committee size of the saturation run")
	fs.IntVar(&cfg.Payments, "payments", cfg.Payments, "payments measured at saturation")
	fs.IntVar(&cfg.Warmup, "warmup", cfg.Warmup, "unmeasured payments before the saturation run")
	fs.IntVar(&cfg.Streams, "streams", cfg.Streams, "concurrent senders at saturation and in the resources section")
	fs.IntVar(&cfg.RecipientPayments, "recipient-payments", cfg.RecipientPayments, "payments per design in the mesh section")
	fs.DurationVar(&cfg.PollInterval, "poll-interval", cfg.PollInterval, "bulletin polling interval of the reference's recipient")
	fs.IntVar(&cfg.ResourceValidators, "resource-validators", cfg.ResourceValidators, "sidecar processes of the resources section")
	fs.IntVar(&cfg.ResourcePayments, "resource-payments", cfg.ResourcePayments, "payments driven through the sidecar processes (the RSS target is for 100000)")
	fs.DurationVar(&cfg.CostTime, "cost-time", cfg.CostTime, "time spent measuring each per-operation cost")
	fs.StringVar(&cfg.Dir, "dir", "", "working folder for data directories and sidecar logs (default: a temporary folder, removed)")
	fs.StringVar(&out, "out", "", "write results.txt, results.csv and results.json into this folder")
	fs.StringVar(&profile, "cpuprofile", "", "write a CPU profile of the saturation run to this file")
	fs.StringVar(&cfg.HeapProfileDir, "heap-profiles", "", "write a heap profile of each sidecar process at the end of the resources section into this folder")
	logLevel := fs.String("log-level", "error", "log level of the in-process nodes (stderr): debug, info, warn, error")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	if err := cli.Parse(fs, args); err != nil {
		return cfg, "", "", err
	}
	if fs.NArg() > 0 {
		return cfg, "", "", fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if cfg.Sections, err = parseSections(*sections); err != nil {
		return cfg, "", "", fmt.Errorf("--sections: %w", err)
	}
	if cfg.Validators, err = parseInts(*validators); err != nil {
		return cfg, "", "", fmt.Errorf("--validators: %w", err)
	}
	if cfg.Logger, err = cli.NewLogger(*logLevel, ""); err != nil {
		return cfg, "", "", err
	}
	if !*quiet {
		cfg.Progress = stderr
	}
	cfg.Settings = map[string]string{"command": "allegro-dev bench " + strings.Join(args, " ")}
	exe, err := os.Executable()
	if err != nil {
		return cfg, "", "", fmt.Errorf("find this executable (to start sidecar processes): %w", err)
	}
	cfg.StartSidecar = func(args []string) *exec.Cmd {
		return exec.Command(exe, append([]string{"bench-sidecar"}, args...)...)
	}
	return cfg, out, profile, cfg.Validate()
}

func runBench(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, out, profile, err := benchConfig(args, os.Stderr)
	if err != nil {
		return err
	}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		defer f.Close()
		cfg.CPUProfile = f
	}
	report, runErr := bench.Run(ctx, cfg)
	if report == nil {
		return runErr
	}
	fmt.Fprintln(stdout)
	if err := report.WriteText(stdout); err != nil {
		return err
	}
	if out != "" {
		paths, err := report.WriteFiles(out)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\nwrote %s\n", strings.Join(paths, ", "))
	}
	if profile != "" {
		fmt.Fprintf(stdout, "CPU profile of the saturation run: %s (go tool pprof -top %s)\n", profile, profile)
	}
	return runErr
}

func runBenchSidecar(ctx context.Context, args []string, stdout io.Writer) error {
	return bench.SidecarMain(ctx, args, os.Stdin, stdout, os.Stderr)
}
