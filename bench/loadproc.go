package bench

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
)

// The saturation run's load generator stands for wallets elsewhere: its
// CPU is not the validators'. When the suite can start child processes
// (Config.StartSidecar) it runs in its own, so the suite's process CPU over
// the measured run is the validators' alone; otherwise it runs in the
// suite's process and the CPU figures include it.

// paymentSource hands out each stream's payments in nonce order: stream g
// pays from senders[g] with sequential nonces. Payments are signed before
// any clock starts. Streams claim payments from a shared count, so one may
// make more than its even share: each gets a quarter more signed up front,
// and signs on the fly beyond that.
type paymentSource struct {
	chainID   uint64
	senders   []*ecdsa.PrivateKey
	perStream [][]*fastpayv1.SubmitFastPayRequest
	used      []int
}

func newPaymentSource(senders []*ecdsa.PrivateKey, chainID uint64, total int) (*paymentSource, error) {
	streams := len(senders)
	if streams == 0 {
		return nil, errors.New("payment source: no senders")
	}
	ps := &paymentSource{chainID: chainID, senders: senders, perStream: make([][]*fastpayv1.SubmitFastPayRequest, streams), used: make([]int, streams)}
	share := (total+streams-1)/streams + total/streams/4 + 4
	for g := range ps.perStream {
		for k := range share {
			req, err := newPayment(senders[g], chainID, uint64(k), recipientAddress())
			if err != nil {
				return nil, err
			}
			ps.perStream[g] = append(ps.perStream[g], req)
		}
	}
	return ps, nil
}

// next returns stream g's next payment. Each stream calls it from its own
// goroutine only.
func (ps *paymentSource) next(g int) (*fastpayv1.SubmitFastPayRequest, error) {
	k := ps.used[g]
	ps.used[g]++
	if k < len(ps.perStream[g]) {
		return ps.perStream[g][k], nil
	}
	return newPayment(ps.senders[g], ps.chainID, uint64(k), recipientAddress())
}

// loadGeneratorArg, as the first argument of a child process, makes it the
// saturation run's load generator instead of a sidecar (see SidecarMain).
const loadGeneratorArg = "--load-generator"

// LoadGeneratorConfig describes the saturation run's load generator
// process.
type LoadGeneratorConfig struct {
	// Endpoints are the validators' API addresses; stream g submits
	// through Endpoints[g mod len(Endpoints)].
	Endpoints []string
	ChainID   uint64
	// Streams is the number of concurrent senders; sender g is the bench's
	// g-th sender key, which the cluster funds.
	Streams int
	// Warmup unmeasured payments are made before the parent's "run", then
	// Payments measured ones.
	Warmup, Payments int
	// ProgressInterval: a progress line on stderr every interval during
	// the measured run (0: none).
	ProgressInterval time.Duration
}

// Validate reports the first invalid field.
func (c LoadGeneratorConfig) Validate() error {
	switch {
	case len(c.Endpoints) == 0:
		return errors.New("load generator: endpoints must be set")
	case c.ChainID == 0:
		return errors.New("load generator: chain-id must be set")
	case c.Streams < 1:
		return fmt.Errorf("load generator: streams must be positive, got %d", c.Streams)
	case c.Warmup < 0:
		return fmt.Errorf("load generator: warmup must not be negative, got %d", c.Warmup)
	case c.Payments < 1:
		return fmt.Errorf("load generator: payments must be positive, got %d", c.Payments)
	case c.ProgressInterval < 0:
		return fmt.Errorf("load generator: progress-interval must not be negative, got %s", c.ProgressInterval)
	}
	return nil
}

// Args returns the child process's arguments, loadGeneratorArg first.
func (c LoadGeneratorConfig) Args() []string {
	return []string{
		loadGeneratorArg,
		"--endpoints", strings.Join(c.Endpoints, ","), "--chain-id", strconv.FormatUint(c.ChainID, 10),
		"--streams", strconv.Itoa(c.Streams), "--warmup", strconv.Itoa(c.Warmup), "--payments", strconv.Itoa(c.Payments),
		"--progress-interval", c.ProgressInterval.String(),
	}
}

