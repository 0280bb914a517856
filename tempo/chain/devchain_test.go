package chain

import (
	"context"
	"errors"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devchain"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

func devClientConfig(url string) Config {
	return Config{
		URL:             url,
		ExpectedChainID: devchain.DefaultChainID,
		PollInterval:    50 * time.Millisecond,
		RequestTimeout:  2 * time.Second,
		BackoffMin:      50 * time.Millisecond,
		BackoffMax:      400 * time.Millisecond,
	}
}

// waitReceipt polls the client for a receipt.
func waitReceipt(t *testing.T, c *Client, hash common.Hash) *Receipt {
	t.Helper()
	var r *Receipt
	testkit.Eventually(t, 20*time.Second, "receipt of "+hash.Hex(), func() bool {
		var err error
		r, err = c.TransactionReceipt(context.Background(), hash)
		if err != nil {
			t.Fatalf("receipt: %v", err)
		}
		return r != nil
	})
	return r
}

// latestAt returns a view at or above block n.
func latestAt(t *testing.T, c *Client, n uint64) tempo.ChainView {
	t.Helper()
	var v tempo.ChainView
	testkit.Eventually(t, 20*time.Second, "head "+strconv.FormatUint(n, 10), func() bool {
		var err error
		v, err = c.Latest(context.Background())
		return err == nil && v.Head().Number >= n
	})
	return v
}

func balance(t *testing.T, v tempo.ChainView, holder common.Address) uint64 {
	t.Helper()
	b, err := v.BalanceOf(context.Background(), devkit.TokenAddress, holder)
	if err != nil {
		t.Fatalf("balance of %s: %v", holder, err)
	}
	return b.Uint64()
}

func nonce(t *testing.T, v tempo.ChainView, account common.Address) uint64 {
	t.Helper()
	n, err := v.NonceOf(context.Background(), account, [32]byte{})
	if err != nil {
		t.Fatalf("nonce of %s: %v", account, err)
	}
	return n
}

func TestDevchainStateAndSettlement(t *testing.T) {
	dc := testkit.StartDevChain(t, devchain.Config{BlockPeriod: 200 * time.Millisecond, LoadAccounts: -1})
	reg := prometheus.NewRegistry()
	cfg := devClientConfig(dc.WSEndpoint())
	cfg.Registerer = reg
	c := startClient(t, cfg, nil)
	if c.ChainID() != 1337 {
		t.Fatalf("chain id %d", c.ChainID())
	}
	demo := devkit.DemoAccounts()
	alice, bob, carol := demo[0], demo[1], demo[2]
	ctx := context.Background()

	v0, err := c.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a := balance(t, v0, alice.Address); a != 15*devkit.Dollar {
		t.Fatalf("alice %d", a)
	}
	if n := nonce(t, v0, alice.Address); n != 0 {
		t.Fatalf("alice nonce %d", n)
	}
	// The dev chain has no nonce precompile: a 2D-nonce read is an error,
	// never a made-up nonce.
	if n, err := v0.NonceOf(ctx, alice.Address, [32]byte{31: 1}); !errors.Is(err, tempo.ErrChainUnavailable) {
		t.Fatalf("2D nonce on the dev chain: %d, %v", n, err)
	}

	tx, err := devkit.SignTransfer(alice.Key, 0, bob.Address, big.NewInt(devkit.Dollar), dc.ChainID(), 0, devkit.Fees{})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := tx.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	hash, err := c.SendRawTransaction(ctx, raw)
	if err != nil || hash != tx.Hash() {
		t.Fatalf("send: %s, %v (want %s)", hash, err, tx.Hash())
	}
	// Resubmitting is harmless.
	if again, err := c.SendRawTransaction(ctx, raw); err != nil || again != tx.Hash() {
		t.Fatalf("resend: %s, %v", again, err)
	}
	if _, err := c.SendRawTransaction(ctx, []byte{0x02, 0xc0}); !errors.Is(err, ErrTxRejected) {
		t.Fatalf("garbage tx: %v", err)
	}
	r := waitReceipt(t, c, tx.Hash())
	if !r.Succeeded() || r.TxHash != tx.Hash() || r.GasUsed == 0 || len(r.Logs) != 1 ||
		r.Logs[0].Address != devkit.TokenAddress || r.Logs[0].Topics[0] != devkit.TransferEventTopic {
		t.Fatalf("receipt %+v", r)
	}

	v1 := latestAt(t, c, r.BlockNumber)
	if a, b := balance(t, v1, alice.Address), balance(t, v1, bob.Address); a != 14*devkit.Dollar || b != 6*devkit.Dollar {
		t.Fatalf("after transfer alice=%d bob=%d", a, b)
	}
	if n := nonce(t, v1, alice.Address); n != 1 {
		t.Fatalf("alice nonce %d after transfer", n)
	}
	// The old view still answers for its own block (bob first read there now).
	if v0.Head().Number < r.BlockNumber {
		if b := balance(t, v0, bob.Address); b != 5*devkit.Dollar {
			t.Fatalf("bob at the old view's block = %d", b)
		}
	}

	// An overdraft is included and reverts.
	tx2, _ := devkit.SignTransfer(carol.Key, 0, bob.Address, big.NewInt(6*devkit.Dollar), dc.ChainID(), 0, devkit.Fees{})
	raw2, _ := tx2.MarshalBinary()
	if _, err := c.SendRawTransaction(ctx, raw2); err != nil {
		t.Fatal(err)
	}
	if r2 := waitReceipt(t, c, tx2.Hash()); r2.Succeeded() {
		t.Fatal("overdraft succeeded")
	}
	if counterValue(t, reg, "allegro_chain_rpc_requests_total", map[string]string{"method": "eth_call", "outcome": "ok"}) == 0 {
		t.Fatal("no eth_call counted")
	}
}

func TestDevchainHeadFollowing(t *testing.T) {
	dc := testkit.StartDevChain(t, devchain.Config{BlockPeriod: 100 * time.Millisecond, LoadAccounts: -1})
	for _, tc := range []struct{ url, mode string }{
		{dc.WSEndpoint(), ModeSubscription},
		{dc.HTTPEndpoint(), ModePolling},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			c := startClient(t, devClientConfig(tc.url), nil)
			heads, cancel := c.SubscribeHeads()
			defer cancel()
			var last uint64
			for i := 0; i < 5; i++ {
				select {
				case h := <-heads:
					if last != 0 && h.Number <= last {
						t.Fatalf("head %d after %d", h.Number, last)
					}
					if h.Hash == (common.Hash{}) || (h.Number > 0 && h.UnixMillis == 0) {
						t.Fatalf("incomplete head %+v", h)
					}
					last = h.Number
				case <-time.After(10 * time.Second):
					t.Fatalf("no head %d", i)
				}
			}
			if c.Mode() != tc.mode {
				t.Fatalf("mode %s, want %s", c.Mode(), tc.mode)
			}
			if h, ok := c.Head(); !ok || h.Number < last {
				t.Fatalf("Head() %+v behind %d", h, last)
			}
		})
	}
}

