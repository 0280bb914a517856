package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/deploy/testnet"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/safety"
	"github.com/allegro-mesh/allegro/sidecar"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// Files written into the artifacts directory.
const (
	historyFile = "history.json"
	runFile     = "run.json"
	reportJSON  = "report.json"
	reportText  = "report.txt"
	testnetDir  = "testnet"
	logsDir     = "logs"
)

// suite is one run in progress.
type suite struct {
	cfg       Config
	log       *slog.Logger
	out       io.Writer
	root      string
	artifacts string
	manifest  *testnet.Manifest
	d         *docker
	byz       string
	started   time.Time
	// snapshots are boards collected before a sidecar restarts and, with
	// epochs, after each boundary.
	snapMu    sync.Mutex
	snapshots []*safety.History
	// ep follows the epochs of a network that has them (else nil).
	ep *epochWatch
}

func (s *suite) say(format string, args ...any) {
	fmt.Fprintf(s.out, "[%6.1fs] %s\n", time.Since(s.started).Seconds(), fmt.Sprintf(format, args...))
}

// runSuite carries out one run and returns the exit status.
func runSuite(parent context.Context, cfg Config, log *slog.Logger, out io.Writer) int {
	s := &suite{cfg: cfg, log: log, out: out, started: time.Now()}
	ctx, cancel := context.WithTimeout(parent, cfg.Timeout)
	defer cancel()
	code, err := s.run(ctx)
	if err != nil {
		fmt.Fprintf(out, "\nE2E RUN FAILED: %v\n", err)
		if s.artifacts != "" {
			fmt.Fprintf(out, "artifacts: %s\n", s.artifacts)
		}
		return exitFailed
	}
	return code
}

