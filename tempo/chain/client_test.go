package chain

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/tempo"
)

var (
	testToken  = common.HexToAddress("0x20c0000000000000000000000000000000000001")
	testHolder = common.HexToAddress("0x00000000000000000000000000000000000a11ce")
)

func fakeConfig(f *fakeNode) Config {
	return Config{
		URL:             f.url(),
		ExpectedChainID: 42431,
		PollInterval:    50 * time.Millisecond,
		RequestTimeout:  2 * time.Second,
		BackoffMin:      20 * time.Millisecond,
		BackoffMax:      200 * time.Millisecond,
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{URL: "ws://127.0.0.1:8546", ExpectedChainID: 1337}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	d := ok.WithDefaults()
	if d.PollInterval != 500*time.Millisecond || d.RequestTimeout != 5*time.Second || d.BackoffMin != 500*time.Millisecond ||
		d.BackoffMax != 30*time.Second || d.CacheBlocks != 16 {
		t.Fatalf("defaults %+v", d)
	}
	bad := map[string]Config{
		"url":               {ExpectedChainID: 1},
		"scheme":            {URL: "ftp://x", ExpectedChainID: 1},
		"expected_chain_id": {URL: "http://127.0.0.1:1"},
		"poll_interval":     {URL: "http://127.0.0.1:1", ExpectedChainID: 1, PollInterval: time.Microsecond},
		"request_timeout":   {URL: "http://127.0.0.1:1", ExpectedChainID: 1, RequestTimeout: time.Microsecond},
		"backoff_max":       {URL: "http://127.0.0.1:1", ExpectedChainID: 1, BackoffMin: time.Second, BackoffMax: time.Millisecond},
		"cache_blocks":      {URL: "http://127.0.0.1:1", ExpectedChainID: 1, CacheBlocks: 1 << 20},
	}
	for field, cfg := range bad {
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: err = %v", field, err)
		}
		if _, err := New(cfg, nil); err == nil {
			t.Errorf("%s: New accepted it", field)
		}
	}
}

func TestMetricsOnOwnRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := Config{URL: "http://127.0.0.1:1", ExpectedChainID: 1, Registerer: reg}
	if _, err := New(cfg, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Fatalf("second client on one registry: %v", err)
	}
	cfg.Registerer = prometheus.WrapRegistererWithPrefix("second_", reg)
	if _, err := New(cfg, nil); err != nil {
		t.Fatalf("wrapped registerer: %v", err)
	}
}

