package main

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Perturbations, in the order a round applies them.
const (
	// FaultDisconnectOne cuts one honest sidecar off both mesh networks
	// (it still reaches the chain and its API).
	FaultDisconnectOne = "disconnect-one"
	// FaultDisconnectMinority cuts f honest sidecars off the mesh.
	FaultDisconnectMinority = "disconnect-minority"
	// FaultPartition splits the committee into two halves, neither with a
	// quorum: one half leaves mesh-b, the other mesh-a.
	FaultPartition = "partition"
	// FaultKill SIGKILLs a sidecar (docker kill) and starts it again when
	// the phase ends.
	FaultKill = "kill"
	// FaultPause freezes a sidecar (docker pause) until the phase ends.
	FaultPause = "pause"
	// FaultChainRestart stops the dev chain (docker stop, state kept on its
	// volume) and starts it again when the phase ends.
	FaultChainRestart = "chain-restart"
	// FaultByzantineEquivocate recreates the Byzantine validator in
	// equivocate mode; the healed phase recreates it honest.
	FaultByzantineEquivocate = "byzantine-equivocate"
	// FaultByzantineInvalidSig recreates the Byzantine validator in
	// invalid-signatures mode.
	FaultByzantineInvalidSig = "byzantine-invalid-signatures"
	// FaultMembership changes the committee through the chain under load:
	// the ValidatorConfig's owner adds a validator outside the committee
	// (the spare, or one removed before) and, once it signs in a new
	// epoch, deactivates an honest member; the healed phase starts when
	// the member has left at a later boundary. Needs EpochLength.
	FaultMembership = "membership-change"
)

// AllFaults lists every perturbation in round order.
var AllFaults = []string{
	FaultDisconnectOne, FaultDisconnectMinority, FaultPartition, FaultKill,
	FaultPause, FaultChainRestart, FaultByzantineEquivocate, FaultByzantineInvalidSig, FaultMembership,
}

// Config is one end-to-end run. Start from DefaultConfig (the short CI
// suite) and override.
type Config struct {
	// Validators is the committee size (default 4; 4, 7 and 10 are the
	// tested sizes).
	Validators int
	// Payments is the number of steady-load payments aimed for over the
	// planned phases (default 250). The pace is Payments divided by the
	// planned load time; lanes that wait for a QC (a partition) send fewer.
	Payments int
	// Rounds is how often each perturbation is applied (default 1).
	Rounds int
	// Faults are the perturbations, in order (default AllFaults).
	Faults []string
	// Baseline, Fault and Heal are the durations of the baseline phase and
	// of each fault and healed phase (defaults 8 s, 10 s, 8 s).
	Baseline, Fault, Heal time.Duration
	// Lanes is the number of concurrent payment senders (default 6). Each
	// lane owns AccountsPerLane load accounts and pays one at a time.
	Lanes int
	// AccountsPerLane (default 4).
	AccountsPerLane int
	// DoubleSpendAccounts is the pool of load accounts used for
	// deliberate double-spends (default 24); a double-spend that leaves
	// both transactions without a QC retires its account.
	DoubleSpendAccounts int
	// DoubleSpendEvery is the interval between double-spend attempts
	// (default 4 s).
	DoubleSpendEvery time.Duration
	// ChainEvery makes every ChainEvery-th lane payment a chained pair:
	// parent, then a child that carries the parent's QC (default 5). A demo
	// lane (alice → bob → carol → alice, 10 dollars each, each spending
	// the funds the previous payment brought) always runs too.
	ChainEvery int
	// FeeTight is the number of fee-tight sets (default 1; 0: none). Each
	// set funds six fresh accounts, from a load account kept for that, with
	// exactly the amount of one payment and its maximum fee or less, and
	// pays from them at the start of the baseline: the payers short of the
	// fee must be refused, the others certified and settled, also when a
	// recipient spends its credit with the QC as parent (see feetight.go).
	FeeTight int
	// LightClients is the number of light-client containers (default 2).
	LightClients int
	// EpochLength is the blocks per mesh epoch (default 12): committees
	// then come from the dev chain's validator set and every phase runs
	// across epoch boundaries. 0: one fixed committee from the committee
	// file (without FaultMembership).
	EpochLength uint64
	// BlockPeriod of the dev chain (default 1 s).
	BlockPeriod time.Duration
	// AttemptTimeout bounds one submission attempt to one sidecar, up to
	// its QC (default 5 s).
	AttemptTimeout time.Duration
	// Drain bounds the wait, after the last phase, for lanes to finish the
	// payments they still hold (default 60 s).
	Drain time.Duration
	// Settle bounds the wait for every certified payment to be on chain
	// (default 90 s).
	Settle time.Duration
	// Timeout bounds the whole run, teardown excluded (default 25 min).
	Timeout time.Duration
	// Image is the image to build and run (default
	// "allegro-e2e-allegro:dev").
	Image string
	// SkipBuild uses Image as it is.
	SkipBuild bool
	// Trimpath builds the binary with -trimpath (default true: no host
	// paths in the image). Without it the build reuses the package cache
	// of ordinary builds and tests, which saves minutes on a cold cache for
	// the -trimpath variant (.ci/run turns it off).
	Trimpath bool
	// RemoveImage removes Image at the end of the run.
	RemoveImage bool
	// Keep leaves the testnet running at the end (for debugging).
	Keep bool
	// Artifacts is the directory for history, report and logs (default: a
	// new allegro-e2e-<id> folder in the system temporary directory).
	Artifacts string
	// Compose forces the compose command ("docker compose" or
	// "docker-compose"; default: detected).
	Compose string
	// Seed seeds victim, side and recipient choices (default: time-based).
	Seed int64
	// LogLevel of the sidecars (default "info").
	LogLevel string
	// CertRouting is the sidecars' p2p cert_routing (default "": theirs).
	CertRouting string
	// Swarm runs the testnet as a docker swarm stack on a one-node swarm
	// the runner creates and leaves (see swarm.go): only the faults of
	// swarmFaults, EpochLength 0, and not with Keep. Default false.
	Swarm bool
	// SwarmLeftOut are the requested faults swarm mode leaves out (set by
	// parseFlags; the run names them).
	SwarmLeftOut []string
}