// parseLoadGeneratorArgs parses the arguments after loadGeneratorArg.
func parseLoadGeneratorArgs(args []string, output io.Writer) (LoadGeneratorConfig, error) {
	fs := flag.NewFlagSet("bench load generator", flag.ContinueOnError)
	fs.SetOutput(output)
	var c LoadGeneratorConfig
	endpoints := fs.String("endpoints", "", "comma-separated API addresses of the validators")
	fs.Uint64Var(&c.ChainID, "chain-id", DefaultChainID, "chain id")
	fs.IntVar(&c.Streams, "streams", 64, "concurrent senders")
	fs.IntVar(&c.Warmup, "warmup", 0, "unmeasured payments first")
	fs.IntVar(&c.Payments, "payments", 1, "measured payments")
	fs.DurationVar(&c.ProgressInterval, "progress-interval", 0, "progress line on stderr every interval (0: none)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, ep := range strings.Split(*endpoints, ",") {
		if ep = strings.TrimSpace(ep); ep != "" {
			c.Endpoints = append(c.Endpoints, ep)
		}
	}
	return c, c.Validate()
}

// LoadGeneratorMain runs the saturation run's load generator in a child
// process (see SidecarMain and childMsg): it signs its payments, makes the
// warm-up ones, says ready, and makes the measured ones when told to run.
func LoadGeneratorMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cfg, err := parseLoadGeneratorArgs(args, stderr)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	source, err := newPaymentSource(senderKeys(cfg.Streams), cfg.ChainID, cfg.Warmup+cfg.Payments)
	if err != nil {
		return err
	}
	clients, closeClients, err := dialAll(cfg.Endpoints)
	if err != nil {
		return err
	}
	defer closeClients()
	if cfg.Warmup > 0 {
		if _, err := closedLoop(ctx, cfg.Streams, cfg.Warmup, clients, payTimeout, source.next, nil); err != nil {
			_ = enc.Encode(childMsg{Kind: "ready", Error: "warm-up: " + err.Error()})
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	if err := enc.Encode(childMsg{Kind: "ready"}); err != nil {
		return err
	}
	return serveParent(ctx, stdin, enc, func(m childMsg) childMsg {
		if m.Kind != "run" {
			return childMsg{Kind: "error", Error: fmt.Sprintf("unknown message %q", m.Kind)}
		}
		var done atomic.Int64
		stopProgress := progress(stderr, cfg.ProgressInterval, "throughput", cfg.Payments, &done, nil)
		cpu0 := processCPU()
		lat, err := closedLoop(ctx, cfg.Streams, cfg.Payments, clients, payTimeout, source.next, &done)
		cpu := processCPU() - cpu0
		stopProgress()
		reply := childMsg{Kind: "done", CPUNs: cpu.Nanoseconds(), LatenciesNs: make([]int64, len(lat))}
		for i, d := range lat {
			reply.LatenciesNs[i] = d.Nanoseconds()
		}
		if err != nil {
			reply.Error = err.Error()
		}
		return reply
	})
}

// serveParent answers the parent's messages with handle, one at a time,
// until stdin ends (then it says bye) or ctx is done.
func serveParent(ctx context.Context, stdin io.Reader, enc *json.Encoder, handle func(childMsg) childMsg) error {
	msgs, readErr := readChildMsgs(ctx, stdin)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-readErr:
			if err != nil {
				return err
			}
			return enc.Encode(childMsg{Kind: "bye"})
		case m := <-msgs:
			if err := enc.Encode(handle(m)); err != nil {
				return err
			}
		}
	}
}

// readChildMsgs reads the parent's messages from stdin until it ends: each
// on msgs; then nil (at EOF) or the error on errs.
func readChildMsgs(ctx context.Context, stdin io.Reader) (<-chan childMsg, <-chan error) {
	msgs := make(chan childMsg)
	errs := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 64<<10), childMsgMaxBytes)
		for sc.Scan() {
			var m childMsg
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				errs <- fmt.Errorf("parent message: %w", err)
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
		errs <- sc.Err() // nil at EOF
	}()
	return msgs, errs
}

