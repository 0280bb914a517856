package main

import (
	"context"
	"debug/buildinfo"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/allegro-mesh/allegro/bench"
	"github.com/allegro-mesh/allegro/internal/cli"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/p2p"
)

func init() {
	app.Register("bench", "run the benchmark suite: latency, throughput vs the CPU-bound limit, mesh vs fan-out, resources (docs/benchmarks.md)", runBench)
	app.Register(bench.ChildCommand, "internal: a child process of `allegro-dev bench` (a sidecar of the resources section, or the throughput load generator); driven over stdin/stdout", runBenchSidecar)
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
	fs.StringVar(&profile, "cpuprofile", "", "write a CPU profile of the saturation run (without the throughput section: of the largest latency case's measured payments) to this file")
	childExe := fs.String("child-exe", "", "executable of the child processes (the resources section's sidecars, the load generator): default "+benchChildName+" beside this executable when it comes from the same build (go build -o bin/ ./cmd/...), else this executable, whose development chain code adds to each sidecar process's memory")
	fs.StringVar(&cfg.Transport, "transport", p2p.DefaultPreferredTransport, "transport the validators dial first, in every section and the gossip floor: tcp or quic (p2p preferred_transport)")
	fs.StringVar(&cfg.CertRouting, "cert-routing", p2p.CertRoutingBulletin, "where the validators send their certificates, in every section but the gossip floor: bulletin (SPEC §5 revision 2) or entry (the proposed revision 3, docs/proposal-linear-certificates.md; p2p cert_routing)")
	fs.StringVar(&cfg.HeapProfileDir, "heap-profiles", "", "write heap profiles of each sidecar process, at half the resources section (vN-half.heap, under load) and at its end (vN.heap), into this folder")
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
	cfg.Settings = map[string]string{"command": "allegro-dev bench " + strings.Join(args, " "), "transport": cfg.Transport, "cert_routing": cfg.CertRouting}
	self, err := os.Executable()
	if err != nil {
		return cfg, "", "", fmt.Errorf("find this executable (to start sidecar processes): %w", err)
	}
	exe, err := childExecutable(*childExe, self, sameBuild)
	if err != nil {
		return cfg, "", "", fmt.Errorf("--child-exe: %w", err)
	}
	cfg.ChildExecutable = exe
	cfg.Settings["child-exe"] = exe
	if cfg.Progress != nil && exe != self {
		fmt.Fprintf(cfg.Progress, "child processes run %s\n", exe)
	}
	cfg.StartSidecar = func(args []string) *exec.Cmd {
		return exec.Command(exe, append([]string{bench.ChildCommand}, args...)...)
	}
	return cfg, out, profile, cfg.Validate()
}

func runBench(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, out, profile, err := benchConfig(args, os.Stderr)
	if err != nil {
		return err
	}
	// The in-process sections' validators share this process: give it the
	// collector setting an allegro sidecar process has by default, so their
	// CPU figures include what that setting costs.
	gcPercent, gcSource, err := node.ApplyGCPercent(node.DefaultConfig(), os.Getenv)
	if err != nil {
		return err
	}
	cfg.Settings["gc_percent"] = fmt.Sprintf("%d (%s)", gcPercent, gcSource)
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
		fmt.Fprintf(stdout, "CPU profile: %s (go tool pprof -top %s)\n", profile, profile)
	}
	return runErr
}

func runBenchSidecar(ctx context.Context, args []string, stdout io.Writer) error {
	return bench.SidecarMain(ctx, args, os.Stdin, stdout, os.Stderr)
}

// benchChildName is the executable cmd/allegro-bench-sidecar builds: the
// suite's child processes with the sidecar's code and not the development
// chain's, so a sidecar process's resident memory is an allegro sidecar's.
const benchChildName = "allegro-bench-sidecar"

// childExecutable picks the executable of the suite's child processes:
// given, when set (it must exist); else benchChildName beside self when
// sameBuild says it was built from the same source (a stale one would
// measure other code); else self.
func childExecutable(given, self string, sameBuild func(a, b string) bool) (string, error) {
	if given != "" {
		abs, err := filepath.Abs(given)
		if err != nil {
			return "", err
		}
		if st, err := os.Stat(abs); err != nil {
			return "", err
		} else if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
			return "", fmt.Errorf("%s is not an executable file", abs)
		}
		return abs, nil
	}
	beside := filepath.Join(filepath.Dir(self), benchChildName)
	if st, err := os.Stat(beside); err == nil && !st.IsDir() && sameBuild(self, beside) {
		return beside, nil
	}
	return self, nil
}

// sameBuild reports whether two executables look built from the same
// source: the same Go version, main module and build settings, the same
// version of every module both link, and either the same VCS stamp
// (revision, commit time, modified flag) or, when the build stamped none
// (-buildvcs=false), files written within builtTogether of each other, as
// one go build writes its outputs.
func sameBuild(a, b string) bool {
	type facts struct {
		build   string
		deps    map[string]string // module path → version and sum
		vcs     bool
		written time.Time
	}
	read := func(path string) (facts, bool) {
		bi, err := buildinfo.ReadFile(path)
		if err != nil {
			return facts{}, false
		}
		st, err := os.Stat(path)
		if err != nil {
			return facts{}, false
		}
		parts := []string{bi.GoVersion, bi.Main.Path, bi.Main.Version}
		f := facts{deps: make(map[string]string, len(bi.Deps)), written: st.ModTime()}
		for _, s := range bi.Settings {
			parts = append(parts, s.Key+"="+s.Value)
			f.vcs = f.vcs || s.Key == "vcs.revision"
		}
		f.build = strings.Join(parts, "\n")
		for _, d := range bi.Deps {
			f.deps[d.Path] = d.Version + " " + d.Sum
		}
		return f, true
	}
	fa, okA := read(a)
	fb, okB := read(b)
	if !okA || !okB || fa.build != fb.build {
		return false
	}
	for path, v := range fa.deps {
		if w, ok := fb.deps[path]; ok && w != v {
			return false
		}
	}
	return fa.vcs || fa.written.Sub(fb.written).Abs() <= builtTogether
}

// builtTogether bounds how far apart one go build writes its executables.
const builtTogether = 2 * time.Minute
