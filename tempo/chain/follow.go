package chain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/allegro-mesh/allegro/tempo"
	"github.com/ethereum/go-ethereum/rpc"
)

var errSubscribeUnsupported = errors.New("newHeads subscription not supported")

// follow keeps the head current until ctx ends: a newHeads subscription over
// WebSocket, polling otherwise. Every failure is followed by a retry after an
// exponential backoff (BackoffMin doubling up to BackoffMax), with a warning
// at the first failure, then every ReportInterval while it lasts, and an
// info log when the node answers again.
func (c *Client) follow(ctx context.Context) {
	defer close(c.done)
	backoff := c.cfg.BackoffMin
	healthy := func() {
		if _, down, ok := c.reachable(); ok {
			c.log.Info("chain node reachable again", "down_for", down.Round(time.Millisecond), "head", c.headNumber())
		}
		backoff = c.cfg.BackoffMin
	}
	reconnect := false
	for ctx.Err() == nil {
		err := c.followOnce(ctx, reconnect, healthy)
		if ctx.Err() != nil {
			return
		}
		c.mode.Store(ModeConnecting)
		c.metrics.reconnects.Inc()
		c.failed(err, backoff, errors.Is(err, ErrChainIDMismatch) || errors.Is(err, ErrGenesisMismatch))
		if !c.waitRetry(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, c.cfg.BackoffMax)
		reconnect = true
	}
}

// followOnce follows the chain over one connection and returns the error
// that ended it (nil only when ctx ended).
func (c *Client) followOnce(ctx context.Context, reconnect bool, healthy func()) error {
	if reconnect {
		rc, fresh := c.rpcClient(), false
		if c.ws || rc == nil {
			// A WebSocket connection carries the subscription: start afresh.
			var err error
			if rc, err = c.dial(ctx); err != nil {
				return err
			}
			fresh = true
		}
		// The node behind the URL may have been replaced: check before any
		// read goes through this connection.
		if err := c.checkIdentity(ctx, rc); err != nil {
			if fresh {
				rc.Close()
			}
			if errors.Is(err, ErrChainIDMismatch) || errors.Is(err, ErrGenesisMismatch) {
				c.closeRPC() // reads now fail as unavailable instead of reading another chain
			}
			return err
		}
		if fresh {
			c.setRPC(rc)
		}
	}
	var h tempo.Head
	if err := c.call(ctx, "eth_getBlockByNumber", decodeHeader(&h), "latest", false); err != nil {
		return err
	}
	healthy()
	c.setHead(h)
	if c.ws {
		err := c.subscribe(ctx)
		if !errors.Is(err, errSubscribeUnsupported) {
			return err
		}
		c.log.Info("newHeads subscription unavailable; following the chain by polling", "err", err)
	}
	return c.poll(ctx, h.Number)
}

// subscribe follows newHeads notifications until the subscription fails.
func (c *Client) subscribe(ctx context.Context) error {
	rc := c.rpcClient()
	if rc == nil {
		return errors.New("not connected")
	}
	ch := make(chan json.RawMessage, 128)
	sctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	sub, err := rc.EthSubscribe(sctx, ch, "newHeads")
	cancel()
	if err != nil {
		f := classify("eth_subscribe", err)
		c.metrics.requests.WithLabelValues("eth_subscribe", f.kind).Inc()
		if errors.Is(err, rpc.ErrNotificationsUnsupported) || f.kind == outcomeRPCError {
			return fmt.Errorf("%w: %w", errSubscribeUnsupported, err)
		}
		return f
	}
	c.metrics.requests.WithLabelValues("eth_subscribe", outcomeOK).Inc()
	defer sub.Unsubscribe()
	c.mode.Store(ModeSubscription)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-sub.Err():
			if err == nil {
				err = errors.New("closed")
			}
			return fmt.Errorf("%w: newHeads subscription ended: %w", tempo.ErrChainUnavailable, err)
		case raw := <-ch:
			h, err := parseHeader(raw)
			if err != nil {
				c.metrics.malformed.Inc()
				c.log.Warn("skipping malformed newHeads notification", "err", err)
				continue
			}
			c.setHead(h)
		}
	}
}

// poll follows the chain with eth_blockNumber every PollInterval, fetching
// the latest header when the number changes.
func (c *Client) poll(ctx context.Context, last uint64) error {
	c.mode.Store(ModePolling)
	t := time.NewTicker(c.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		var n uint64
		if err := c.call(ctx, "eth_blockNumber", decodeQuantity(&n)); err != nil {
			return err
		}
		if n == last {
			continue
		}
		var h tempo.Head
		if err := c.call(ctx, "eth_getBlockByNumber", decodeHeader(&h), "latest", false); err != nil {
			return err
		}
		c.setHead(h)
		last = h.Number
	}
}
