package chain

import (
	"fmt"
	"sync"

	"github.com/ethereum/go-ethereum/common"
	"github.com/hashicorp/golang-lru/v2/simplelru"
)

type queryKind uint8

const (
	queryBalance queryKind = iota + 1
	queryNonce
	queryFeeToken
)

// queryKey identifies one state read within a block.
type queryKey struct {
	kind queryKind
	a, b common.Address // balance: token, holder; nonce, fee token: account, -
	key  [32]byte       // nonce key
}

func (q queryKey) flightKey(block uint64) string {
	return fmt.Sprintf("%d/%d/%x/%x/%x", block, q.kind, q.a, q.b, q.key)
}

// answerCache holds answers per block: an LRU of blocks, each an LRU of
// queries. Answers of one block never change, so entries need no expiry;
// evicting a block drops all its answers at once.
type answerCache struct {
	mu       sync.Mutex
	blocks   *simplelru.LRU[uint64, *simplelru.LRU[queryKey, any]]
	perBlock int
}

// newAnswerCache returns nil (no caching) when blocks < 1.
func newAnswerCache(blocks, perBlock int) *answerCache {
	if blocks < 1 {
		return nil
	}
	l, err := simplelru.NewLRU[uint64, *simplelru.LRU[queryKey, any]](blocks, nil)
	if err != nil {
		panic(err) // size checked by Config.Validate
	}
	return &answerCache{blocks: l, perBlock: perBlock}
}

func (c *answerCache) get(block uint64, q queryKey) (any, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	inner, ok := c.blocks.Get(block)
	if !ok {
		return nil, false
	}
	return inner.Get(q)
}

func (c *answerCache) add(block uint64, q queryKey, v any) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	inner, ok := c.blocks.Get(block)
	if !ok {
		var err error
		inner, err = simplelru.NewLRU[queryKey, any](c.perBlock, nil)
		if err != nil {
			panic(err) // size checked by Config.Validate
		}
		c.blocks.Add(block, inner)
	}
	inner.Add(q, v)
}

func (c *answerCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, b := range c.blocks.Keys() {
		if inner, ok := c.blocks.Peek(b); ok {
			n += inner.Len()
		}
	}
	return n
}