func (s *suite) run(ctx context.Context) (int, error) {
	cfg := s.cfg
	root, err := repoRoot()
	if err != nil {
		return 0, err
	}
	s.root = root
	if err := dockerAvailable(ctx); err != nil {
		return 0, fmt.Errorf("docker is not available: %w", err)
	}
	var compose []string
	if cfg.Swarm {
		compose = []string{"docker", "stack"}
	} else if compose, err = detectCompose(ctx, cfg.Compose); err != nil {
		return 0, err
	}
	id := randomID()
	project := "allegro-e2e-" + id
	s.artifacts = cfg.Artifacts
	if s.artifacts == "" {
		s.artifacts = filepath.Join(os.TempDir(), project)
	}
	if err := os.MkdirAll(filepath.Join(s.artifacts, logsDir), 0o755); err != nil {
		return 0, err
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	s.say("e2e run %s: %d validators, %d rounds of %s, ~%d payments (%.1f/s), compose %q, seed %d",
		project, cfg.Validators, cfg.Rounds, strings.Join(cfg.Faults, ","), cfg.Payments, cfg.Rate(), strings.Join(compose, " "), seed)

	for _, f := range cfg.SwarmLeftOut {
		s.say("swarm mode leaves out %s: %s", f, swarmLeftOut[f])
	}
	if cfg.Swarm {
		// Refused before anything is built (initSwarm checks again).
		if st, err := swarmState(ctx); err != nil || st != "inactive" {
			return 0, fmt.Errorf("swarm: the engine's swarm state is %q (%v), want inactive: the runner creates its own swarm and leaves it", st, err)
		}
	}
	if !cfg.SkipBuild {
		s.say("building the static binary and image %s (FROM scratch, nothing pulled)", cfg.Image)
		if err := buildImage(ctx, root, cfg.Image, cfg.Trimpath, s.log); err != nil {
			return 0, err
		}
	}

	if cfg.Swarm {
		// Before the subnets are chosen: the swarm adds its ingress
		// network. Left on every way out, after the stack's removal
		// (deferred before it).
		node, err := initSwarm(ctx, s.log)
		if err != nil {
			return 0, err
		}
		s.say("one-node swarm initialised (docker swarm init --advertise-addr 127.0.0.1)")
		defer func() {
			if err := node.leave(); err != nil {
				s.say("SWARM LEAVE FAILED: %v (run: docker swarm leave --force)", err)
			} else {
				s.say("left the swarm (docker swarm leave --force)")
			}
		}()
	}

	// Generate the testnet on free subnets and ports.
	prefix, err := freeSubnetPrefix(ctx, seed)
	if err != nil {
		return 0, err
	}
	apiBase, chainPort, err := freePorts(cfg.Validators+cfg.Spares(), seed)
	if err != nil {
		return 0, err
	}
	s.byz = testnet.ValidatorName(cfg.Validators)
	tcfg := testnet.DefaultConfig()
	tcfg.Validators, tcfg.LightClients, tcfg.Project, tcfg.Image = cfg.Validators, cfg.LightClients, project, cfg.Image
	tcfg.APIPortBase, tcfg.ChainPort, tcfg.SubnetPrefix = apiBase, chainPort, prefix
	tcfg.BlockPeriod, tcfg.LoadAccounts, tcfg.LogLevel = cfg.BlockPeriod, cfg.LoadAccounts(), cfg.LogLevel
	tcfg.CertRouting = cfg.CertRouting
	tcfg.EpochLength, tcfg.Spares = cfg.EpochLength, cfg.Spares()
	tcfg.Byzantine = map[string]string{s.byz: sidecar.ByzantineEquivocate}
	// No restart policy: the faults (docker kill, stop) would not fight
	// one, but a sidecar that crashes on its own must stay down and fail
	// the run, not come back with an empty board.
	tcfg.Restart = "no"
	dir := filepath.Join(s.artifacts, testnetDir)
	generate := testnet.Generate
	if cfg.Swarm {
		// Swarm has no start order: a sidecar that starts before the
		// dev chain answers exits and must be restarted; a killed one
		// is restarted by swarm too.
		tcfg.Restart = "on-failure"
		generate = testnet.GenerateSwarm
	}
	m, err := generate(tcfg, dir)
	if err != nil {
		return 0, err
	}
	s.manifest = m
	// The Byzantine validator starts honest; its phases switch the mode.
	s.d = &docker{compose: compose, project: project, dir: dir, log: s.log,
		env: map[string]string{testnet.ByzantineEnv(s.byz): ""}, swarm: cfg.Swarm}
	defer s.teardown()

	s.say("starting %d sidecars, the dev chain and %d light client(s) (subnets %s.0-2.0/24, APIs 127.0.0.1:%d-%d, chain :%d)",
		len(m.Sidecars), cfg.LightClients, prefix, apiBase, apiBase+len(m.Sidecars)-1, chainPort)
	if m.EpochLength > 0 {
		s.say("epochs of %d blocks: committees from the dev chain's validator set; %d spare(s) outside the genesis committee",
			m.EpochLength, len(m.Sidecars)-len(m.Members()))
	}
	if err := s.d.up(ctx); err != nil {
		return 0, err
	}
	// A spare is not ready until it joins the committee.
	containers := []string{m.Chain.Container}
	for _, sc := range m.Members() {
		containers = append(containers, sc.Container)
	}
	if err := s.d.waitHealthy(ctx, 3*time.Minute, containers...); err != nil {
		return 0, err
	}
	if err := waitMesh(ctx, m, 90*time.Second); err != nil {
		return 0, err
	}
	if err := s.waitLightClients(ctx, 60*time.Second); err != nil {
		return 0, err
	}
	s.say("testnet up: every sidecar healthy and connected to its %d peers", cfg.Validators-1)
	if m.EpochLength > 0 {
		if s.ep, err = newEpochWatch(ctx, dir, m, s.log); err != nil {
			return 0, err
		}
		defer s.ep.stop()
		if err := s.ep.start(ctx, time.Minute); err != nil {
			return 0, err
		}
		watchCtx, stopWatch := context.WithCancel(ctx)
		defer stopWatch()
		go s.ep.run(watchCtx)
		e, c := s.ep.currentCommittee()
		s.say("epoch %d: committee %s (quorum %d)", e, strings.Join(s.ep.names(c), ","), c.Quorum())
	}

	return s.drive(ctx, seed)
}

// drive runs the load through the phases, then collects and checks.
func (s *suite) drive(ctx context.Context, seed int64) (int, error) {
	cfg, m := s.cfg, s.manifest
	committeeFile := filepath.Join(s.artifacts, testnetDir, testnet.CommitteeFile)
	cf, err := committee.LoadFile(committeeFile)
	if err != nil {
		return 0, err
	}
	var committee *qc.Committee
	var committeeOf func(uint64) *qc.Committee
	if s.ep != nil {
		_, committee = s.ep.currentCommittee()
		committeeOf = s.ep.committeeOf
	} else if committee, err = cf.Committee(); err != nil {
		return 0, err
	}
	// The driver records each payment's fee terms as the dev chain charges
	// them: gas in its native currency, paid by the sender.
	if fm, err := cf.Fees(); err != nil || fm.Name() != tempo.FeeModelNative {
		return 0, fmt.Errorf("the testnet's committee file must have fee_model = %q (the dev chain pays gas natively), got %q", tempo.FeeModelNative, cf.FeeModel)
	}
	names, apis := make([]string, len(m.Sidecars)), make([]string, len(m.Sidecars))
	for i, sc := range m.Sidecars {
		names[i], apis[i] = sc.Name, sc.API
	}
	var members, memberAPIs []string
	for _, sc := range m.Members() {
		members, memberAPIs = append(members, sc.Name), append(memberAPIs, sc.API)
	}
	topo := newTopology(names, members)
	rec := newRecorder()
	drv, err := newDriver(cfg, s.log, committee, committeeOf, names, apis, topo, rec)
	if err != nil {
		return 0, err
	}
	defer drv.close()
	drv.chainRPC = m.Chain.RPC

	// Accounts: lanes own AccountsPerLane each, then the double-spend pool,
	// then the funder of the fee-tight accounts.
	load := devkit.LoadAccounts(cfg.LoadAccounts())
	var laneAccts [][]*account
	var all []*account
	for l := range cfg.Lanes {
		var accts []*account
		for k := range cfg.AccountsPerLane {
			a := newAccount(load[l*cfg.AccountsPerLane+k])
			accts = append(accts, a)
			drv.recipient = append(drv.recipient, a.addr)
		}
		laneAccts = append(laneAccts, accts)
		all = append(all, accts...)
	}
	var dsAccts []*account
	dsStart := cfg.Lanes * cfg.AccountsPerLane
	for _, la := range load[dsStart : dsStart+cfg.DoubleSpendAccounts] {
		dsAccts = append(dsAccts, newAccount(la))
	}
	all = append(all, dsAccts...)
	var demoAccts []*account
	for _, a := range devkit.DemoAccounts() {
		demoAccts = append(demoAccts, newAccount(a))
	}
	all = append(all, demoAccts...)
	if err := drv.syncNonces(ctx, all); err != nil {
		return 0, err
	}
	// Fee-tight accounts, funded before the initial balances are read.
	var plan *feeTightPlan
	feeAccts := make(map[string]*account)
	if cfg.FeeTight > 0 {
		plan = newFeeTightPlan(cfg.FeeTight, devkit.Dollar, payMaxFee(), seed)
		funder := load[dsStart+cfg.DoubleSpendAccounts]
		start := time.Now()
		if err := plan.fund(ctx, m.Chain.RPC, new(big.Int).SetUint64(drv.chainID), funder.Key, memberAPIs, 2*time.Minute); err != nil {
			return 0, err
		}
		for _, a := range plan.accounts {
			acct := &account{name: a.name, key: a.key, addr: a.addr} // fresh: nonce 0
			feeAccts[a.name] = acct
			all = append(all, acct)
		}
		s.say("fee-tight: %d accounts funded from %s in %.1fs (payments of %d units, maximum fee %s wei each)",
			len(plan.accounts), funder.Name, time.Since(start).Seconds(), plan.amount, plan.fee)
	}
	tracked := make([]qc.Address, 0, len(all))
	for _, a := range all {
		tracked = append(tracked, qc.Address(a.addr))
	}
	initial, err := safety.Balances(ctx, m.Chain.RPC, qc.Address(devkit.TokenAddress), tracked)
	if err != nil {
		return 0, err
	}
	// Every tracked account pays its payments' fees natively.
	native, err := safety.Balances(ctx, m.Chain.RPC, safety.NativeToken, tracked)
	if err != nil {
		return 0, err
	}

	stopSnapshots := func() {}

	// Load.
	rng := mrand.New(mrand.NewPCG(uint64(seed), 1))
	tokens := make(chan struct{}, 1)
	var wg sync.WaitGroup
	loadCtx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	rec.setPhase("baseline")
	var phases []safety.Phase
	phaseStart := time.Now()
	wg.Add(1)
	go func() { defer wg.Done(); pace(loadCtx, drv.stopLoad, cfg.Rate(), tokens) }()
	for l, accts := range laneAccts {
		wg.Add(1)
		go func() { defer wg.Done(); drv.lane(loadCtx, l, accts, tokens, uint64(seed)+uint64(l)) }()
	}
	wg.Add(2)
	go func() { defer wg.Done(); drv.demo(loadCtx, demoAccts, tokens, uint64(seed)) }()
	go func() { defer wg.Done(); drv.doubleSpends(loadCtx, dsAccts, uint64(seed)) }()
	if plan != nil {
		wg.Add(1)
		go func() { defer wg.Done(); drv.feeTight(loadCtx, plan, feeAccts, uint64(seed)) }()
	}

	if s.ep != nil {
		snapCtx, stopSnaps := context.WithCancel(ctx)
		snapsDone := make(chan struct{})
		go func() { defer close(snapsDone); s.snapshotEpochs(snapCtx, topo) }()
		defer func() { stopSnaps(); <-snapsDone }()
		// Stopped before the final collection, which reads every board.
		stopSnapshots = func() { stopSnaps(); <-snapsDone }
	}
	var runErr error
	if err := sleepCtx(ctx, cfg.Baseline); err != nil {
		runErr = err
	}
	phases = append(phases, safety.Phase{Name: "baseline", Start: phaseStart, End: time.Now()})
	s.progress(rec, "baseline")

	f := &faults{d: s.d, m: m, topo: topo, byz: s.byz, healthTO: 2 * time.Minute, rng: rng, ep: s.ep,
		epochWait: 3*time.Duration(m.EpochLength)*cfg.BlockPeriod + time.Minute}
	for r := 1; r <= cfg.Rounds && runErr == nil; r++ {
		for _, st := range f.plan(cfg.Faults, cfg.Validators, m.F) {
			label := st.label
			if cfg.Rounds > 1 {
				label = fmt.Sprintf("r%d/%s", r, st.label)
			}
			rec.setPhase(label)
			start := time.Now()
			if st.snapApply != "" {
				s.snapshot(ctx, st.snapApply)
			}
			if err := st.apply(ctx); err != nil {
				runErr = fmt.Errorf("apply %s: %w", label, err)
				break
			}
			if st.noQuorum {
				// The no-quorum window opens once the fault is complete.
				start = time.Now()
				if topo.AnyQuorum() {
					runErr = fmt.Errorf("%s: the topology still has a quorum side", label)
					break
				}
			}
			s.say("fault %s applied", label)
			if err := sleepCtx(ctx, cfg.Fault); err != nil {
				runErr = err
				break
			}
			end := time.Now()
			phases = append(phases, safety.Phase{Name: label, Start: start, End: end, NoQuorum: st.noQuorum, Sides: st.sides})
			s.progress(rec, label)
			healed := "healed:" + label
			rec.setPhase(healed)
			start = time.Now()
			if st.snapHeal != "" {
				s.snapshot(ctx, st.snapHeal)
			}
			if err := st.heal(ctx); err != nil {
				runErr = fmt.Errorf("heal %s: %w", label, err)
				break
			}
			if err := sleepCtx(ctx, cfg.Heal); err != nil {
				runErr = err
				break
			}
			phases = append(phases, safety.Phase{Name: healed, Start: start, End: time.Now()})
			s.progress(rec, healed)
		}
	}

	// Drain: no new payment; outstanding ones retry until the bound.
	rec.setPhase("drain")
	drainStart := time.Now()
	drv.stop(cfg.Drain)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(cfg.Drain + time.Duration(len(names)+2)*cfg.AttemptTimeout + 30*time.Second):
		s.say("drain: some senders still busy after the bound; cancelling them")
		stopAll()
		<-done
	}
	phases = append(phases, safety.Phase{Name: "drain", Start: drainStart, End: time.Now()})
	s.progress(rec, "drain")

	// Settle: every account's chain nonce reaches the driver's next nonce
	// (every payment the driver saw certified is on chain).
	settleStart := time.Now()
	if err := s.waitSettled(ctx, all); err != nil {
		s.say("settle: %v", err)
	}
	s.say("settle wait took %.1fs", time.Since(settleStart).Seconds())

	// Collect and check.
	stopSnapshots()
	run := &safety.Run{Payments: rec.snapshot(), Phases: phases}
	if s.ep != nil {
		run.Boundaries = s.ep.crossed()
		// The committees derived from the chain name their members
		// "v<index>-<address>": the sides of a partition are recorded in
		// those names.
		for i := range run.Phases {
			for _, side := range run.Phases[i].Sides {
				for j, n := range side {
					side[j] = s.ep.memberName(n)
				}
			}
		}
	}
	code, err := s.collectAndCheck(ctx, committeeFile, run, initial, native)
	fmt.Fprintf(s.out, "\ndriver: %s\n", rec.driverSummary())
	if err != nil {
		return 0, err
	}
	if plan != nil {
		// The safety check judges every QC; this judges the refusals too,
		// and that the payers with exactly the fee were served.
		lines, ok := feeTightVerdict(plan, run.Payments)
		verdict := "PASS"
		if !ok {
			verdict = "FAIL"
			code = max(code, exitViolation)
		}
		fmt.Fprintf(s.out, "\nFEE-TIGHT CHECK: %s (%d payments planned; every QC among them is judged by the safety check above)\n  %s\n",
			verdict, len(plan.steps), strings.Join(lines, "\n  "))
	}
	if runErr != nil {
		return 0, runErr
	}
	return code, nil
}