// DefaultConfig is the short suite .ci/run uses.
func DefaultConfig() Config {
	return Config{
		Validators: 4, Payments: 250, Rounds: 1, Faults: slices.Clone(AllFaults),
		Baseline: 8 * time.Second, Fault: 10 * time.Second, Heal: 8 * time.Second,
		Lanes: 6, AccountsPerLane: 4, DoubleSpendAccounts: 24, DoubleSpendEvery: 4 * time.Second,
		ChainEvery: 5, FeeTight: 1, LightClients: 2, EpochLength: 12, BlockPeriod: time.Second, AttemptTimeout: 5 * time.Second,
		Drain: 60 * time.Second, Settle: 90 * time.Second, Timeout: 25 * time.Minute,
		Image: "allegro-e2e-allegro:dev", LogLevel: "info", Trimpath: true,
	}
}

// Validate checks every field, naming it.
func (c Config) Validate() error {
	var errs []error
	if c.Validators < 4 || c.Validators > 64 {
		errs = append(errs, fmt.Errorf("e2e: Validators must be between 4 and 64 (a partition without a quorum on either side needs n >= 4), got %d", c.Validators))
	}
	if c.Payments < 1 {
		errs = append(errs, fmt.Errorf("e2e: Payments must be positive, got %d", c.Payments))
	}
	if c.Rounds < 1 || c.Rounds > 100 {
		errs = append(errs, fmt.Errorf("e2e: Rounds must be between 1 and 100, got %d", c.Rounds))
	}
	for _, f := range c.Faults {
		if !slices.Contains(AllFaults, f) {
			errs = append(errs, fmt.Errorf("e2e: Faults: unknown perturbation %q (want some of %s)", f, strings.Join(AllFaults, ",")))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		min  time.Duration
	}{
		{"Baseline", c.Baseline, time.Second}, {"Fault", c.Fault, 3 * time.Second}, {"Heal", c.Heal, time.Second},
		{"DoubleSpendEvery", c.DoubleSpendEvery, 100 * time.Millisecond}, {"BlockPeriod", c.BlockPeriod, 100 * time.Millisecond},
		{"AttemptTimeout", c.AttemptTimeout, 500 * time.Millisecond}, {"Drain", c.Drain, time.Second},
		{"Settle", c.Settle, time.Second}, {"Timeout", c.Timeout, time.Minute},
	} {
		if d.v < d.min {
			errs = append(errs, fmt.Errorf("e2e: %s must be at least %s, got %s", d.name, d.min, d.v))
		}
	}
	if c.Lanes < 1 || c.Lanes > 256 {
		errs = append(errs, fmt.Errorf("e2e: Lanes must be between 1 and 256, got %d", c.Lanes))
	}
	if c.AccountsPerLane < 2 {
		errs = append(errs, fmt.Errorf("e2e: AccountsPerLane must be at least 2 (chained pairs), got %d", c.AccountsPerLane))
	}
	if c.DoubleSpendAccounts < 0 {
		errs = append(errs, fmt.Errorf("e2e: DoubleSpendAccounts must not be negative, got %d", c.DoubleSpendAccounts))
	}
	if c.ChainEvery < 0 {
		errs = append(errs, fmt.Errorf("e2e: ChainEvery must not be negative, got %d", c.ChainEvery))
	}
	if c.FeeTight < 0 || c.FeeTight > 20 {
		errs = append(errs, fmt.Errorf("e2e: FeeTight must be between 0 and 20, got %d", c.FeeTight))
	}
	if c.EpochLength != 0 && c.EpochLength < 8 {
		errs = append(errs, fmt.Errorf("e2e: EpochLength must be 0 or at least 8 blocks (room for a handover), got %d", c.EpochLength))
	}
	if c.EpochLength == 0 && slices.Contains(c.Faults, FaultMembership) {
		errs = append(errs, fmt.Errorf("e2e: Faults: %s changes the committee through the chain: it needs EpochLength", FaultMembership))
	}
	if c.LightClients < 0 || c.LightClients > 8 {
		errs = append(errs, fmt.Errorf("e2e: LightClients must be between 0 and 8, got %d", c.LightClients))
	}
	if c.Image == "" {
		errs = append(errs, errors.New("e2e: Image must be set"))
	}
	switch c.Compose {
	case "", "docker compose", "docker-compose":
	default:
		errs = append(errs, fmt.Errorf("e2e: Compose must be \"docker compose\" or \"docker-compose\", got %q", c.Compose))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("e2e: LogLevel must be debug, info, warn or error, got %q", c.LogLevel))
	}
	if c.Swarm {
		if _, left := splitSwarmFaults(c.Faults); len(left) > 0 {
			errs = append(errs, fmt.Errorf("e2e: Faults: swarm mode cannot apply %s", strings.Join(left, ",")))
		}
		if len(c.Faults) == 0 {
			errs = append(errs, fmt.Errorf("e2e: Faults: swarm mode needs at least one of %s", strings.Join(swarmFaults, ",")))
		}
		if c.EpochLength != 0 {
			errs = append(errs, errors.New("e2e: EpochLength must be 0 in swarm mode (-epoch-length 0): the stack carries one fixed committee"))
		}
		if c.Keep {
			errs = append(errs, errors.New("e2e: Keep is not available in swarm mode: the runner never leaves the engine in a swarm"))
		}
	}
	return errors.Join(errs...)
}

