package committee

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"

	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
)

// ValidatorReader reads the chain's validator set at a block
// (*chain.Client does).
type ValidatorReader interface {
	Validators(ctx context.Context, block uint64) ([]tempo.Validator, error)
}

// Resolver gives the committee of each epoch of a network: the file's
// members in the epoch's domain, or, with committee_source = "chain", the
// committee derived from the validator set at the epoch's committee block
// and the bindings in a directory. Sidecars, wallets and light clients use
// it alike, so each checks what it verifies against chain state and
// bindings itself. It is safe for concurrent use.
type Resolver struct {
	file     *File
	chain    ValidatorReader
	bindings string
	// OnDerived, when set, is called once per epoch derived from the chain.
	OnDerived func(epoch, block uint64, c *qc.Committee, report DeriveReport, badFiles []BindingFileError)

	mu    sync.Mutex
	cache map[uint64]*qc.Committee
}

// NewResolver returns the resolver of f's network. chain and bindingsDir
// are needed only when f.FromChain().
func NewResolver(f *File, chain ValidatorReader, bindingsDir string) (*Resolver, error) {
	if f.FromChain() && chain == nil {
		return nil, errors.New("committee: the committee comes from the chain (committee_source = \"chain\"): a chain node is needed")
	}
	return &Resolver{file: f, chain: chain, bindings: bindingsDir, cache: make(map[uint64]*qc.Committee)}, nil
}

// cacheEpochs bounds the committees kept: QCs of older epochs are settled
// or expired long before.
const cacheEpochs = 8

// Committee returns the committee of epoch e. Before the network's first
// epoch there is none; from the chain, none until the chain reached the
// epoch's committee block (an error; ask again later).
func (r *Resolver) Committee(ctx context.Context, e uint64) (*qc.Committee, error) {
	if e < r.file.Epoch {
		return nil, fmt.Errorf("committee: epoch %d is before the network's first, %d", e, r.file.Epoch)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.cache[e]; ok {
		return c, nil
	}
	var c *qc.Committee
	var err error
	if r.file.FromChain() {
		c, err = r.derive(ctx, e)
	} else {
		c, err = r.file.CommitteeAt(e)
	}
	if err != nil {
		return nil, err
	}
	r.cache[e] = c
	for old := range r.cache {
		if old+cacheEpochs < e {
			delete(r.cache, old)
		}
	}
	return c, nil
}

func (r *Resolver) derive(ctx context.Context, e uint64) (*qc.Committee, error) {
	block, err := Schedule{EpochLength: r.file.EpochLength}.CommitteeBlock(e)
	if err != nil {
		return nil, err
	}
	set, err := r.chain.Validators(ctx, block)
	if err != nil {
		return nil, fmt.Errorf("committee of epoch %d: validator set at block %d: %w", e, block, err)
	}
	bindings, bad, err := LoadBindings(r.bindings)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	c, report, err := Derive(r.file.ChainID, e, set, bindings)
	if err != nil {
		return nil, err
	}
	if r.OnDerived != nil {
		r.OnDerived(e, block, c, report, bad)
	}
	return c, nil
}

// Func returns Committee as a function of the epoch alone (nil when not
// known), for epoch.NewHandover and the client's Config.CommitteeOf.
func (r *Resolver) Func(ctx context.Context) func(uint64) *qc.Committee {
	return func(e uint64) *qc.Committee {
		c, err := r.Committee(ctx, e)
		if err != nil {
			return nil
		}
		return c
	}
}