// progress prints the payment counts after a phase.
func (s *suite) progress(rec *recorder, phase string) {
	sent, withQC := rec.counts()
	s.say("end of phase %-40s payments so far: %d sent, %d with a QC seen by the client", phase, sent, withQC)
}

// waitSettled polls the chain until every account's nonce reaches the
// driver's next nonce, bounded by cfg.Settle.
func (s *suite) waitSettled(ctx context.Context, accts []*account) error {
	want := map[qc.Address]uint64{}
	for _, a := range accts {
		want[qc.Address(a.addr)] = a.nonce
	}
	addrs := make([]qc.Address, 0, len(want))
	for a := range want {
		addrs = append(addrs, a)
	}
	deadline := time.Now().Add(s.cfg.Settle)
	for {
		got, err := safety.Nonces(ctx, s.manifest.Chain.RPC, addrs)
		behind := 0
		if err == nil {
			for a, n := range want {
				if got[a] < n {
					behind++
				}
			}
			if behind == 0 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s, %d account(s) still have certified payments off chain (last error: %v)", s.cfg.Settle, behind, err)
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return err
		}
	}
}

// collectAndCheck gathers the history, checks it, writes the artifacts and
// prints the report.
func (s *suite) collectAndCheck(ctx context.Context, committeeFile string, run *safety.Run, initial, native map[qc.Address]*big.Int) (int, error) {
	m := s.manifest
	lcQCs := map[string][][]byte{}
	for _, lc := range m.LightClient {
		out, err := s.d.stdout(ctx, lc.Container)
		if err != nil {
			s.say("light client %s: logs: %v", lc.Name, err)
		}
		qcs, bad := parseLightClientQCs(out)
		if bad > 0 {
			s.say("light client %s: %d output line(s) without a decodable QC", lc.Name, bad)
		}
		lcQCs[lc.Name] = qcs
	}
	var sidecars []safety.Sidecar
	for _, sc := range m.Sidecars {
		sidecars = append(sidecars, safety.Sidecar{Name: s.memberName(sc.Name), APIURL: "http://" + sc.API, Honest: sc.Name != s.byz})
	}
	var txs, chainTxs []qc.Hash
	for _, p := range run.Payments {
		if !p.TxHash.IsZero() {
			txs = append(txs, p.TxHash)
		}
		if !p.ChainTx.IsZero() {
			chainTxs = append(chainTxs, p.ChainTx)
		}
	}
	s.say("collecting certificates, QCs, evidence and statuses from %d sidecars and %d light client(s)", len(sidecars), len(lcQCs))
	h, err := safety.Collect(ctx, safety.CollectConfig{
		Sidecars: sidecars, CommitteeFile: committeeFile, ChainRPC: m.Chain.RPC, Token: qc.Address(devkit.TokenAddress),
		LightClientQCs: lcQCs, InitialBalances: initial, TxHashes: txs, ChainTxs: chainTxs, Epochs: s.epochs(),
		InitialFeeBalances: map[qc.Address]map[qc.Address]*big.Int{safety.NativeToken: native},
		Logger:             s.log,
	})
	if h == nil {
		return 0, fmt.Errorf("collect: %w", err)
	}
	if err != nil {
		s.say("collect: %v (checking what was gathered)", err)
	}
	for _, snap := range s.snapshots {
		if err := h.Merge(snap); err != nil {
			s.say("merge a board snapshot: %v", err)
		}
	}
	rep := safety.Check(h, run)
	if err := h.WriteFile(filepath.Join(s.artifacts, historyFile)); err != nil {
		return 0, err
	}
	if err := run.WriteFile(filepath.Join(s.artifacts, runFile)); err != nil {
		return 0, err
	}
	if err := writeReport(s.artifacts, rep); err != nil {
		return 0, err
	}
	fmt.Fprintln(s.out)
	if err := rep.WriteText(s.out); err != nil {
		return 0, err
	}
	fmt.Fprintf(s.out, "\nartifacts: %s (history.json, run.json, report.json, report.txt, logs/; re-check with: go run ./e2e -recheck %s)\n", s.artifacts, s.artifacts)
	if !rep.OK() {
		return exitViolation, nil
	}
	if err != nil {
		return 0, fmt.Errorf("collect incomplete: %w", err)
	}
	return exitOK, nil
}