func TestTempoShapedResponses(t *testing.T) {
	f := newFakeNode(t)
	receipt := `{"type":"0x76","status":"0x1","cumulativeGasUsed":"0x1d4c0",
	  "logs":[{"address":"0x20c0000000000000000000000000000000000001",
	    "topics":["0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef","0x00000000000000000000000000000000000000000000000000000000000a11ce","0x0000000000000000000000000000000000000000000000000000000000000b0b"],
	    "data":"0x00000000000000000000000000000000000000000000000000000000000f4240","blockNumber":"0x10",
	    "transactionHash":"0x4444444444444444444444444444444444444444444444444444444444444444","transactionIndex":"0x0",
	    "blockHash":"0x8f5bab218b6bb34476f51ca588e9f4553a3a7ce5e13a66c660a5283e97e9a85a","blockTimestamp":"0x6925a3c0","logIndex":"0x3","removed":false}],
	  "logsBloom":"0x` + zeros512 + `",
	  "transactionHash":"0x4444444444444444444444444444444444444444444444444444444444444444","transactionIndex":"0x0",
	  "blockHash":"0x8f5bab218b6bb34476f51ca588e9f4553a3a7ce5e13a66c660a5283e97e9a85a","blockNumber":"0x10",
	  "gasUsed":"0x1d4c0","effectiveGasPrice":"0x4a817c800","from":"0x00000000000000000000000000000000000a11ce",
	  "to":"0x20c0000000000000000000000000000000000001","contractAddress":null,
	  "feeToken":"0x20c0000000000000000000000000000000000001","feePayer":"0x000000000000000000000000000000000000fee5"}`
	f.answer("eth_getTransactionReceipt", receipt)
	f.answer("eth_sendRawTransaction", `"0x4444444444444444444444444444444444444444444444444444444444444444"`)
	f.handle("eth_call", func(params []json.RawMessage) fakeAnswer {
		var call struct {
			To   common.Address `json:"to"`
			Data string         `json:"data"`
		}
		_ = json.Unmarshal(params[0], &call)
		if call.To == NoncePrecompile {
			return fakeAnswer{result: `"0x0000000000000000000000000000000000000000000000000000000000000007"`}
		}
		return fakeAnswer{result: `"0x00000000000000000000000000000000000000000000000000000000000f4240"`} // 1,000,000
	})
	f.answer("eth_getTransactionCount", `"0x2a"`)

	reg := prometheus.NewRegistry()
	cfg := fakeConfig(f)
	cfg.Registerer = reg
	c := startClient(t, cfg, nil)
	if c.ChainID() != 42431 {
		t.Fatalf("chain id %d", c.ChainID())
	}
	h, ok := c.Head()
	wantHash := common.HexToHash("0x8f5bab218b6bb34476f51ca588e9f4553a3a7ce5e13a66c660a5283e97e9a85a")
	if !ok || h.Number != 16 || h.Hash != wantHash || h.UnixMillis != 0x6925a3c0*1000+500 {
		t.Fatalf("head %+v %v", h, ok)
	}
	testkit.Eventually(t, 5*time.Second, "polling mode over http", func() bool { return c.Mode() == ModePolling })

	ctx := context.Background()
	v, err := c.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bal, err := v.BalanceOf(ctx, testToken, testHolder)
	if err != nil || bal.Int64() != 1_000_000 {
		t.Fatalf("balance %v, %v", bal, err)
	}
	calls := f.calls("eth_call")
	if len(calls) != 1 || len(calls[0].Params) != 2 || string(calls[0].Params[1]) != `"0x10"` {
		t.Fatalf("eth_call params %+v", calls)
	}
	var sent struct {
		To   common.Address `json:"to"`
		Data string         `json:"data"`
	}
	_ = json.Unmarshal(calls[0].Params[0], &sent)
	if sent.To != testToken || sent.Data != "0x70a08231"+"000000000000000000000000"+hex.EncodeToString(testHolder.Bytes()) {
		t.Fatalf("balanceOf call %+v", sent)
	}

	// Key 0: the protocol nonce at the view's block.
	n, err := v.NonceOf(ctx, testHolder, [32]byte{})
	if err != nil || n != 42 {
		t.Fatalf("nonce %d, %v", n, err)
	}
	tc := f.calls("eth_getTransactionCount")
	if len(tc) != 1 || string(tc[0].Params[0]) != `"`+strings.ToLower(testHolder.Hex())+`"` || string(tc[0].Params[1]) != `"0x10"` {
		t.Fatalf("eth_getTransactionCount params %s %s", tc[0].Params[0], tc[0].Params[1])
	}

	// Any other key: getNonce(address,uint256) on the precompile, encoded exactly.
	var key [32]byte
	key[0], key[31] = 0xab, 0x05
	n, err = v.NonceOf(ctx, testHolder, key)
	if err != nil || n != 7 {
		t.Fatalf("2D nonce %d, %v", n, err)
	}
	calls = f.calls("eth_call")
	if len(calls) != 2 {
		t.Fatalf("%d eth_calls", len(calls))
	}
	_ = json.Unmarshal(calls[1].Params[0], &sent)
	wantData := "0x89535803" + "000000000000000000000000" + hex.EncodeToString(testHolder.Bytes()) + hex.EncodeToString(key[:])
	if sent.To != common.HexToAddress("0x4E4F4E4345000000000000000000000000000000") || sent.Data != wantData || string(calls[1].Params[1]) != `"0x10"` {
		t.Fatalf("getNonce call to %s data %s block %s, want data %s", sent.To, sent.Data, calls[1].Params[1], wantData)
	}

	// Repeated reads come from the cache.
	for i := 0; i < 3; i++ {
		if _, err := v.BalanceOf(ctx, testToken, testHolder); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.calls("eth_call")) != 2 {
		t.Fatalf("cached reads reached the node: %d eth_calls", len(f.calls("eth_call")))
	}
	if hits := counterValue(t, reg, "allegro_chain_state_cache_total", map[string]string{"result": "hit"}); hits != 3 {
		t.Fatalf("cache hits %v", hits)
	}
	if ok := counterValue(t, reg, "allegro_chain_rpc_requests_total", map[string]string{"method": "eth_call", "outcome": "ok"}); ok != 2 {
		t.Fatalf("eth_call ok count %v", ok)
	}

	// Tempo receipt with extra fields.
	txHash := common.HexToHash("0x4444444444444444444444444444444444444444444444444444444444444444")
	r, err := c.TransactionReceipt(ctx, txHash)
	if err != nil {
		t.Fatal(err)
	}
	if r == nil || !r.Succeeded() || r.BlockNumber != 16 || r.BlockHash != wantHash || r.GasUsed != 0x1d4c0 || r.TxHash != txHash {
		t.Fatalf("receipt %+v", r)
	}
	if r.FeeToken == nil || *r.FeeToken != testToken || r.FeePayer == nil || *r.FeePayer != common.HexToAddress("0xfee5") {
		t.Fatalf("fee token/payer %v %v", r.FeeToken, r.FeePayer)
	}
	if len(r.Logs) != 1 || r.Logs[0].Address != testToken || len(r.Logs[0].Topics) != 3 || r.Logs[0].Index != 3 ||
		new(big.Int).SetBytes(r.Logs[0].Data).Int64() != 1_000_000 {
		t.Fatalf("logs %+v", r.Logs)
	}
	// Unknown receipt: null.
	f.answer("eth_getTransactionReceipt", `null`)
	if r, err := c.TransactionReceipt(ctx, txHash); r != nil || err != nil {
		t.Fatalf("unknown receipt: %v, %v", r, err)
	}
	// A receipt for another transaction is an error, not a wrong answer.
	f.answer("eth_getTransactionReceipt", receipt)
	if _, err := c.TransactionReceipt(ctx, common.Hash{1}); !errors.Is(err, tempo.ErrChainUnavailable) {
		t.Fatalf("mismatched receipt: %v", err)
	}

	got, err := c.SendRawTransaction(ctx, []byte{0x76, 0xc0})
	if err != nil || got != txHash {
		t.Fatalf("send: %s, %v", got, err)
	}
	if p := f.calls("eth_sendRawTransaction"); len(p) != 1 || string(p[0].Params[0]) != `"0x76c0"` {
		t.Fatalf("sendRawTransaction params %+v", p)
	}
	f.answer("eth_sendRawTransaction", "") // replaced below
	f.handle("eth_sendRawTransaction", func([]json.RawMessage) fakeAnswer {
		return fakeAnswer{err: `{"code":-32000,"message":"nonce too low: next nonce 5, tx nonce 4"}`}
	})
	if _, err := c.SendRawTransaction(ctx, []byte{0x76, 0xc0}); !errors.Is(err, ErrTxRejected) || errors.Is(err, tempo.ErrChainUnavailable) || !strings.Contains(err.Error(), "nonce too low") {
		t.Fatalf("rejected send: %v", err)
	}
}

