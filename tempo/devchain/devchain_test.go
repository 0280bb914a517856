package devchain

import (
	"context"
	"errors"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/allegro-mesh/allegro/tempo/devkit"
)

func startChain(t *testing.T, cfg Config) *Chain {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return c
}

func tokenBalance(t *testing.T, ctx context.Context, ec *ethclient.Client, holder common.Address) uint64 {
	t.Helper()
	token := devkit.TokenAddress
	out, err := ec.CallContract(ctx, ethereum.CallMsg{To: &token, Data: devkit.BalanceOfCalldata(holder)}, nil)
	if err != nil {
		t.Fatalf("balanceOf: %v", err)
	}
	if len(out) != 32 {
		t.Fatalf("balanceOf returned %d bytes", len(out))
	}
	return new(big.Int).SetBytes(out).Uint64()
}

// waitReceipt polls for a receipt until the deadline.
func waitReceipt(t *testing.T, ctx context.Context, ec *ethclient.Client, hash common.Hash) *types.Receipt {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
		r, err := ec.TransactionReceipt(ctx, hash)
		if err == nil {
			return r
		}
		// Right after a start geth may still be indexing transactions.
		if !errors.Is(err, ethereum.NotFound) && !strings.Contains(err.Error(), "indexing is in progress") {
			t.Fatalf("receipt: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not a wait for an event
	}
	t.Fatalf("no receipt for %s before the deadline", hash)
	return nil
}

// transfer sends a token transfer with an estimated gas limit and returns the
// receipt.
func transfer(t *testing.T, ctx context.Context, ec *ethclient.Client, chainID *big.Int, from devkit.Account, to common.Address, amount uint64) *types.Receipt {
	t.Helper()
	nonce, err := ec.PendingNonceAt(ctx, from.Address)
	if err != nil {
		t.Fatal(err)
	}
	token := devkit.TokenAddress
	amt := new(big.Int).SetUint64(amount)
	gas, err := ec.EstimateGas(ctx, ethereum.CallMsg{From: from.Address, To: &token, Data: devkit.TransferCalldata(to, amt)})
	if err != nil {
		t.Fatalf("estimate: %v", err)
	}
	if gas > devkit.DefaultTransferGas {
		t.Fatalf("estimated gas %d above devkit.DefaultTransferGas", gas)
	}
	tx, err := devkit.SignTransfer(from.Key, nonce, to, amt, chainID, gas*12/10, devkit.Fees{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ec.SendTransaction(ctx, tx); err != nil {
		t.Fatalf("send: %v", err)
	}
	return waitReceipt(t, ctx, ec, tx.Hash())
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	d := Config{}.WithDefaults()
	if d.ChainID != 1337 || d.BlockPeriod != time.Second || d.Host != "127.0.0.1" || d.LoadAccounts != 64 || d.GasLimit != 60_000_000 {
		t.Fatalf("defaults %+v", d)
	}
	for field, cfg := range map[string]Config{
		"BlockPeriod": {BlockPeriod: time.Millisecond},
		"Host":        {Host: "not a host"},
		"HTTPPort":    {HTTPPort: 70000},
		"WSPort":      {WSPort: -1},
		"GasLimit":    {GasLimit: 10},
	} {
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: err = %v", field, err)
		}
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted a bad config", field)
		}
	}
}

func TestChainTransferAndHeads(t *testing.T) {
	c := startChain(t, Config{BlockPeriod: 250 * time.Millisecond, LoadAccounts: 2})
	if !strings.HasPrefix(c.HTTPEndpoint(), "http://127.0.0.1:") || !strings.HasPrefix(c.WSEndpoint(), "ws://127.0.0.1:") {
		t.Fatalf("endpoints %q %q", c.HTTPEndpoint(), c.WSEndpoint())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	ec, err := ethclient.DialContext(ctx, c.HTTPEndpoint())
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	id, err := ec.ChainID(ctx)
	if err != nil || id.Uint64() != 1337 {
		t.Fatalf("chain id %v, %v", id, err)
	}

	accts := c.Accounts()
	if len(accts) != 5 {
		t.Fatalf("%d accounts, want 3 demo + 2 load", len(accts))
	}
	alice, bob := accts[0], accts[1]
	if got := tokenBalance(t, ctx, ec, alice.Address); got != 15*devkit.Dollar {
		t.Fatalf("alice = %d", got)
	}
	if got := tokenBalance(t, ctx, ec, accts[3].Address); got != devkit.LoadTokens {
		t.Fatalf("load-0 = %d", got)
	}
	eth, err := ec.BalanceAt(ctx, alice.Address, nil)
	if err != nil || eth.Cmp(devkit.GenesisEther) != 0 {
		t.Fatalf("alice ETH %v, %v", eth, err)
	}

	// WebSocket newHeads.
	ws, err := ethclient.DialContext(ctx, c.WSEndpoint())
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	heads := make(chan *types.Header, 64)
	sub, err := ws.SubscribeNewHead(ctx, heads)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	// A transfer to a fresh holder.
	dave := common.HexToAddress("0xda7e000000000000000000000000000000000004")
	r := transfer(t, ctx, ec, c.ChainID(), alice, dave, 4*devkit.Dollar)
	if r.Status != types.ReceiptStatusSuccessful {
		t.Fatalf("receipt status %d", r.Status)
	}
	if len(r.Logs) != 1 || r.Logs[0].Topics[0] != devkit.TransferEventTopic {
		t.Fatalf("receipt logs %+v", r.Logs)
	}
	t.Logf("transfer to a new holder used %d gas", r.GasUsed)
	// eth_getLogs works without the log index.
	logs, err := ec.FilterLogs(ctx, ethereum.FilterQuery{FromBlock: r.BlockNumber, ToBlock: r.BlockNumber, Addresses: []common.Address{devkit.TokenAddress}, Topics: [][]common.Hash{{devkit.TransferEventTopic}}})
	if err != nil || len(logs) != 1 || logs[0].TxHash != r.TxHash {
		t.Fatalf("eth_getLogs: %v, %+v", err, logs)
	}
	if a, d := tokenBalance(t, ctx, ec, alice.Address), tokenBalance(t, ctx, ec, dave); a != 11*devkit.Dollar || d != 4*devkit.Dollar {
		t.Fatalf("after transfer alice=%d dave=%d", a, d)
	}
	if n, err := ec.NonceAt(ctx, alice.Address, nil); err != nil || n != 1 {
		t.Fatalf("alice nonce %d, %v", n, err)
	}
	// An overdraft is mined and reverts.
	nonce, _ := ec.PendingNonceAt(ctx, bob.Address)
	tx, err := devkit.SignTransfer(bob.Key, nonce, dave, big.NewInt(6*devkit.Dollar), c.ChainID(), 0, devkit.Fees{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ec.SendTransaction(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if r := waitReceipt(t, ctx, ec, tx.Hash()); r.Status != types.ReceiptStatusFailed {
		t.Fatalf("overdraft status %d, want failed", r.Status)
	}
	if b := tokenBalance(t, ctx, ec, bob.Address); b != 5*devkit.Dollar {
		t.Fatalf("bob = %d after the reverted overdraft", b)
	}

	// Heads arrive in order, one block at a time.
	var last uint64
	for i := 0; i < 4; i++ {
		select {
		case h := <-heads:
			n := h.Number.Uint64()
			if last != 0 && n != last+1 {
				t.Fatalf("head %d after %d", n, last)
			}
			last = n
		case err := <-sub.Err():
			t.Fatalf("subscription: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("no head %d within 10s", i)
		}
	}
	if c.BlockNumber() < last {
		t.Fatalf("BlockNumber %d behind head %d", c.BlockNumber(), last)
	}
}

func TestChainRestartOnDataDir(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{BlockPeriod: 200 * time.Millisecond, LoadAccounts: -1, DataDir: dir}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	if err := c.Start(ctx); err == nil {
		t.Fatal("second Start succeeded")
	}
	ec, err := ethclient.DialContext(ctx, c.HTTPEndpoint())
	if err != nil {
		t.Fatal(err)
	}
	alice, carol := devkit.DemoAccounts()[0], devkit.DemoAccounts()[2]
	r := transfer(t, ctx, ec, c.ChainID(), alice, carol.Address, 1*devkit.Dollar)
	ec.Close()
	if r.Status != types.ReceiptStatusSuccessful {
		t.Fatal("transfer failed")
	}
	before := c.BlockNumber()
	oldHTTP, oldWS := c.HTTPEndpoint(), c.WSEndpoint()
	port, err := strconv.Atoi(oldHTTP[strings.LastIndex(oldHTTP, ":")+1:])
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if c.HTTPEndpoint() != "" {
		t.Fatal("endpoint reported while stopped")
	}

	// Start again on the same directory and port (a new Chain value, as
	// after a process restart).
	cfg.HTTPPort = port
	c2 := startChain(t, cfg)
	if c2.HTTPEndpoint() != oldHTTP || c2.WSEndpoint() != oldWS {
		t.Fatalf("endpoints %s %s after restart, want %s %s", c2.HTTPEndpoint(), c2.WSEndpoint(), oldHTTP, oldWS)
	}
	ec2, err := ethclient.DialContext(ctx, c2.HTTPEndpoint())
	if err != nil {
		t.Fatal(err)
	}
	defer ec2.Close()
	if got := tokenBalance(t, ctx, ec2, carol.Address); got != 6*devkit.Dollar {
		t.Fatalf("carol = %d after restart, want 6 dollars", got)
	}
	if n, err := ec2.NonceAt(ctx, alice.Address, nil); err != nil || n != 1 {
		t.Fatalf("alice nonce %d, %v after restart", n, err)
	}
	// The chain resumes from where it stopped and keeps producing blocks.
	deadline := time.Now().Add(15 * time.Second)
	for c2.BlockNumber() <= before+1 {
		if time.Now().After(deadline) {
			t.Fatalf("head %d did not pass %d after restart", c2.BlockNumber(), before+1)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	// And a transfer still works.
	if r := transfer(t, ctx, ec2, c2.ChainID(), carol, alice.Address, 6*devkit.Dollar); r.Status != types.ReceiptStatusSuccessful {
		t.Fatal("transfer after restart failed")
	}
}
