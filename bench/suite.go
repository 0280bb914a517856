// Package bench is the project's benchmark suite: it measures, in one
// process run so the figures are comparable, the submit-to-QC latency on
// in-process meshes of several sizes (loopback and with emulated link
// latency), the throughput at saturation against the CPU-bound limit
// computed from the per-payment work measured in the same run, the mesh
// against the reference's direct fan-out (and when a recipient that did
// not submit holds the QC), and the bytes and resident memory a sidecar
// needs. `allegro-dev bench` runs it; docs/benchmarks.md explains the figures.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Sections of the suite, in the order they run.
const (
	SectionCost       = "cost"
	SectionLatency    = "latency"
	SectionThroughput = "throughput"
	SectionMesh       = "mesh"
	SectionResources  = "resources"
)

// AllSections lists every section in run order.
var AllSections = []string{SectionCost, SectionLatency, SectionThroughput, SectionMesh, SectionResources}

// Targets of the suite, for a 2-core machine.
const (
	// TargetLatencyP50Ms and TargetLatencyP99Ms bound submit → verified QC
	// at light load on four validators (loopback, no added link latency).
	TargetLatencyP50Ms = 3.5
	TargetLatencyP99Ms = 12.0
	// TargetLargeCommitteeP50Ms bounds the same p50 on
	// TargetLargeCommitteeValidators validators.
	TargetLargeCommitteeP50Ms      = 30.0
	TargetLargeCommitteeValidators = 31
	// TargetSaturation bounds achieved / CPU-bound limit (minimal work) on
	// TargetSaturationValidators validators.
	TargetSaturation           = 0.60
	TargetSaturationValidators = 4
	// TargetSaturationWorkFactor bounds the validators' CPU per payment per
	// validator at saturation, as a multiple of the minimal work (at n = 4,
	// 10 and 31).
	TargetSaturationWorkFactor = 2.0
	// TargetLightLoadCopiesFactor bounds the message copies (frames) a
	// validator receives per payment at light load, as a multiple of n + 2:
	// about the transaction, n − 1 certificates and the QC on the bulletin
	// and on its shard, once each.
	TargetLightLoadCopiesFactor = 1.2
	// TargetLightLoadBytes bounds the bytes each validator sends per payment
	// at light load on TargetLightLoadBytesValidators validators.
	TargetLightLoadBytes           = 15_000.0
	TargetLightLoadBytesValidators = 31
	TargetRecipientRatio           = 50.0 // polling delay / QC-topic delay
	TargetPeakRSSMiB               = 200.0
	// TargetRSSPayments is the run size the RSS target is defined for.
	TargetRSSPayments = 100_000
)