func TestHeaderMillisVariants(t *testing.T) {
	base := `{"number":"0x5","hash":"0x0000000000000000000000000000000000000000000000000000000000000001","timestamp":"0x64"`
	cases := map[string]uint64{
		base + `}`:                                    100_000,
		base + `,"timestampMillis":"0x186db"}`:        100_059, // 100059 ms agrees with 100 s
		base + `,"timestampMillis":"0x1"}`:            100_000, // disagrees: ignored
		base + `,"timestampMillisPart":"0x3e7"}`:      100_999,
		base + `,"timestampMillisPart":"0x3e8"}`:      100_000, // out of range: ignored
		base + `,"sharedGasLimit":"0x1","extra":[1]}`: 100_000,
	}
	for raw, want := range cases {
		h, err := parseHeader(json.RawMessage(raw))
		if err != nil || h.UnixMillis != want || h.Number != 5 {
			t.Errorf("%s: %+v, %v (want %d ms)", raw, h, err, want)
		}
	}
	for _, raw := range []string{`null`, `{}`, `{"number":"0x5","timestamp":"0x1"}`, `{"number":"5","hash":"0x00","timestamp":"0x1"}`, `[1]`} {
		if _, err := parseHeader(json.RawMessage(raw)); err == nil {
			t.Errorf("%s accepted", raw)
		}
	}
}