func writeReport(dir string, rep *safety.Report) error {
	jf, err := os.Create(filepath.Join(dir, reportJSON))
	if err != nil {
		return err
	}
	if err := rep.WriteJSON(jf); err != nil {
		jf.Close()
		return err
	}
	if err := jf.Close(); err != nil {
		return err
	}
	tf, err := os.Create(filepath.Join(dir, reportText))
	if err != nil {
		return err
	}
	if err := rep.WriteText(tf); err != nil {
		tf.Close()
		return err
	}
	return tf.Close()
}

// snapshot collects one sidecar's board (certificates, QCs, evidence,
// statuses) before it is killed or recreated.
func (s *suite) snapshot(ctx context.Context, names ...string) {
	var sidecars []safety.Sidecar
	for _, name := range names {
		if sc, ok := s.manifest.Sidecar(name); ok {
			sidecars = append(sidecars, safety.Sidecar{Name: s.memberName(name), APIURL: "http://" + sc.API, Honest: name != s.byz})
		}
	}
	if len(sidecars) == 0 {
		return
	}
	start := time.Now()
	h, err := safety.Collect(ctx, safety.CollectConfig{
		Sidecars:      sidecars,
		CommitteeFile: filepath.Join(s.artifacts, testnetDir, testnet.CommitteeFile),
		Epochs:        s.epochs(),
		Timeout:       time.Minute, Logger: s.log,
	})
	if h == nil {
		s.say("snapshot of %s: %v", strings.Join(names, ","), err)
		return
	}
	// The snapshot may not list the Byzantine sidecar; mark honesty as the
	// full collection will, so the histories merge.
	var byz qc.ValidatorID
	if sc, ok := s.manifest.Sidecar(s.byz); ok {
		byz, _ = sc.ID()
	}
	for _, info := range append([]*safety.CommitteeInfo{&h.Committee}, epochInfos(h)...) {
		for i := range info.Members {
			info.Members[i].Honest = info.Members[i].ID != byz
		}
	}
	s.snapMu.Lock()
	s.snapshots = append(s.snapshots, h)
	s.snapMu.Unlock()
	s.log.Info("board snapshot", "sidecars", strings.Join(names, ","), "certificates", len(h.Certificates), "qcs", len(h.QCs),
		"evidence", len(h.Evidence), "took", time.Since(start).Round(time.Millisecond), "err", err)
}

