package tempo

import (
	"context"
	"errors"
	"testing"

	"github.com/ethereum/go-ethereum/common"
)

// countingView counts a view's nonce reads and can fail them.
type countingView struct {
	ChainView
	reads int
	fail  error // returned by NonceOf instead of an answer when set
}

func (v *countingView) NonceOf(ctx context.Context, account common.Address, key [32]byte) (uint64, error) {
	v.reads++
	if v.fail != nil {
		return 0, v.fail
	}
	return v.ChainView.NonceOf(ctx, account, key)
}

func TestNonceReads(t *testing.T) {
	ctx := context.Background()
	alice, bob := common.Address{0xa1}, common.Address{0xb0}
	keyA := [32]byte{31: 7}
	chain := NewMemChain()
	chain.SetNonce(alice, [32]byte{}, 5)
	chain.SetNonce(alice, keyA, 2)
	chain.SetNonce(bob, [32]byte{9}, 3)
	view, err := chain.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	counted := &countingView{ChainView: view}
	reads := NewNonceReads(counted)
	for _, tc := range []struct {
		account  common.Address
		key      [32]byte
		seq      uint64
		included bool
	}{
		{alice, [32]byte{}, 0, true},
		{alice, [32]byte{}, 4, true},
		{alice, [32]byte{}, 5, false}, // the next nonce: not yet
		{alice, [32]byte{}, 9, false},
		{alice, keyA, 1, true},
		{alice, keyA, 2, false},
		{bob, [32]byte{}, 0, false},
		{bob, keyA, 0, false},
	} {
		got, err := reads.Included(ctx, tc.account, tc.key, tc.seq)
		if err != nil || got != tc.included {
			t.Errorf("Included(%s, key %x, %d) = %v, %v; want %v", tc.account, tc.key[31], tc.seq, got, err, tc.included)
		}
	}
	if counted.reads != 4 {
		t.Errorf("%d nonce reads for 4 (account, key) pairs", counted.reads)
	}

	// A failed read is returned, not remembered.
	counted.fail = ErrChainUnavailable
	if _, err := reads.Included(ctx, bob, [32]byte{9}, 1); !errors.Is(err, ErrChainUnavailable) {
		t.Fatalf("failed read: err = %v, want ErrChainUnavailable", err)
	}
	counted.fail = nil
	if got, err := reads.Included(ctx, bob, [32]byte{9}, 1); err != nil || !got {
		t.Fatalf("after a failed read: %v, %v; want true, nil", got, err)
	}
}