// loadGenerator drives the saturation run's measured payments; it has made
// the warm-up payments when it is returned.
type loadGenerator interface {
	// run makes the measured payments and returns each one's submit-to-QC
	// time, and the CPU the generator spent when it runs in its own
	// process (ownProcess).
	run(ctx context.Context) (lat []time.Duration, cpu time.Duration, err error)
	ownProcess() bool
	close()
}

// inProcessLoad generates the load in the suite's process.
type inProcessLoad struct {
	s        *suite
	clients  []fastpayv1.FastPaySidecarClient
	closeAll func()
	source   *paymentSource
}

func (l *inProcessLoad) run(ctx context.Context) ([]time.Duration, time.Duration, error) {
	var done atomic.Int64
	cfg := l.s.cfg
	stopProgress := progress(cfg.Progress, cfg.ProgressInterval, "throughput", cfg.Payments, &done, nil)
	defer stopProgress()
	lat, err := closedLoop(ctx, cfg.Streams, cfg.Payments, l.clients, payTimeout, l.source.next, &done)
	return lat, 0, err
}

func (l *inProcessLoad) ownProcess() bool { return false }
func (l *inProcessLoad) close()           { l.closeAll() }

// processLoad is a load generator process.
type processLoad struct{ p *childProc }

func (l *processLoad) run(ctx context.Context) ([]time.Duration, time.Duration, error) {
	if err := l.p.send(childMsg{Kind: "run"}); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", l.p.name, err)
	}
	m, err := l.p.expect(ctx, "done")
	if err != nil {
		return nil, 0, err
	}
	lat := make([]time.Duration, len(m.LatenciesNs))
	for i, ns := range m.LatenciesNs {
		lat[i] = time.Duration(ns)
	}
	return lat, time.Duration(m.CPUNs), nil
}

func (l *processLoad) ownProcess() bool { return true }
func (l *processLoad) close()           { _ = l.p.stop(time.Minute) }

// startLoad starts the saturation run's load generator against endpoints,
// in its own process when the suite can start one, and makes the warm-up
// payments. Its senders are the cluster's (senderKeys(Streams)).
func (s *suite) startLoad(ctx context.Context, endpoints []string, dir string) (loadGenerator, error) {
	cfg := s.cfg
	if cfg.Warmup > 0 {
		s.logf("   warm-up: %d payments", cfg.Warmup)
	}
	if cfg.StartSidecar == nil {
		source, err := newPaymentSource(senderKeys(cfg.Streams), cfg.ChainID, cfg.Warmup+cfg.Payments)
		if err != nil {
			return nil, err
		}
		clients, closeAll, err := dialAll(endpoints)
		if err != nil {
			return nil, err
		}
		if cfg.Warmup > 0 {
			if _, err := closedLoop(ctx, cfg.Streams, cfg.Warmup, clients, payTimeout, source.next, nil); err != nil {
				closeAll()
				return nil, fmt.Errorf("warm-up: %w", err)
			}
		}
		return &inProcessLoad{s: s, clients: clients, closeAll: closeAll, source: source}, nil
	}
	lc := LoadGeneratorConfig{Endpoints: endpoints, ChainID: cfg.ChainID, Streams: cfg.Streams, Warmup: cfg.Warmup, Payments: cfg.Payments}
	if cfg.Progress != nil {
		lc.ProgressInterval = cfg.ProgressInterval
	}
	p, err := startChildProc(cfg.StartSidecar, lc.Args(), "load generator", filepath.Join(dir, "load-generator.log"), cfg.Progress)
	if err != nil {
		return nil, err
	}
	if _, err := p.expect(ctx, "ready"); err != nil {
		_ = p.stop(time.Minute)
		return nil, err
	}
	return &processLoad{p: p}, nil
}