func TestDevchainRestartReconnects(t *testing.T) {
	dir := t.TempDir()
	cfg := devchain.Config{BlockPeriod: 100 * time.Millisecond, LoadAccounts: -1, DataDir: dir}
	dc, err := devchain.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := dc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dc.Stop(context.Background()) })
	httpURL, wsURL := dc.HTTPEndpoint(), dc.WSEndpoint()
	port, err := strconv.Atoi(httpURL[strings.LastIndex(httpURL, ":")+1:])
	if err != nil {
		t.Fatal(err)
	}

	type follower struct {
		name  string
		c     *Client
		logs  *lockedBuffer
		heads <-chan tempo.Head
	}
	var fs []*follower
	for _, u := range []struct{ name, url string }{{"ws", wsURL}, {"http", httpURL}} {
		logger, logs := testLogger(t)
		c := startClient(t, devClientConfig(u.url), logger)
		heads, unsub := c.SubscribeHeads()
		t.Cleanup(unsub)
		fs = append(fs, &follower{name: u.name, c: c, logs: logs, heads: heads})
	}
	alice := devkit.DemoAccounts()[0]
	for _, f := range fs {
		v := latestAt(t, f.c, 3)
		if a := balance(t, v, alice.Address); a != 15*devkit.Dollar {
			t.Fatalf("%s: alice %d", f.name, a)
		}
	}
	if err := dc.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	var before uint64
	for _, f := range fs {
		f := f
		testkit.Eventually(t, 10*time.Second, f.name+" to notice the node is gone", func() bool {
			return strings.Contains(f.logs.String(), "chain node unreachable")
		})
		h, _ := f.c.Head()
		before = max(before, h.Number)
		// Reads while the node is down fail as unavailable.
		v, err := f.c.Latest(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.BalanceOf(ctx, devkit.TokenAddress, common.Address{9}); !errors.Is(err, tempo.ErrChainUnavailable) {
			t.Fatalf("%s: read while down: %v", f.name, err)
		}
	}
	// Let the backoff grow a little, then bring the chain back on the same
	// directory and port.
	testkit.Eventually(t, 10*time.Second, "backoff to grow", func() bool {
		o, ok := fs[0].c.CurrentOutage()
		return ok && o.Attempts >= 3 // backoffs 50, 100, 200 ms
	})
	cfg.HTTPPort = port
	dc2 := testkit.StartDevChain(t, cfg)
	if dc2.HTTPEndpoint() != httpURL || dc2.WSEndpoint() != wsURL {
		t.Fatalf("restarted on %s / %s, want %s / %s", dc2.HTTPEndpoint(), dc2.WSEndpoint(), httpURL, wsURL)
	}
	for _, f := range fs {
		f := f
		testkit.Eventually(t, 20*time.Second, f.name+" to resume heads past "+strconv.FormatUint(before, 10), func() bool {
			h, ok := f.c.Head()
			return ok && h.Number > before+2
		})
		if !strings.Contains(f.logs.String(), "chain node reachable again") {
			t.Fatalf("%s: no recovery log:\n%s", f.name, f.logs)
		}
		// Heads flow to subscribers again.
		deadline := time.After(10 * time.Second)
	drain:
		for {
			select {
			case h := <-f.heads:
				if h.Number > before+2 {
					break drain
				}
			case <-deadline:
				t.Fatalf("%s: subscriber got no head after the restart", f.name)
			}
		}
		v := latestAt(t, f.c, before+1)
		if a := balance(t, v, alice.Address); a != 15*devkit.Dollar {
			t.Fatalf("%s: alice %d after restart", f.name, a)
		}
	}
	testkit.Eventually(t, 10*time.Second, "ws client back on its subscription", func() bool { return fs[0].c.Mode() == ModeSubscription })
}

