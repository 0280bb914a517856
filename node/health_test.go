package node

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/chain"
)

// TestStoreHealth: the store is reported usable while open with its
// directory present, and not once closed or once the directory is gone.
func TestStoreHealth(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	b := &backend{store: &storeState{dir: dir}}
	if err := b.StoreHealth(); err != nil {
		t.Fatalf("open store: %v", err)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := b.StoreHealth(); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Fatalf("directory gone: %v", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	b.store.closed.Store(true)
	if err := b.StoreHealth(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("closed store: %v", err)
	}
}

// modeChain is an in-memory chain reporting a chain client's follow mode.
type modeChain struct {
	*tempo.MemChain
	mode string
}

func (m modeChain) Mode() string { return m.mode }

// TestChainHealth: a chain client is unhealthy while (re)connecting and
// healthy while following heads; a chain reader without a mode always is.
func TestChainHealth(t *testing.T) {
	for _, c := range []struct {
		chain tempo.ChainReader
		ok    bool
	}{
		{tempo.NewMemChain(), true},
		{modeChain{tempo.NewMemChain(), chain.ModeSubscription}, true},
		{modeChain{tempo.NewMemChain(), chain.ModePolling}, true},
		{modeChain{tempo.NewMemChain(), chain.ModeConnecting}, false},
	} {
		err := (&backend{chain: c.chain}).ChainHealth()
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, tempo.ErrChainUnavailable)) {
			t.Errorf("%T %v: %v", c.chain, c.chain, err)
		}
	}
}