// snapshotEpochs collects the boards of every sidecar that has been in a
// committee after each boundary, until ctx ends: a sidecar serves the
// boards of its last few epochs only (the Runner's keptBoards), so a long
// run gathers each epoch's while it is kept.
func (s *suite) snapshotEpochs(ctx context.Context, topo *topology) {
	last, _ := s.ep.currentCommittee()
	for {
		e, err := s.ep.waitFor(ctx, time.Hour, "the next epoch", func(e uint64, _ *qc.Committee) bool { return e > last })
		if err != nil {
			return
		}
		last = e
		// The members' nodes of the new epoch serve the ended epoch's
		// board once they started.
		if sleepCtx(ctx, 3*time.Second) != nil {
			return
		}
		topo.mu.Lock()
		var names []string
		for _, n := range topo.names {
			// A sidecar killed or paused by the current fault is read at
			// the next boundary (it keeps three epochs' boards).
			if topo.everMember[n] && topo.up[n] {
				names = append(names, n)
			}
		}
		topo.mu.Unlock()
		s.snapshot(ctx, names...)
	}
}

// epochInfos points at the committees of h's other epochs.
func epochInfos(h *safety.History) []*safety.CommitteeInfo {
	out := make([]*safety.CommitteeInfo, len(h.Epochs))
	for i := range h.Epochs {
		out[i] = &h.Epochs[i]
	}
	return out
}