// Config sizes a run. Start from DefaultConfig; Validate names the first bad
// field.
type Config struct {
	// Sections to run (default AllSections).
	Sections []string
	// ChainID of the bench networks (default DefaultChainID).
	ChainID uint64

	// CostTime is how long each per-operation cost is measured
	// (default 1 s).
	CostTime time.Duration

	// Validators are the committee sizes of the latency section
	// (default 4, 7, 10, 31).
	Validators []int
	// LinkLatency is the emulated one-way delay per mesh hop of the second
	// latency series (default 10 ms; 0 skips that series).
	LinkLatency time.Duration
	// LatencyPayments is the number of payments per latency case, one at a
	// time (default 200), after LatencyWarmup unmeasured ones (default 10).
	LatencyPayments int
	LatencyWarmup   int
	// LatencyCaseTime bounds one latency case's measured payments: past it
	// the case stops (after at least 10 payments) and says so (default
	// 40 s; 0: no bound).
	LatencyCaseTime time.Duration

	// ThroughputValidators is the committee size of the saturation run and
	// its gossip floor (default 4; the CPU target is defined at 4, 10 and
	// 31).
	ThroughputValidators int
	// Payments is the number of payments measured at saturation
	// (default 5,000), after Warmup unmeasured ones (default 500).
	Payments int
	Warmup   int
	// Streams is the number of concurrent senders at saturation and in the
	// resource run (default 64).
	Streams int

	// RecipientPayments is the number of payments of each design (mesh,
	// direct fan-out) in the mesh section (default 100).
	RecipientPayments int
	// PollInterval is how often the reference's recipient polls a bulletin
	// board (default 1 s, the reference's interval).
	PollInterval time.Duration

	// ResourceValidators is the number of sidecar processes of the
	// resource run (default 4); ResourcePayments the payments it drives
	// through them (default 20,000; the RSS target is defined for 100,000).
	ResourceValidators int
	ResourcePayments   int
	// StartSidecar returns the command running one child process of the
	// suite with the given arguments (see SidecarMain): a sidecar of the
	// resource run, or the saturation run's load generator. Required for
	// the resources section; without it the saturation run generates its
	// load in this process, and its CPU figures include the generator's.
	StartSidecar func(args []string) *exec.Cmd
	// ChildExecutable names the executable StartSidecar runs, for the
	// report: a sidecar process's file-backed memory is mostly that
	// executable's code.
	ChildExecutable string

	// Dir is the working folder (data directories, sidecar logs); default
	// a temporary folder removed at the end.
	Dir string
	// CPUProfile, when set, receives a CPU profile of the measured part of
	// the saturation run or, when the throughput section is not run, of the
	// measured payments of the largest latency case on loopback.
	CPUProfile io.Writer
	// HeapProfileDir, when set, receives heap profiles of each sidecar
	// process: at half the resource run, under load (v0-half.heap, ...),
	// and at its end (v0.heap, ...).
	HeapProfileDir string
	// Progress receives progress lines during long runs (nil: none), every
	// ProgressInterval (default 5 s).
	Progress         io.Writer
	ProgressInterval time.Duration
	// Transport is the validators' p2p.Config.PreferredTransport, for
	// the mesh and the gossip floor alike ("": the default).
	Transport string
	// CertRouting is the validators' p2p.Config.CertRouting in every
	// section but the gossip floor ("": the default).
	CertRouting string
	// Logger receives the nodes' logs (default: discarded).
	Logger *slog.Logger
	// Settings are recorded in the report as given (for example the
	// command line); the suite adds the sizes it ran.
	Settings map[string]string
}

