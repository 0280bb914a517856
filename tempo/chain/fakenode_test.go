package chain

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/allegro-mesh/allegro/internal/testkit"
)

// fakeNode is a scripted JSON-RPC server on 127.0.0.1. Each method answers
// with a handler returning the raw JSON of "result" or of "error"; body
// overrides the whole HTTP response.
type fakeNode struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	handlers map[string]fakeHandler
	requests []fakeRequest
	stop     chan struct{}
}

type fakeHandler func(params []json.RawMessage) fakeAnswer

type fakeAnswer struct {
	result string // raw JSON
	err    string // raw JSON of the error object
	body   string // when set, sent verbatim as the whole response body
	status int    // HTTP status when non-zero
	hang   bool   // never answer (until the client gives up)
	delay  time.Duration
}

type fakeRequest struct {
	Method string
	Params []json.RawMessage
}

func newFakeNode(t *testing.T) *fakeNode {
	t.Helper()
	f := &fakeNode{t: t, handlers: make(map[string]fakeHandler), stop: make(chan struct{})}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		close(f.stop)
		f.srv.Close()
	})
	// A healthy Tempo testnet node at block 0x10.
	f.answer("eth_chainId", `"0xa5bf"`)
	f.answer("eth_blockNumber", `"0x10"`)
	f.answer("eth_getBlockByNumber", tempoBlock)
	return f
}

func (f *fakeNode) url() string { return f.srv.URL }

func (f *fakeNode) handle(method string, h fakeHandler) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handlers[method] = h
}

func (f *fakeNode) answer(method, result string) {
	f.handle(method, func([]json.RawMessage) fakeAnswer { return fakeAnswer{result: result} })
}

func (f *fakeNode) calls(method string) []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeRequest
	for _, r := range f.requests {
		if r.Method == method {
			out = append(out, r)
		}
	}
	return out
}

func (f *fakeNode) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req struct {
		ID     json.RawMessage   `json:"id"`
		Method string            `json:"method"`
		Params []json.RawMessage `json:"params"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, "batch or bad request not scripted", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.requests = append(f.requests, fakeRequest{Method: req.Method, Params: req.Params})
	h := f.handlers[req.Method]
	f.mu.Unlock()
	a := fakeAnswer{err: fmt.Sprintf(`{"code":-32601,"message":"the method %s does not exist/is not available"}`, req.Method)}
	if h != nil {
		a = h(req.Params)
	}
	if a.hang {
		select { // until the client hangs up; bounded
		case <-r.Context().Done():
		case <-f.stop:
		case <-time.After(30 * time.Second):
		}
		return
	}
	if a.delay > 0 {
		select {
		case <-time.After(a.delay):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if a.status != 0 {
		w.WriteHeader(a.status)
	}
	switch {
	case a.body != "":
		_, _ = io.WriteString(w, a.body)
	case a.err != "":
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":%s}`, req.ID, a.err)
	default:
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":%s}`, req.ID, a.result)
	}
}

// A Tempo block as a Tempo node returns it (header fields, Tempo extras, a
// 0x76 transaction object the client must ignore).
var tempoBlock = `{
  "baseFeePerGas":"0x4a817c800","difficulty":"0x0","extraData":"0x","gasLimit":"0x1dcd6500","gasUsed":"0x5208",
  "hash":"0x8f5bab218b6bb34476f51ca588e9f4553a3a7ce5e13a66c660a5283e97e9a85a",
  "logsBloom":"0x` + zeros512 + `",
  "miner":"0x0000000000000000000000000000000000000000","mixHash":"0x0000000000000000000000000000000000000000000000000000000000000000",
  "nonce":"0x0000000000000000","number":"0x10","parentBeaconBlockRoot":"0x0000000000000000000000000000000000000000000000000000000000000000",
  "parentHash":"0x1111111111111111111111111111111111111111111111111111111111111111",
  "receiptsRoot":"0x2222222222222222222222222222222222222222222222222222222222222222",
  "requestsHash":"0xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  "sha3Uncles":"0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347","size":"0x3e8",
  "stateRoot":"0x3333333333333333333333333333333333333333333333333333333333333333",
  "timestamp":"0x6925a3c0","timestampMillisPart":"0x1f4",
  "mainBlockGeneralGasLimit":"0x1c9c380","sharedGasLimit":"0x2faf080","generalGasLimit":"0x1c9c380",
  "transactions":[{"type":"0x76","chainId":"0xa5bf","nonceKey":"0x5","nonce":"0x0","calls":[{"to":"0x20c0000000000000000000000000000000000001","value":"0x0","input":"0xa9059cbb"}],
    "feeToken":null,"signature":{"type":"secp256k1","r":"0x1","s":"0x2","yParity":"0x0"},"hash":"0x4444444444444444444444444444444444444444444444444444444444444444"}],
  "transactionsRoot":"0x5555555555555555555555555555555555555555555555555555555555555555",
  "uncles":[],"withdrawals":[],"withdrawalsRoot":"0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421"
}`

var zeros512 = strings.Repeat("0", 512)

// lockedBuffer collects log output from several goroutines.
type lockedBuffer = testkit.SyncBuffer

func testLogger(t *testing.T) (*slog.Logger, *lockedBuffer) {
	buf := &lockedBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// startClient creates and starts a client, stopping it at cleanup.
func startClient(t *testing.T, cfg Config, logger *slog.Logger) *Client {
	t.Helper()
	c, err := New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return c
}

// counterValue sums the samples of a counter family matching labels.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if matches(m, labels) && m.GetCounter() != nil {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func matches(m *dto.Metric, labels map[string]string) bool {
	for k, v := range labels {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k && lp.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
