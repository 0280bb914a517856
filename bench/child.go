package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/allegro-mesh/allegro/node"
)

// ChildCommand is the command word a child process of the suite is started
// with: `allegro-dev bench-sidecar`, or allegro-bench-sidecar, which holds
// the same code without the development chain's.
const ChildCommand = "bench-sidecar"

// SidecarProcessConfig describes one sidecar process of the resource run.
type SidecarProcessConfig struct {
	// Index is this validator's position in the bench committee of
	// Validators members.
	Index, Validators int
	// ChainID and Senders describe the emulated chain: an in-memory chain
	// per process with the same Senders funded accounts in each.
	ChainID uint64
	Senders int
	// Dir is the validator's data directory.
	Dir string
	// LogLevel of the node's logs on stderr: debug, info, warn, error.
	LogLevel string
	// Transport is the node's p2p.Config.PreferredTransport ("": the
	// default).
	Transport string
	// CertRouting is the node's p2p.Config.CertRouting ("": the default).
	CertRouting string
}

// Validate reports the first invalid field.
func (c SidecarProcessConfig) Validate() error {
	switch {
	case c.Validators < 1 || c.Validators > 100:
		return fmt.Errorf("sidecar process: validators must be between 1 and 100, got %d", c.Validators)
	case c.Index < 0 || c.Index >= c.Validators:
		return fmt.Errorf("sidecar process: index must be in [0, %d), got %d", c.Validators, c.Index)
	case c.ChainID == 0:
		return errors.New("sidecar process: chain-id must be set")
	case c.Senders < 1:
		return fmt.Errorf("sidecar process: senders must be positive, got %d", c.Senders)
	case c.Dir == "":
		return errors.New("sidecar process: dir must be set")
	}
	if err := validTransport(c.Transport); err != nil {
		return fmt.Errorf("sidecar process: transport: %w", err)
	}
	if err := validCertRouting(c.CertRouting); err != nil {
		return fmt.Errorf("sidecar process: cert-routing: %w", err)
	}
	return nil
}

// Args returns the command-line arguments ParseSidecarArgs reads back.
func (c SidecarProcessConfig) Args() []string {
	return []string{
		"--index", strconv.Itoa(c.Index), "--validators", strconv.Itoa(c.Validators),
		"--chain-id", strconv.FormatUint(c.ChainID, 10), "--senders", strconv.Itoa(c.Senders),
		"--dir", c.Dir, "--log-level", c.LogLevel, "--transport", c.Transport,
		"--cert-routing", c.CertRouting,
	}
}

