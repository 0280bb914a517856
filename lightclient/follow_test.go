package lightclient

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
)

// chainCommittees knows the committee of an epoch only once the chain
// passed its committee block, as a committee derived from chain state is.
type chainCommittees struct {
	chain *tempo.MemChain
	c     *qc.Committee
	block uint64
}

func (s chainCommittees) Committee(ctx context.Context, e uint64) (*qc.Committee, error) {
	view, err := s.chain.Latest(ctx)
	if err != nil {
		return nil, err
	}
	if view.Head().Number < s.block {
		return nil, errors.New("header not found")
	}
	return s.c, nil
}

// TestFollowerWaitsForTheFirstCommittee: started before the chain reached
// the committee block of the network's first epoch, the follower waits for
// it instead of failing, and gives up only when its context ends.
func TestFollowerWaitsForTheFirstCommittee(t *testing.T) {
	f := newFixture(t, 4)
	chain := tempo.NewMemChain()
	chain.SetHead(5)
	source := chainCommittees{chain: chain, c: f.committee, block: 11}
	epochOf := func(h uint64) uint64 { return max(1, h/12) }
	cfg := unitConfig(t, f)
	cfg.Committee = nil

	follower := func() *Follower {
		fl, err := NewFollower(cfg, FollowConfig{Committees: source, Chain: chain, EpochOf: epochOf, Poll: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return fl
	}

	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := follower().Start(short); err == nil {
		t.Fatal("started without a committee")
	}

	fl := follower()
	started := make(chan error, 1)
	ctx, cancelAll := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelAll()
	go func() { started <- fl.Start(ctx) }()
	select {
	case err := <-started:
		t.Fatalf("Start returned %v before the committee block", err)
	case <-time.After(50 * time.Millisecond):
	}
	chain.SetHead(11)
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	defer fl.Stop(context.Background())
	if fl.Epoch() != 1 || fl.Current() == nil {
		t.Fatalf("following epoch %d (client %v), want epoch 1", fl.Epoch(), fl.Current())
	}
}
