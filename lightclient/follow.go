package lightclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
)

// CommitteeSource gives the committee of an epoch (committee.Resolver does:
// from the committee file, or from chain state and bindings, so a light
// client checks the committee it verifies against itself).
type CommitteeSource interface {
	Committee(ctx context.Context, epoch uint64) (*qc.Committee, error)
}

// FollowConfig is how a Follower finds the chain's epoch.
type FollowConfig struct {
	// Committees gives each epoch's committee. Required.
	Committees CommitteeSource
	// Chain gives the head; EpochOf maps a head to its epoch
	// (committee.File.EpochOf). Required.
	Chain   tempo.ChainReader
	EpochOf func(height uint64) uint64
	// Poll is how often the head is read (default 200 ms).
	Poll time.Duration
	// Overlap is how long the previous epoch's client keeps listening after
	// a change, for QCs of that epoch still in flight (default 10 s).
	Overlap time.Duration
}

// Follower is a light client across mesh epochs (SPEC §5a): it runs a
// Client on the QC topics of the chain's current epoch, verifying against
// that epoch's committee, starts the next epoch's when the head reaches it
// (the previous one listens on for Overlap), and delivers the payments of
// every epoch on one channel, each transaction once.
type Follower struct {
	cfg    Config
	follow FollowConfig
	log    *slog.Logger
	out    chan Payment
	seen   *lru.Cache[qc.Hash, struct{}]

	mu      sync.Mutex
	epoch   uint64
	clients map[uint64]*Client
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// NewFollower returns a follower whose clients are configured like cfg
// (cfg.Committee is set per epoch and may be nil).
func NewFollower(cfg Config, follow FollowConfig) (*Follower, error) {
	switch {
	case follow.Committees == nil:
		return nil, errors.New("lightclient: follower without a committee source")
	case follow.Chain == nil || follow.EpochOf == nil:
		return nil, errors.New("lightclient: follower without a chain to tell the epoch")
	}
	if follow.Poll <= 0 {
		follow.Poll = 200 * time.Millisecond
	}
	if follow.Overlap <= 0 {
		follow.Overlap = 10 * time.Second
	}
	if cfg.PaymentBuffer <= 0 {
		cfg.PaymentBuffer = DefaultConfig().PaymentBuffer
	}
	seen, err := lru.New[qc.Hash, struct{}](max(cfg.RememberQCs, 1024))
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Follower{cfg: cfg, follow: follow, log: log, out: make(chan Payment, cfg.PaymentBuffer), seen: seen, clients: make(map[uint64]*Client)}, nil
}

// Payments delivers verified payments to the watched addresses, of every
// epoch.
func (f *Follower) Payments() <-chan Payment { return f.out }

// Current returns the client of the current epoch.
func (f *Follower) Current() *Client {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clients[f.epoch]
}

// Epoch returns the epoch whose client runs now.
func (f *Follower) Epoch() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.epoch
}

// Start starts the client of the chain's current epoch and follows the
// chain from there.
//
// The committee of a network's first epoch may not be known yet when the
// chain has not reached its committee block: Start then waits for it,
// reading the head every Poll, until ctx ends.
func (f *Follower) Start(ctx context.Context) error {
	var e uint64
	for attempt := 0; ; attempt++ {
		view, err := f.follow.Chain.Latest(ctx)
		if err != nil {
			return fmt.Errorf("lightclient: the chain's head: %w", err)
		}
		e = f.follow.EpochOf(view.Head().Number)
		_, err = f.follow.Committees.Committee(ctx, e)
		if err == nil {
			break
		}
		if attempt == 0 {
			f.log.Info("waiting for the committee of the chain's epoch", "epoch", e, "head", view.Head().Number, "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lightclient: committee of epoch %d: %w", e, err)
		case <-time.After(f.follow.Poll):
		}
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	if err := f.startEpoch(ctx, e); err != nil {
		f.cancel()
		return err
	}
	f.wg.Add(1)
	go f.loop()
	return nil
}

// Stop stops every client.
func (f *Follower) Stop(ctx context.Context) error {
	if f.cancel != nil {
		f.cancel()
	}
	f.wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for e, c := range f.clients {
		errs = append(errs, c.Stop(ctx))
		delete(f.clients, e)
	}
	return errors.Join(errs...)
}

func (f *Follower) startEpoch(ctx context.Context, e uint64) error {
	c, err := f.follow.Committees.Committee(ctx, e)
	if err != nil {
		return fmt.Errorf("lightclient: committee of epoch %d: %w", e, err)
	}
	cfg := f.cfg
	cfg.Committee = c
	client, err := New(cfg, nil)
	if err != nil {
		return err
	}
	if err := client.Start(ctx); err != nil {
		_ = client.Stop(context.Background())
		return err
	}
	f.mu.Lock()
	f.clients[e] = client
	f.epoch = e
	f.mu.Unlock()
	f.wg.Add(1)
	go f.forward(client)
	f.log.Info("light client following epoch", "epoch", e, "committee", c.Hash(), "seats", c.N())
	return nil
}

// forward passes a client's payments on, each transaction once.
func (f *Follower) forward(c *Client) {
	defer f.wg.Done()
	for {
		select {
		case <-f.ctx.Done():
			return
		case p, ok := <-c.Payments():
			if !ok {
				return
			}
			if p.QC != nil {
				if dup, _ := f.seen.ContainsOrAdd(p.QC.TxHash, struct{}{}); dup {
					continue
				}
			}
			select {
			case f.out <- p:
			case <-f.ctx.Done():
				return
			}
		}
	}
}

func (f *Follower) loop() {
	defer f.wg.Done()
	tick := time.NewTicker(f.follow.Poll)
	defer tick.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-tick.C:
		}
		view, err := f.follow.Chain.Latest(f.ctx)
		if err != nil {
			continue
		}
		next := f.follow.EpochOf(view.Head().Number)
		if next <= f.Epoch() {
			continue
		}
		prev := f.Epoch()
		if err := f.startEpoch(f.ctx, next); err != nil {
			// The committee may not be derivable yet; asked again next tick.
			f.log.Debug("light client: next epoch not started yet", "epoch", next, "err", err)
			continue
		}
		f.wg.Add(1)
		go f.retire(prev)
	}
}

// retire stops the client of epoch e after the overlap.
func (f *Follower) retire(e uint64) {
	defer f.wg.Done()
	select {
	case <-f.ctx.Done():
		return
	case <-time.After(f.follow.Overlap):
	}
	f.mu.Lock()
	c := f.clients[e]
	delete(f.clients, e)
	f.mu.Unlock()
	if c != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Stop(ctx)
	}
}