// memberName is name as the committees call it (see epochWatch.memberName).
func (s *suite) memberName(name string) string {
	if s.ep == nil {
		return name
	}
	return s.ep.memberName(name)
}

// epochs returns every epoch's committee learnt so far (nil without epochs).
func (s *suite) epochs() []*qc.Committee {
	if s.ep == nil {
		return nil
	}
	return s.ep.all()
}

// checkSaved checks a saved run again.
func checkSaved(dir string) (*safety.Report, error) {
	h, err := safety.ReadHistoryFile(filepath.Join(dir, historyFile))
	if err != nil {
		return nil, err
	}
	var run *safety.Run
	if _, err := os.Stat(filepath.Join(dir, runFile)); err == nil {
		if run, err = safety.ReadRunFile(filepath.Join(dir, runFile)); err != nil {
			return nil, err
		}
	}
	return safety.Check(h, run), nil
}

// teardown saves every container's log and removes the testnet (unless
// Keep). It runs on a fresh context: it must work after Ctrl-C.
func (s *suite) teardown() {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	m := s.manifest
	containers := []string{m.Chain.Container}
	for _, sc := range m.Sidecars {
		containers = append(containers, sc.Container)
	}
	for _, lc := range m.LightClient {
		containers = append(containers, lc.Container)
	}
	for _, c := range containers {
		// A paused container cannot be stopped by compose.
		_, _ = s.d.onContainer(ctx, c, "unpause")
		out, errOut, err := s.d.logs(ctx, c)
		if err != nil && out == "" && errOut == "" {
			continue
		}
		_ = os.WriteFile(filepath.Join(s.artifacts, logsDir, strings.TrimPrefix(c, m.Project+"-")+".log"), []byte(out+errOut), 0o644)
	}
	if s.cfg.Keep {
		s.say("keeping the testnet (-keep): remove it with: %s -p %s -f %s down -v", strings.Join(s.d.compose, " "), m.Project,
			filepath.Join(s.d.dir, testnet.ComposeFile))
		return
	}
	if err := s.d.down(ctx); err != nil {
		s.say("teardown: %v", err)
		return
	}
	if s.cfg.Swarm {
		s.say("stack %s removed (services, secrets, configs, networks, volumes)", m.Project)
	} else {
		s.say("testnet %s removed (containers, networks, volumes)", m.Project)
	}
	if s.cfg.RemoveImage {
		if _, err := s.d.docker(ctx, "rmi", s.cfg.Image); err != nil {
			s.say("remove image: %v", err)
		} else {
			s.say("image %s removed", s.cfg.Image)
		}
	}
}