// LoadAccounts is the number of funded load accounts the dev chain needs:
// the lanes', the double-spenders' and, with fee-tight sets, the funder of
// their accounts (the last).
func (c Config) LoadAccounts() int {
	n := c.Lanes*c.AccountsPerLane + c.DoubleSpendAccounts
	if c.FeeTight > 0 {
		n++
	}
	return n
}

// Spares is the number of validators outside the genesis committee: one
// when the committee changes through the chain, to be added.
func (c Config) Spares() int {
	if slices.Contains(c.Faults, FaultMembership) {
		return 1
	}
	return 0
}

// plannedLoadTime is the time the steady load runs for.
func (c Config) plannedLoadTime() time.Duration {
	return c.Baseline + time.Duration(c.Rounds*len(c.Faults))*(c.Fault+c.Heal)
}

// Rate is the steady-load pace in payments per second.
func (c Config) Rate() float64 {
	return float64(c.Payments) / c.plannedLoadTime().Seconds()
}

// parseFlags reads the command line into a Config.
func parseFlags(args []string) (Config, error) {
	c := DefaultConfig()
	fs := flag.NewFlagSet("e2e", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./e2e [flags]\n\nBuilds the allegro image, starts a generated testnet in docker, drives payments\nthrough every perturbation, checks SPEC §7 safety, and exits non-zero on a violation.\n\nflags:\n")
		fs.PrintDefaults()
	}
	fs.IntVar(&c.Validators, "validators", c.Validators, "committee size")
	fs.IntVar(&c.Payments, "payments", c.Payments, "steady-load payments aimed for")
	fs.IntVar(&c.Rounds, "rounds", c.Rounds, "times each perturbation is applied")
	faults := fs.String("faults", strings.Join(c.Faults, ","), "comma-separated perturbations, in order")
	fs.DurationVar(&c.Baseline, "baseline", c.Baseline, "baseline phase duration")
	fs.DurationVar(&c.Fault, "fault", c.Fault, "duration of each fault phase")
	fs.DurationVar(&c.Heal, "heal", c.Heal, "duration of each healed phase")
	fs.IntVar(&c.Lanes, "lanes", c.Lanes, "concurrent payment senders")
	fs.IntVar(&c.AccountsPerLane, "accounts-per-lane", c.AccountsPerLane, "load accounts per lane")
	fs.IntVar(&c.DoubleSpendAccounts, "double-spend-accounts", c.DoubleSpendAccounts, "load accounts used for double-spends")
	fs.DurationVar(&c.DoubleSpendEvery, "double-spend-every", c.DoubleSpendEvery, "interval between double-spend attempts")
	fs.IntVar(&c.ChainEvery, "chain-every", c.ChainEvery, "every n-th lane payment is a chained pair (0: none)")
	fs.IntVar(&c.FeeTight, "fee-tight", c.FeeTight, "sets of fee-tight accounts (funded with exactly a payment's amount and fee, or less; 0: none)")
	fs.IntVar(&c.LightClients, "light-clients", c.LightClients, "light-client containers")
	fs.Uint64Var(&c.EpochLength, "epoch-length", c.EpochLength, "blocks per epoch, committees from the dev chain (0: one fixed committee; not with "+FaultMembership+")")
	fs.DurationVar(&c.BlockPeriod, "block-period", c.BlockPeriod, "dev chain block time")
	fs.DurationVar(&c.AttemptTimeout, "attempt-timeout", c.AttemptTimeout, "bound of one submission attempt")
	fs.DurationVar(&c.Drain, "drain", c.Drain, "wait for outstanding payments after the last phase")
	fs.DurationVar(&c.Settle, "settle", c.Settle, "wait for certified payments to be on chain")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "bound of the whole run (teardown excluded)")
	fs.StringVar(&c.Image, "image", c.Image, "image to build and run")
	fs.BoolVar(&c.SkipBuild, "skip-build", c.SkipBuild, "use the existing image")
	fs.BoolVar(&c.Trimpath, "trimpath", c.Trimpath, "build the binary with -trimpath (false reuses the ordinary build cache)")
	fs.BoolVar(&c.RemoveImage, "remove-image", c.RemoveImage, "remove the image at the end")
	fs.BoolVar(&c.Keep, "keep", c.Keep, "leave the testnet running")
	fs.StringVar(&c.Artifacts, "artifacts", c.Artifacts, "directory for history, report and logs (default: a new temporary folder)")
	fs.StringVar(&c.Compose, "compose", c.Compose, `compose command: "docker compose" or "docker-compose" (default: detected)`)
	fs.Int64Var(&c.Seed, "seed", c.Seed, "random seed (0: time-based)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "sidecar log level")
	fs.StringVar(&c.CertRouting, "cert-routing", c.CertRouting, "the sidecars' p2p cert_routing: bulletin or entry (default: the sidecars' own, bulletin)")
	fs.BoolVar(&c.Swarm, "swarm", c.Swarm, "run the testnet as a docker swarm stack on a one-node swarm made and left by the run (needs -epoch-length 0; faults: "+strings.Join(swarmFaults, ",")+", the others are left out)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.Faults = nil
	for _, f := range strings.Split(*faults, ",") {
		if f = strings.TrimSpace(f); f != "" {
			c.Faults = append(c.Faults, f)
		}
	}
	if c.Swarm {
		c.Faults, c.SwarmLeftOut = splitSwarmFaults(c.Faults)
		// The stack carries one fixed committee: without an explicit
		// -epoch-length, swarm mode runs without epochs.
		explicit := false
		fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "epoch-length" })
		if !explicit {
			c.EpochLength = 0
		}
	}
	return c, c.Validate()
}