// DefaultConfig returns the default sizes: about ten minutes on a 2-core
// machine.
func DefaultConfig() Config {
	return Config{
		Sections:             slices.Clone(AllSections),
		ChainID:              DefaultChainID,
		CostTime:             time.Second,
		Validators:           []int{4, 7, 10, 31},
		LinkLatency:          10 * time.Millisecond,
		LatencyPayments:      200,
		LatencyWarmup:        10,
		LatencyCaseTime:      40 * time.Second,
		ThroughputValidators: 4,
		Payments:             5_000,
		Warmup:               500,
		Streams:              64,
		RecipientPayments:    100,
		PollInterval:         time.Second,
		ResourceValidators:   4,
		ResourcePayments:     20_000,
		ProgressInterval:     5 * time.Second,
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if len(c.Sections) == 0 {
		return errors.New("bench config: Sections is empty")
	}
	for _, s := range c.Sections {
		if !slices.Contains(AllSections, s) {
			return fmt.Errorf("bench config: unknown section %q (have %s)", s, strings.Join(AllSections, ", "))
		}
	}
	if c.ChainID == 0 {
		return errors.New("bench config: ChainID must be set")
	}
	for _, n := range c.Validators {
		if n < 1 || n > 100 {
			return fmt.Errorf("bench config: Validators entries must be between 1 and 100, got %d", n)
		}
	}
	if c.has(SectionLatency) && len(c.Validators) == 0 {
		return errors.New("bench config: Validators is empty")
	}
	positive := []struct {
		name string
		v    int
	}{
		{"LatencyPayments", c.LatencyPayments}, {"ThroughputValidators", c.ThroughputValidators},
		{"Payments", c.Payments}, {"Streams", c.Streams}, {"RecipientPayments", c.RecipientPayments},
		{"ResourceValidators", c.ResourceValidators}, {"ResourcePayments", c.ResourcePayments},
	}
	for _, f := range positive {
		if f.v <= 0 {
			return fmt.Errorf("bench config: %s must be positive, got %d", f.name, f.v)
		}
	}
	if err := validTransport(c.Transport); err != nil {
		return fmt.Errorf("bench config: Transport: %w", err)
	}
	if err := validCertRouting(c.CertRouting); err != nil {
		return fmt.Errorf("bench config: CertRouting: %w", err)
	}
	switch {
	case c.LatencyWarmup < 0:
		return fmt.Errorf("bench config: LatencyWarmup must not be negative, got %d", c.LatencyWarmup)
	case c.Warmup < 0:
		return fmt.Errorf("bench config: Warmup must not be negative, got %d", c.Warmup)
	case c.LatencyCaseTime < 0:
		return fmt.Errorf("bench config: LatencyCaseTime must not be negative, got %s", c.LatencyCaseTime)
	case c.CostTime <= 0:
		return fmt.Errorf("bench config: CostTime must be positive, got %s", c.CostTime)
	case c.LinkLatency < 0:
		return fmt.Errorf("bench config: LinkLatency must not be negative, got %s", c.LinkLatency)
	case c.PollInterval <= 0:
		return fmt.Errorf("bench config: PollInterval must be positive, got %s", c.PollInterval)
	case c.ProgressInterval < 0:
		return fmt.Errorf("bench config: ProgressInterval must not be negative, got %s", c.ProgressInterval)
	case c.ThroughputValidators > 100 || c.ResourceValidators > 100:
		return errors.New("bench config: ThroughputValidators and ResourceValidators must be at most 100")
	case c.has(SectionResources) && c.StartSidecar == nil:
		return errors.New("bench config: StartSidecar must be set to run the resources section")
	}
	return nil
}

func (c Config) has(section string) bool { return slices.Contains(c.Sections, section) }

// suite is one run in progress.
type suite struct {
	cfg    Config
	dir    string
	report *Report
	costs  *OpCosts
}

// Run runs the selected sections in order. A failing section is recorded in
// Report.Errors and the next one runs; Run returns an error (with the
// partial report) if any failed or ctx ended.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &suite{cfg: cfg, report: &Report{Started: time.Now(), Settings: map[string]string{}}}
	for k, v := range cfg.Settings {
		s.report.Settings[k] = v
	}
	s.recordSettings()
	s.report.Machine = machineFacts()
	s.dir = cfg.Dir
	if s.dir == "" {
		d, err := os.MkdirTemp("", "allegro-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		s.dir = d
	} else if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, err
	}
	cpu0, wall0 := processCPU(), time.Now()
	sections := []struct {
		name string
		run  func(context.Context) error
	}{
		{SectionCost, s.runCost},
		{SectionLatency, s.runLatency},
		{SectionThroughput, s.runThroughput},
		{SectionMesh, s.runMesh},
		{SectionResources, s.runResources},
	}
	var errs []error
	for _, sec := range sections {
		if !cfg.has(sec.name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		s.logf("== %s", sec.name)
		start := time.Now()
		if err := sec.run(ctx); err != nil {
			err = fmt.Errorf("section %s: %w", sec.name, err)
			s.report.Errors = append(s.report.Errors, err.Error())
			errs = append(errs, err)
			s.logf("%v", err)
			continue
		}
		s.logf("   %s done in %s", sec.name, time.Since(start).Round(time.Second))
	}
	s.report.Finished = time.Now()
	s.report.Machine.LoadEnd = loadAvg()
	s.report.Machine.CoresUsed = ratio(float64(processCPU()-cpu0), float64(time.Since(wall0)))
	return s.report, errors.Join(errs...)
}

func (s *suite) logf(format string, args ...any) {
	if s.cfg.Progress != nil {
		fmt.Fprintf(s.cfg.Progress, format+"\n", args...)
	}
}

func (s *suite) add(rows ...Row) {
	for _, r := range rows {
		s.report.add(r)
	}
}

// sectionDir returns a fresh folder for one network of a section.
func (s *suite) sectionDir(name string) (string, error) {
	d := filepath.Join(s.dir, name)
	if err := os.RemoveAll(d); err != nil {
		return "", err
	}
	return d, os.MkdirAll(d, 0o700)
}

// clusterStopTime bounds stopping an in-process cluster.
const clusterStopTime = time.Minute

// stopCluster stops cl and says so when it does not stop in time: nodes
// left running keep using CPU and holding their identities in this
// process, which distorts whatever the suite measures next.
func (s *suite) stopCluster(cl *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), clusterStopTime)
	defer cancel()
	start := time.Now()
	if err := cl.Stop(ctx); err != nil {
		s.logf("   warning: the %d-validator cluster did not stop cleanly in %s: %v", len(cl.Nodes), time.Since(start).Round(time.Millisecond), err)
	}
}