// waitMesh polls every sidecar's committee view until all members are
// connected.
func waitMesh(ctx context.Context, m *testnet.Manifest, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: 3 * time.Second}
	for {
		missing := 0
		var last string
		for _, sc := range m.Members() {
			n, err := connectedPeers(ctx, hc, sc.API)
			if err != nil || n < len(m.Members())-1 {
				missing++
				last = fmt.Sprintf("%s sees %d peers (%v)", sc.Name, n, err)
			}
		}
		if missing == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mesh not complete after %s: %s", timeout, last)
		}
		if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
}

func connectedPeers(ctx context.Context, hc *http.Client, api string) (int, error) {
	var doc struct {
		Members []struct {
			Connected bool `json:"connected"`
			Self      bool `json:"self"`
		} `json:"members"`
	}
	if err := getJSON(ctx, hc, "http://"+api+"/api/v1/committee", &doc); err != nil {
		return 0, err
	}
	n := 0
	for _, mem := range doc.Members {
		if mem.Connected && !mem.Self {
			n++
		}
	}
	return n, nil
}

// getJSON decodes a sidecar's 200 answer to GET url into v (at most 1 MiB).
func getJSON(ctx context.Context, hc *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}

// waitLightClients polls the light clients' logs until each watches.
func (s *suite) waitLightClients(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, lc := range s.manifest.LightClient {
		for {
			_, errOut, _ := s.d.logs(ctx, lc.Container)
			if strings.Contains(errOut, "msg=watching") {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("light client %s not watching after %s: %s", lc.Name, timeout, lastLines(errOut, 5))
			}
			if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
				return err
			}
		}
	}
	return nil
}

