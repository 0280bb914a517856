package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/deploy/testnet"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/safety"
	"github.com/allegro-mesh/allegro/tempo/chain"
)

// epochWatch follows the testnet's epochs from the host, as a wallet does:
// it polls the dev chain's head, records each boundary when it first sees
// it, and keeps every epoch's committee (derived from chain state and the
// testnet's bindings) for the whole run, so the driver verifies each QC
// against its epoch's committee and the collector checks the history
// against all of them.
type epochWatch struct {
	file  *committee.File
	res   *committee.Resolver
	chain *chain.Client
	log   *slog.Logger
	// keyName maps a sidecar key to its testnet name (v1...).
	keyName map[qc.ValidatorID]string

	mu         sync.Mutex
	committees map[uint64]*qc.Committee
	current    uint64
	boundaries []safety.Boundary
	changed    chan struct{} // closed and replaced when an epoch starts or a committee is learnt
}

// epochPoll is how often the head is read: boundaries are timed to it.
const epochPoll = 200 * time.Millisecond

func newEpochWatch(ctx context.Context, dir string, m *testnet.Manifest, log *slog.Logger) (*epochWatch, error) {
	f, err := committee.LoadFile(dir + "/" + testnet.CommitteeFile)
	if err != nil {
		return nil, err
	}
	url := "ws://" + strings.TrimPrefix(m.Chain.RPC, "http://")
	cl, err := chain.New(chain.Config{URL: url, ExpectedChainID: f.ChainID}, log.With("component", "e2e-chain"))
	if err != nil {
		return nil, err
	}
	if err := cl.Start(ctx); err != nil {
		return nil, fmt.Errorf("epochs: reach the dev chain at %s: %w", url, err)
	}
	res, err := committee.NewResolver(f, cl, dir+"/"+testnet.BindingsDir)
	if err != nil {
		_ = cl.Stop(context.Background())
		return nil, err
	}
	w := &epochWatch{file: f, res: res, chain: cl, log: log, keyName: map[qc.ValidatorID]string{},
		committees: map[uint64]*qc.Committee{}, changed: make(chan struct{})}
	for _, s := range m.Sidecars {
		id, err := s.ID()
		if err != nil {
			return nil, err
		}
		w.keyName[id] = s.Name
	}
	return w, nil
}

func (w *epochWatch) stop() { _ = w.chain.Stop(context.Background()) }

// start reads the current epoch and its committee, waiting up to timeout.
func (w *epochWatch) start(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := w.poll(ctx, true)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("epochs: no committee after %s: %w", timeout, err)
		}
		if err := sleepCtx(ctx, epochPoll); err != nil {
			return err
		}
	}
}

// run polls until ctx ends.
func (w *epochWatch) run(ctx context.Context) {
	for ctx.Err() == nil {
		if err := w.poll(ctx, false); err != nil {
			w.log.Debug("epochs: poll", "err", err)
		}
		_ = sleepCtx(ctx, epochPoll)
	}
}

// poll reads the head once: a new epoch is recorded as a boundary (unless
// it is the first seen), and its committee and, once the chain passed its
// committee block, the next one's are derived.
func (w *epochWatch) poll(ctx context.Context, first bool) error {
	view, err := w.chain.Latest(ctx)
	if err != nil {
		return err
	}
	head := view.Head().Number
	e := w.file.EpochOf(head)
	now := time.Now()
	w.mu.Lock()
	if !first && e > w.current {
		for next := w.current + 1; next <= e; next++ {
			at, _ := committee.Schedule{EpochLength: w.file.EpochLength}.FirstBlock(next)
			w.boundaries = append(w.boundaries, safety.Boundary{Epoch: next, Height: at, At: now})
		}
	}
	if first || e > w.current {
		w.current = e
		w.signal()
	}
	w.mu.Unlock()
	if _, err := w.learn(ctx, e); err != nil {
		return err
	}
	if cb, err := (committee.Schedule{EpochLength: w.file.EpochLength}).CommitteeBlock(e + 1); err == nil && head >= cb {
		_, _ = w.learn(ctx, e+1)
	}
	return nil
}

// learn derives and keeps the committee of epoch e.
func (w *epochWatch) learn(ctx context.Context, e uint64) (*qc.Committee, error) {
	w.mu.Lock()
	c, ok := w.committees[e]
	w.mu.Unlock()
	if ok {
		return c, nil
	}
	c, err := w.res.Committee(ctx, e)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	w.committees[e] = c
	w.signal()
	w.mu.Unlock()
	w.log.Info("epoch committee", "epoch", e, "members", strings.Join(w.names(c), ","), "quorum", c.Quorum())
	return c, nil
}

func (w *epochWatch) signal() {
	close(w.changed)
	w.changed = make(chan struct{})
}

// committeeOf returns the committee of epoch e (nil while unknown), for the
// wallet's client.Config.CommitteeOf.
func (w *epochWatch) committeeOf(e uint64) *qc.Committee {
	w.mu.Lock()
	c := w.committees[e]
	w.mu.Unlock()
	if c != nil {
		return c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _ = w.learn(ctx, e)
	return c
}

// currentCommittee returns the current epoch and its committee.
func (w *epochWatch) currentCommittee() (uint64, *qc.Committee) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.current, w.committees[w.current]
}

// all returns every committee learnt, by epoch.
func (w *epochWatch) all() []*qc.Committee {
	w.mu.Lock()
	defer w.mu.Unlock()
	epochs := make([]uint64, 0, len(w.committees))
	for e := range w.committees {
		epochs = append(epochs, e)
	}
	slices.Sort(epochs)
	out := make([]*qc.Committee, len(epochs))
	for i, e := range epochs {
		out[i] = w.committees[e]
	}
	return out
}

// crossed returns the boundaries recorded so far.
func (w *epochWatch) crossed() []safety.Boundary {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.boundaries)
}

// names returns the testnet names of c's members, sorted.
func (w *epochWatch) names(c *qc.Committee) []string {
	var out []string
	for _, m := range c.Members() {
		if n, ok := w.keyName[m.ID]; ok {
			out = append(out, n)
		} else {
			out = append(out, m.Name)
		}
	}
	slices.Sort(out)
	return out
}

// memberName maps a testnet name to the name its key has in the
// committees (derived from the chain: "v<index>-<address>"), or returns it
// unchanged when no committee learnt has it.
func (w *epochWatch) memberName(name string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.committees {
		for _, m := range c.Members() {
			if w.keyName[m.ID] == name {
				return m.Name
			}
		}
	}
	return name
}

// waitFor waits until cond holds for the current epoch and its committee,
// checking at every epoch change, bounded by timeout.
func (w *epochWatch) waitFor(ctx context.Context, timeout time.Duration, what string, cond func(e uint64, c *qc.Committee) bool) (uint64, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		e, c, ch := w.current, w.committees[w.current], w.changed
		w.mu.Unlock()
		if c != nil && cond(e, c) {
			return e, nil
		}
		select {
		case <-ch:
		case <-deadline.C:
			return 0, fmt.Errorf("epochs: %s: not after %s (epoch %d)", what, timeout, e)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}