func TestBadAnswersNeverGiveWrongBalance(t *testing.T) {
	cases := []struct {
		name   string
		answer fakeAnswer
		want   string // substring of the error
	}{
		{"malformed JSON", fakeAnswer{body: `{"jsonrpc":"2.0","id":1,"result":"0x00`}, ""},
		{"not JSON at all", fakeAnswer{body: `<html>bad gateway</html>`}, ""},
		{"non-hex balance", fakeAnswer{result: `"0xzz00000000000000000000000000000000000000000000000000000000000001"`}, "malformed"},
		{"no 0x prefix", fakeAnswer{result: `"00000000000000000000000000000000000000000000000000000000000f4240"`}, "malformed"},
		{"short result", fakeAnswer{result: `"0x0f4240"`}, "want 32 bytes"},
		{"long result", fakeAnswer{result: `"0x` + strings.Repeat("00", 33) + `"`}, "want 32 bytes"},
		{"empty result", fakeAnswer{result: `"0x"`}, "want 32 bytes"},
		{"null result", fakeAnswer{result: `null`}, "malformed"},
		{"number result", fakeAnswer{result: `1000000`}, "malformed"},
		{"missing result", fakeAnswer{body: `{"jsonrpc":"2.0","id":1}`}, ""},
		{"node error", fakeAnswer{err: `{"code":-32000,"message":"header not found"}`}, "header not found"},
		{"http 502", fakeAnswer{status: 502, body: `bad gateway`}, "502"},
		{"hang", fakeAnswer{hang: true}, "no answer in time"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeNode(t)
			var mu sync.Mutex
			broken := false
			f.handle("eth_call", func([]json.RawMessage) fakeAnswer {
				mu.Lock()
				defer mu.Unlock()
				if broken {
					return tc.answer
				}
				return fakeAnswer{result: `"0x00000000000000000000000000000000000000000000000000000000000f4240"`}
			})
			cfg := fakeConfig(f)
			cfg.RequestTimeout = 300 * time.Millisecond
			cfg.CacheBlocks = -1 // every read reaches the node
			c := startClient(t, cfg, nil)
			ctx := context.Background()
			v, err := c.Latest(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if b, err := v.BalanceOf(ctx, testToken, testHolder); err != nil || b.Int64() != 1_000_000 {
				t.Fatalf("healthy balance %v, %v", b, err)
			}
			mu.Lock()
			broken = true
			mu.Unlock()
			start := time.Now()
			b, err := v.BalanceOf(ctx, testToken, testHolder)
			if b != nil || err == nil {
				t.Fatalf("got balance %v, err %v", b, err)
			}
			if !errors.Is(err, tempo.ErrChainUnavailable) {
				t.Fatalf("error %v does not wrap ErrChainUnavailable", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q lacks %q", err, tc.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("took %v, not bounded by RequestTimeout", d)
			}
			// The same failures on a 2D nonce read.
			var key [32]byte
			key[31] = 1
			if n, err := v.NonceOf(ctx, testHolder, key); err == nil || !errors.Is(err, tempo.ErrChainUnavailable) {
				t.Fatalf("nonce %d, %v", n, err)
			}
		})
	}
}

func TestRevertIsNotUnavailable(t *testing.T) {
	f := newFakeNode(t)
	f.handle("eth_call", func([]json.RawMessage) fakeAnswer {
		return fakeAnswer{err: `{"code":3,"message":"execution reverted","data":"0x"}`}
	})
	c := startClient(t, fakeConfig(f), nil)
	v, _ := c.Latest(context.Background())
	_, err := v.BalanceOf(context.Background(), testToken, testHolder)
	if !errors.Is(err, ErrCallReverted) || errors.Is(err, tempo.ErrChainUnavailable) {
		t.Fatalf("revert: %v", err)
	}
}

func TestNonceTooLargeForU64(t *testing.T) {
	f := newFakeNode(t)
	f.answer("eth_call", `"0x0000000000000000000000000000000000000000000000010000000000000000"`)
	f.answer("eth_getTransactionCount", `"0x10000000000000000"`)
	c := startClient(t, fakeConfig(f), nil)
	v, _ := c.Latest(context.Background())
	if n, err := v.NonceOf(context.Background(), testHolder, [32]byte{31: 1}); !errors.Is(err, tempo.ErrChainUnavailable) {
		t.Fatalf("2D nonce %d, %v", n, err)
	}
	if n, err := v.NonceOf(context.Background(), testHolder, [32]byte{}); !errors.Is(err, tempo.ErrChainUnavailable) {
		t.Fatalf("nonce %d, %v", n, err)
	}
}

func TestWrongChainIDAtStart(t *testing.T) {
	f := newFakeNode(t)
	f.answer("eth_chainId", `"0x1079"`) // 4217, mainnet
	c, err := New(fakeConfig(f), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = c.Start(ctx)
	if !errors.Is(err, ErrChainIDMismatch) || errors.Is(err, tempo.ErrChainUnavailable) {
		t.Fatalf("start: %v", err)
	}
	if !strings.Contains(err.Error(), "4217") || !strings.Contains(err.Error(), "42431") {
		t.Fatalf("message %q should name both ids", err)
	}
	if _, err := c.Latest(ctx); !errors.Is(err, tempo.ErrChainUnavailable) {
		t.Fatalf("Latest on a client that never started: %v", err)
	}
	_ = c.Stop(ctx)
}

// TestStartUnreachableGivesUp: Start retries an unreachable node until its
// context ends, and says so with the URL at the first failure, then once per
// ReportInterval with the attempts so far, not at every retry.
func TestStartUnreachableGivesUp(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	for _, url := range []string{"http://" + addr, "ws://" + addr} {
		logger, logs := testLogger(t)
		c, err := New(Config{URL: url, ExpectedChainID: 1337, BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond,
			ReportInterval: 150 * time.Millisecond}, logger)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-c.Unreachable():
			t.Fatal("unreachable before any attempt")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
		err = c.Start(ctx)
		cancel()
		if !errors.Is(err, tempo.ErrChainUnavailable) {
			t.Fatalf("%s: start: %v", url, err)
		}
		<-c.Unreachable()
		o, ok := c.CurrentOutage()
		if !ok || o.URL != url || o.LastErr == nil {
			t.Fatalf("%s: outage %+v %v", url, o, ok)
		}
		reports := strings.Count(logs.String(), "chain node unreachable")
		if !strings.Contains(logs.String(), "url="+url) || !strings.Contains(logs.String(), "attempts=1 ") {
			t.Fatalf("%s: the first failure is not logged with the URL:\n%s", url, logs)
		}
		// About 400/15 attempts, reported at 0 ms and every 150 ms after.
		if reports < 2 || reports > 4 || o.Attempts < 3*reports {
			t.Fatalf("%s: %d reports of %d attempts, want one per 150 ms:\n%s", url, reports, o.Attempts, logs)
		}
	}
}

// TestOutageReportedDuringLongBackoff: a backoff longer than the report
// interval does not silence the outage.
func TestOutageReportedDuringLongBackoff(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close()
	logger, logs := testLogger(t)
	c, err := New(Config{URL: url, ExpectedChainID: 1337, BackoffMin: time.Second, BackoffMax: time.Second, ReportInterval: 100 * time.Millisecond}, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 550*time.Millisecond)
	defer cancel()
	if err := c.Start(ctx); !errors.Is(err, tempo.ErrChainUnavailable) {
		t.Fatalf("start: %v", err)
	}
	o, _ := c.CurrentOutage()
	// One attempt, reported at once and about every 100 ms of its backoff.
	if reports := strings.Count(logs.String(), "chain node unreachable"); o.Attempts != 1 || reports < 3 || reports > 7 {
		t.Fatalf("%d reports of %d attempts in 550 ms:\n%s", reports, o.Attempts, logs)
	}
}

func TestHangingNodeBoundedAndSingleflight(t *testing.T) {
	f := newFakeNode(t)
	var mu sync.Mutex
	release := make(chan struct{})
	f.handle("eth_call", func([]json.RawMessage) fakeAnswer {
		<-release
		mu.Lock()
		defer mu.Unlock()
		return fakeAnswer{result: `"0x00000000000000000000000000000000000000000000000000000000000f4240"`}
	})
	reg := prometheus.NewRegistry()
	cfg := fakeConfig(f)
	cfg.Registerer = reg
	c := startClient(t, cfg, nil)
	v, _ := c.Latest(context.Background())

	// A burst of identical reads becomes one request.
	const burst = 50
	var wg sync.WaitGroup
	errs := make(chan error, burst)
	for i := 0; i < burst; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := v.BalanceOf(context.Background(), testToken, testHolder)
			if err == nil && b.Int64() != 1_000_000 {
				err = errors.New("wrong balance " + b.String())
			}
			errs <- err
		}()
	}
	testkit.Eventually(t, 5*time.Second, "the first eth_call to arrive", func() bool { return len(f.calls("eth_call")) >= 1 })
	// Give the other goroutines time to join the flight; they must not
	// produce further requests either way.
	testkit.Eventually(t, 5*time.Second, "all readers to join", func() bool {
		return counterValue(t, reg, "allegro_chain_state_cache_total", map[string]string{"result": "miss"}) == 1
	})
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := len(f.calls("eth_call")); n != 1 {
		t.Fatalf("%d eth_calls for a burst of %d identical reads", n, burst)
	}

	// A caller with a short deadline is not held by a hanging node.
	f.handle("eth_call", func([]json.RawMessage) fakeAnswer { return fakeAnswer{hang: true} })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := v.BalanceOf(ctx, testToken, common.Address{7})
	if !errors.Is(err, tempo.ErrChainUnavailable) || !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Fatalf("short deadline: %v after %v", err, time.Since(start))
	}
}