// The validator set is read at a block: the genesis set, then the set after
// the owner added a validator and deactivated another, while the earlier
// block still answers the earlier set.
func TestDevchainValidators(t *testing.T) {
	genesis := []tempo.Validator{
		{PublicKey: [32]byte{1}, Active: true, ValidatorAddress: common.HexToAddress("0x01"), InboundAddress: "10.0.0.1:4000", OutboundAddress: "10.0.0.1"},
		{PublicKey: [32]byte{2}, Active: true, ValidatorAddress: common.HexToAddress("0x02"), InboundAddress: "10.0.0.2:4000", OutboundAddress: "10.0.0.2"},
	}
	dc := testkit.StartDevChain(t, devchain.Config{BlockPeriod: 200 * time.Millisecond, LoadAccounts: -1, Validators: genesis})
	c := startClient(t, devClientConfig(dc.WSEndpoint()), nil)
	ctx := context.Background()
	before := latestAt(t, c, 1).Head().Number
	got, err := c.Validators(ctx, before)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].PublicKey != genesis[1].PublicKey || got[1].Index != 1 || !got[0].Active || got[0].InboundAddress != "10.0.0.1:4000" {
		t.Fatalf("genesis set %+v", got)
	}

	owner := devkit.ValidatorConfigOwner()
	added := tempo.Validator{PublicKey: [32]byte{3}, Active: true, ValidatorAddress: common.HexToAddress("0x03"), InboundAddress: "10.0.0.3:4000"}
	addData, err := tempo.AddValidatorCalldata(added)
	if err != nil {
		t.Fatal(err)
	}
	var last *Receipt
	for i, data := range [][]byte{addData, tempo.ChangeValidatorStatusCalldata(genesis[0].ValidatorAddress, false)} {
		tx, err := devkit.SignCall(owner.Key, uint64(i), tempo.ValidatorConfigAddress, data, dc.ChainID(), 0, devkit.Fees{})
		if err != nil {
			t.Fatal(err)
		}
		raw, err := tx.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.SendRawTransaction(ctx, raw); err != nil {
			t.Fatal(err)
		}
		if last = waitReceipt(t, c, tx.Hash()); !last.Succeeded() {
			t.Fatalf("owner call %d failed: %+v", i, last)
		}
	}
	after, err := c.Validators(ctx, last.BlockNumber)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 3 || after[0].Active || !after[1].Active || after[2].PublicKey != added.PublicKey || after[2].Index != 2 {
		t.Fatalf("set after the owner's calls %+v", after)
	}
	if again, err := c.Validators(ctx, before); err != nil || len(again) != 2 || !again[0].Active {
		t.Fatalf("set at block %d read again: %+v %v", before, again, err)
	}
}