// ParseSidecarArgs parses the arguments of a sidecar process.
func ParseSidecarArgs(args []string, output io.Writer) (SidecarProcessConfig, error) {
	fs := flag.NewFlagSet("bench-sidecar", flag.ContinueOnError)
	fs.SetOutput(output)
	var c SidecarProcessConfig
	fs.IntVar(&c.Index, "index", 0, "this validator's index in the bench committee")
	fs.IntVar(&c.Validators, "validators", 4, "committee size")
	fs.Uint64Var(&c.ChainID, "chain-id", DefaultChainID, "chain id")
	fs.IntVar(&c.Senders, "senders", 64, "funded sender accounts of the emulated chain")
	fs.StringVar(&c.Dir, "dir", "", "data directory")
	fs.StringVar(&c.LogLevel, "log-level", "warn", "log level: debug, info, warn, error")
	fs.StringVar(&c.Transport, "transport", "", "transport dialled first: tcp or quic (default: the mesh's)")
	fs.StringVar(&c.CertRouting, "cert-routing", "", "certificate routing: bulletin or entry (default: the mesh's)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return c, c.Validate()
}

// Messages between the suite and its child processes: one JSON object per
// line, on the child's stdin and stdout. A sidecar of the resource run:
//
//	child → parent  hello  {api, peer}     the node is listening
//	parent → child  peers  {peers}         every validator's address
//	child → parent  ready                  it sees every other validator
//	parent → child  stats {heap_profile}   → child replies stats {stats}
//	                                         (and writes a heap profile)
//	parent closes stdin                    → child stops and replies bye
//
// The saturation run's load generator (loadproc.go):
//
//	child → parent  ready                  payments signed, warm-up done
//	parent → child  run                    → child makes the measured payments
//	                                         and replies done {latencies_ns, cpu_ns}
//	parent closes stdin                    → child replies bye and exits
type childMsg struct {
	Kind  string          `json:"kind"`
	API   string          `json:"api,omitempty"`
	Peer  *peer.AddrInfo  `json:"peer,omitempty"`
	Peers []peer.AddrInfo `json:"peers,omitempty"`
	Stats *ChildStats     `json:"stats,omitempty"`
	// HeapProfile, in a stats request, asks for a heap profile written
	// to this path (after a GC).
	HeapProfile string `json:"heap_profile,omitempty"`
	// LatenciesNs are the load generator's submit-to-QC times of the
	// measured payments; CPUNs the CPU time it spent making them.
	LatenciesNs []int64 `json:"latencies_ns,omitempty"`
	CPUNs       int64   `json:"cpu_ns,omitempty"`
	Error       string  `json:"error,omitempty"`
}

// childMsgMaxBytes bounds one message line (a load generator's latencies
// take about 10 bytes per payment).
const childMsgMaxBytes = 64 << 20

// ChildStats are a sidecar process's own figures.
type ChildStats struct {
	HeapInuse  uint64 `json:"heap_inuse"`
	HeapSys    uint64 `json:"heap_sys"`
	GoSys      uint64 `json:"go_sys"`
	Goroutines int    `json:"goroutines"`
	BytesSent  int64  `json:"bytes_sent"`
	// Heap is the live heap after a GC and pubsub's share of it.
	Heap HeapShares `json:"heap"`
}

// SidecarMain runs one child process of the suite (the hidden `allegro-dev
// bench-sidecar` command), talking to the parent on stdin and stdout (see
// childMsg). Given loadGeneratorArg as its first argument it is the
// saturation run's load generator (LoadGeneratorMain); otherwise a sidecar
// of the resource run: a validator of the bench committee on its own
// in-memory chain (the same funded senders in every process; every block
// period it includes the payments its board saw certified, as Cluster
// does). It stops when stdin closes or ctx ends.
func SidecarMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == loadGeneratorArg {
		return LoadGeneratorMain(ctx, args[1:], stdin, stdout, stderr)
	}
	cfg, err := ParseSidecarArgs(args, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(strings.ToUpper(cfg.LogLevel))); err != nil {
		return fmt.Errorf("log level %q: %w", cfg.LogLevel, err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	file := committeeFile(cfg.Validators, cfg.ChainID)
	committee, err := file.Committee()
	if err != nil {
		return err
	}
	chain := fundedChain(senderKeys(cfg.Senders))
	bytes := NewByteCounter()
	n, err := buildNode(cfg.Index, file, chain, cfg.Dir, meshChoice{cfg.Transport, cfg.CertRouting}, logger, nil, bytes)
	if err != nil {
		return err
	}
	// The process stands for one `allegro sidecar`, which applies the
	// configured soft memory limit and collector setting the same way.
	if _, _, err := node.ApplyMemoryLimit(n.Config, os.Getenv, node.ContainerMemoryLimit); err != nil {
		return err
	}
	if _, _, err := node.ApplyGCPercent(n.Config, os.Getenv); err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := n.Start(startCtx); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	in := newIncluder(chain, n.Sidecar.Board(), blockPeriod)
	defer func() {
		in.stop()
		stopCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := n.Stop(stopCtx); err != nil {
			logger.Error("stop", "err", err)
		}
	}()
	enc := json.NewEncoder(stdout)
	self := n.Sidecar.Mesh().Host().AddrInfo()
	if err := enc.Encode(childMsg{Kind: "hello", API: n.API.Addr().String(), Peer: &self}); err != nil {
		return err
	}
	return serveParent(ctx, stdin, enc, func(m childMsg) childMsg {
		var reply childMsg
		switch m.Kind {
		case "peers":
			n.Sidecar.Mesh().AddBootstrapPeers(m.Peers...)
			readyCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			err := poll(readyCtx, 10*time.Millisecond, "every other validator on the mesh", func() bool {
				return meshReady(n, committee.Domain(), cfg.Validators-1)
			})
			cancel()
			reply = childMsg{Kind: "ready"}
			if err != nil {
				reply.Error = err.Error()
			}
		case "stats":
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			reply = childMsg{Kind: "stats", Stats: &ChildStats{HeapInuse: ms.HeapInuse, HeapSys: ms.HeapSys, GoSys: ms.Sys,
				Goroutines: runtime.NumGoroutine(), BytesSent: bytes.Sent()}}
			// After the in-use figures: this collects garbage first.
			var err error
			if reply.Stats.Heap, err = measureHeapShares(); err != nil {
				reply.Error = err.Error()
			}
			if m.HeapProfile != "" {
				if err := writeHeapProfile(m.HeapProfile); err != nil {
					reply.Error = err.Error()
				}
			}
		default:
			reply = childMsg{Kind: "error", Error: fmt.Sprintf("unknown message %q", m.Kind)}
		}
		return reply
	})
}

// writeHeapProfile writes a heap profile (live objects after a GC) to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	runtime.GC()
	err = pprof.WriteHeapProfile(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("heap profile %s: %w", path, err)
	}
	return nil
}