func TestSlowSubscriberDrops(t *testing.T) {
	f := newFakeNode(t)
	var mu sync.Mutex
	number := 16
	block := func([]json.RawMessage) fakeAnswer {
		mu.Lock()
		defer mu.Unlock()
		return fakeAnswer{result: strings.Replace(tempoBlock, `"number":"0x10"`, `"number":"0x`+big.NewInt(int64(number)).Text(16)+`"`, 1)}
	}
	f.handle("eth_getBlockByNumber", block)
	f.handle("eth_blockNumber", func([]json.RawMessage) fakeAnswer {
		mu.Lock()
		defer mu.Unlock()
		return fakeAnswer{result: `"0x` + big.NewInt(int64(number)).Text(16) + `"`}
	})
	cfg := fakeConfig(f)
	cfg.PollInterval = 10 * time.Millisecond
	cfg.HeadBuffer = 2
	c := startClient(t, cfg, nil)
	slow, cancelSlow := c.SubscribeHeads()
	defer cancelSlow()
	fast, cancelFast := c.SubscribeHeads()
	var got []uint64
	for i := 0; i < 10; i++ {
		mu.Lock()
		number++
		want := uint64(number)
		mu.Unlock()
		deadline := time.After(5 * time.Second)
	wait:
		for {
			select {
			case h := <-fast:
				got = append(got, h.Number)
				if h.Number == want {
					break wait
				}
			case <-deadline:
				t.Fatalf("head %d not delivered", want)
			}
		}
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("heads out of order: %v", got)
		}
	}
	if c.HeadDrops() == 0 {
		t.Fatal("slow subscriber's drops not counted")
	}
	if len(slow) != 2 {
		t.Fatalf("slow subscriber buffer holds %d", len(slow))
	}
	cancelFast()
	cancelFast() // idempotent
	if _, open := <-fast; open {
		// drain anything left; the channel must end closed
		for range fast {
		}
	}
}