// opCosts measures the per-operation costs once per run.
func (s *suite) opCosts(ctx context.Context) (OpCosts, error) {
	if s.costs != nil {
		return *s.costs, nil
	}
	sizes := append(slices.Clone(s.cfg.Validators), s.cfg.ThroughputValidators)
	c, err := MeasureCosts(ctx, s.cfg.ChainID, sizes, s.cfg.CostTime)
	if err != nil {
		return c, err
	}
	s.costs = &c
	return c, nil
}

func (s *suite) runCost(ctx context.Context) error {
	c, err := s.opCosts(ctx)
	if err != nil {
		return err
	}
	s.add(costRows(c)...)
	return nil
}

func (s *suite) recordSettings() {
	c := s.cfg
	set := func(k, v string) {
		if _, ok := s.report.Settings[k]; !ok {
			s.report.Settings[k] = v
		}
	}
	ints := func(v []int) string {
		parts := make([]string, len(v))
		for i, n := range v {
			parts[i] = strconv.Itoa(n)
		}
		return strings.Join(parts, ",")
	}
	set("sections", strings.Join(c.Sections, ","))
	set("validators", ints(c.Validators))
	set("link-latency", c.LinkLatency.String())
	set("latency-payments", strconv.Itoa(c.LatencyPayments))
	set("latency-case-time", c.LatencyCaseTime.String())
	set("throughput-validators", strconv.Itoa(c.ThroughputValidators))
	set("payments", strconv.Itoa(c.Payments))
	set("warmup", strconv.Itoa(c.Warmup))
	set("streams", strconv.Itoa(c.Streams))
	set("recipient-payments", strconv.Itoa(c.RecipientPayments))
	set("poll-interval", c.PollInterval.String())
	set("resource-validators", strconv.Itoa(c.ResourceValidators))
	set("resource-payments", strconv.Itoa(c.ResourcePayments))
}

// machineFacts records the machine, the build and the load at the start.
func machineFacts() Machine {
	host, _ := os.Hostname()
	return Machine{
		GoVersion:  runtime.Version(),
		GOOS:       runtime.GOOS,
		GOARCH:     runtime.GOARCH,
		NumCPU:     runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		CPUModel:   cpuModel(),
		Commit:     commit(),
		Hostname:   host,
		LoadStart:  loadAvg(),
	}
}

// commit returns the VCS revision the binary was built from, or what git
// says about the working directory, or "unknown".
func commit() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if rev != "" {
			if len(rev) > 12 {
				rev = rev[:12]
			}
			if modified == "true" {
				rev += "+modified"
			}
			return rev
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		rev += "+modified"
	}
	return rev
}