// parseLightClientQCs reads `allegro watch --json --with-qc` output: the
// raw QC of every payment line, and the number of lines that carried none.
func parseLightClientQCs(out string) (qcs [][]byte, bad int) {
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var p struct {
			QC string `json:"qc_proto_hex"`
		}
		if err := json.Unmarshal([]byte(line), &p); err != nil || p.QC == "" {
			bad++
			continue
		}
		b, err := hex.DecodeString(strings.TrimPrefix(p.QC, "0x"))
		if err != nil {
			bad++
			continue
		}
		qcs = append(qcs, b)
	}
	return qcs, bad
}

// repoRoot finds the module root (the directory holding go.mod) from the
// working directory up.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for range 64 {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "deploy", "Dockerfile")); err == nil {
				return dir, nil
			}
		}
		up := filepath.Dir(dir)
		if up == dir {
			break
		}
		dir = up
	}
	return "", errors.New("run the e2e runner from inside the allegro repository (no go.mod with deploy/Dockerfile above the working directory)")
}

// buildImage builds the static binary and the FROM scratch image. The
// previous image of the same tag is removed when it becomes untagged.
func buildImage(ctx context.Context, root, image string, trimpath bool, log *slog.Logger) error {
	ctxDir, err := os.MkdirTemp("", "allegro-e2e-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(ctxDir)
	start := time.Now()
	// A test network's image: the operator's binary and the development
	// tools, whose dev chain the chain container runs.
	for _, bin := range []string{"allegro", "allegro-dev"} {
		args := []string{"build"}
		if trimpath {
			args = append(args, "-trimpath")
		}
		args = append(args, "-ldflags", "-s -w -X github.com/allegro-mesh/allegro/internal/buildinfo.Version=e2e", "-o", filepath.Join(ctxDir, "bin", bin), "./cmd/"+bin)
		if _, err := runIn(ctx, 20*time.Minute, root, []string{"CGO_ENABLED=0"}, "go", args...); err != nil {
			return fmt.Errorf("build the static binary %s: %w", bin, err)
		}
	}
	log.Info("static binaries built", "took", time.Since(start).Round(time.Millisecond))
	df, err := os.ReadFile(filepath.Join(root, "deploy", "Dockerfile"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), df, 0o644); err != nil {
		return err
	}
	old, _ := run(ctx, 30*time.Second, nil, "docker", "image", "inspect", "-f", "{{.Id}}", image)
	if _, err := run(ctx, 10*time.Minute, nil, "docker", "build", "--pull=false", "-q", "-t", image, ctxDir); err != nil {
		return fmt.Errorf("docker build: %w", err)
	}
	now, _ := run(ctx, 30*time.Second, nil, "docker", "image", "inspect", "-f", "{{.Id}}", image)
	if old = strings.TrimSpace(old); old != "" && old != strings.TrimSpace(now) {
		_, _ = run(ctx, 30*time.Second, nil, "docker", "rmi", old)
	}
	log.Info("image built", "image", image, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// freeSubnetPrefix picks "10.X" whose three /24s overlap no docker network
// and no host interface.
func freeSubnetPrefix(ctx context.Context, seed int64) (string, error) {
	taken, err := usedSubnets(ctx)
	if err != nil {
		return "", err
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			taken = append(taken, a.String())
		}
	}
	start := int(uint64(seed) % 50)
	for i := range 50 {
		p := fmt.Sprintf("10.%d", 200+(start+i)%50)
		if testnet.CheckSubnets(p, taken) == nil {
			return p, nil
		}
	}
	return "", errors.New("no free 10.200-249.x subnets for the testnet")
}

// freePorts picks n consecutive free API ports and a chain port on
// 127.0.0.1.
func freePorts(n int, seed int64) (apiBase, chainPort int, err error) {
	rng := mrand.New(mrand.NewPCG(uint64(seed), 2))
	for range 50 {
		base := 20000 + rng.IntN(30000)
		ok := true
		for p := base; p <= base+n && ok; p++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				continue
			}
			l.Close()
		}
		if ok {
			return base, base + n, nil
		}
	}
	return 0, 0, errors.New("no free port range on 127.0.0.1")
}

func randomID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// runIn is run with a working directory.
func runIn(ctx context.Context, timeout time.Duration, dir string, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, lastLines(string(out), 15))
	}
	return string(out), nil
}