func TestNodeSwitchingChainIsNotRead(t *testing.T) {
	f := newFakeNode(t)
	f.answer("eth_call", `"0x00000000000000000000000000000000000000000000000000000000000f4240"`)
	logger, logs := testLogger(t)
	cfg := fakeConfig(f)
	cfg.CacheBlocks = -1
	c := startClient(t, cfg, logger)
	ctx := context.Background()
	v, _ := c.Latest(ctx)
	if _, err := v.BalanceOf(ctx, testToken, testHolder); err != nil {
		t.Fatal(err)
	}
	// The node goes away and comes back serving another chain.
	f.handle("eth_blockNumber", func([]json.RawMessage) fakeAnswer { return fakeAnswer{status: 502, body: "down"} })
	f.answer("eth_chainId", `"0x1"`)
	testkit.Eventually(t, 5*time.Second, "the mismatch to be noticed", func() bool {
		return strings.Contains(logs.String(), "chain node now serves another chain")
	})
	f.answer("eth_blockNumber", `"0x10"`)
	if v, err := c.Latest(ctx); !errors.Is(err, tempo.ErrChainUnavailable) || !errors.Is(err, ErrChainIDMismatch) {
		t.Fatalf("view of a node on another chain: %v, %v", v, err)
	}
	// Back on the right chain: reads resume.
	f.answer("eth_chainId", `"0xa5bf"`)
	testkit.Eventually(t, 5*time.Second, "recovery", func() bool {
		v, err := c.Latest(ctx)
		if err != nil {
			return false
		}
		b, err := v.BalanceOf(ctx, testToken, testHolder)
		return err == nil && b.Int64() == 1_000_000
	})
	// The recovery is logged by the goroutine that noticed it, which may
	// finish just after a read has already succeeded.
	testkit.Eventually(t, 5*time.Second, "the recovery log line", func() bool {
		return strings.Contains(logs.String(), "chain node reachable again")
	})
}

// otherGenesis is tempoBlock with another hash: block 0 of another chain
// with the same chain id.
var otherGenesis = strings.Replace(tempoBlock, "0x8f5bab218b6bb34476f51ca588e9f4553a3a7ce5e13a66c660a5283e97e9a85a",
	"0x1111111111111111111111111111111111111111111111111111111111111111", 1)

// TestGenesisPinned: the client pins the genesis block it first sees; a
// node that comes back with the same chain id but another genesis (a
// development chain reset behind the same URL) is not read from, and
// Latest says why. A configured ExpectedGenesis is checked at Start.
func TestGenesisPinned(t *testing.T) {
	f := newFakeNode(t)
	f.answer("eth_call", `"0x00000000000000000000000000000000000000000000000000000000000f4240"`)
	logger, logs := testLogger(t)
	cfg := fakeConfig(f)
	cfg.CacheBlocks = -1
	c := startClient(t, cfg, logger)
	ctx := context.Background()
	g, ok := c.Genesis()
	if !ok || g != common.HexToHash("0x8f5bab218b6bb34476f51ca588e9f4553a3a7ce5e13a66c660a5283e97e9a85a") {
		t.Fatalf("genesis %s %v", g, ok)
	}
	f.handle("eth_blockNumber", func([]json.RawMessage) fakeAnswer { return fakeAnswer{status: 502, body: "down"} })
	f.answer("eth_getBlockByNumber", otherGenesis)
	testkit.Eventually(t, 5*time.Second, "the reset chain to be noticed", func() bool {
		return strings.Contains(logs.String(), "chain node now serves another chain")
	})
	f.answer("eth_blockNumber", `"0x10"`)
	_, err := c.Latest(ctx)
	if !errors.Is(err, tempo.ErrChainUnavailable) || !errors.Is(err, ErrGenesisMismatch) || !strings.Contains(err.Error(), "0x1111") {
		t.Fatalf("Latest on a reset chain: %v", err)
	}
	f.answer("eth_getBlockByNumber", tempoBlock)
	testkit.Eventually(t, 5*time.Second, "recovery", func() bool {
		v, err := c.Latest(ctx)
		if err != nil {
			return false
		}
		b, err := v.BalanceOf(ctx, testToken, testHolder)
		return err == nil && b.Int64() == 1_000_000
	})

	// A client told which genesis to expect refuses another at Start.
	cfg.ExpectedGenesis = common.HexToHash("0x1111111111111111111111111111111111111111111111111111111111111111")
	c2, err := New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c2.Start(sctx); !errors.Is(err, ErrGenesisMismatch) {
		t.Fatalf("Start with another expected genesis: %v", err)
	}
}
