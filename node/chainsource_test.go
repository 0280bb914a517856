package node_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"

	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/chain"
	"github.com/allegro-mesh/allegro/tempo/devchain"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// chainNet is a network whose committees come from the dev chain's
// ValidatorConfig: validator i has a consensus key (on chain) and a sidecar
// key bound to it by a binding file in the shared bindings directory.
type chainNet struct {
	t         *testing.T
	genesis   []string // binding files of the genesis set
	client    *chain.Client
	file      *committee.File
	consensus []ed25519.PrivateKey
	sidecar   []ed25519.PrivateKey
	dirs      []string
	bindings  string
	runners   []*node.Runner
	ownerTxs  uint64
	logs      map[int]slog.Handler // a runner's log handler, when a test reads its log
}

func testKey(tag string) ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	copy(seed, tag)
	return ed25519.NewKeyFromSeed(seed)
}

func validatorOf(k ed25519.PrivateKey, i int) tempo.Validator {
	return tempo.Validator{PublicKey: [32]byte(k.Public().(ed25519.PublicKey)), Active: true,
		ValidatorAddress: common.Address{0xA0, byte(i)}, InboundAddress: fmt.Sprintf("10.0.0.%d:4000", i+1)}
}

// newChainNet starts a dev chain whose genesis set is validators 0..genesis−1
// (of n), with every key bound from the network's first epoch.
func newChainNet(t *testing.T, n, genesis int, length uint64) *chainNet {
	t.Helper()
	c := &chainNet{t: t, bindings: t.TempDir()}
	var set []tempo.Validator
	base := t.TempDir()
	c.file = &committee.File{ChainID: devchain.DefaultChainID, Epoch: 1, EpochLength: length, CommitteeSource: committee.SourceChain,
		QCShards: 4, TestNetwork: true, FeeModel: tempo.FeeModelNative}
	for i := range n {
		c.consensus = append(c.consensus, testKey(fmt.Sprintf("consensus-%d", i)))
		c.sidecar = append(c.sidecar, testKey(fmt.Sprintf("sidecar-%d", i)))
		c.dirs = append(c.dirs, filepath.Join(base, fmt.Sprintf("v%d", i)))
		c.file.Members = append(c.file.Members, committee.Member{Name: fmt.Sprintf("v%d", i),
			PublicKey: hex.EncodeToString(c.sidecar[i].Public().(ed25519.PublicKey)),
			Addrs:     []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", testkit.FreePort(t))}})
		if i < genesis {
			set = append(set, validatorOf(c.consensus[i], i))
			c.bind(i, 0)
		}
	}
	_, c.client = nodetest.DevChain(t, devchain.Config{BlockPeriod: 100 * time.Millisecond, LoadAccounts: -1, Validators: set})
	return c
}

// bind writes validator i's binding from firstEpoch into the bindings
// directory.
func (c *chainNet) bind(i int, firstEpoch uint64) qc.Binding {
	c.t.Helper()
	b, err := qc.SignBinding(c.consensus[i], c.sidecar[i], c.file.ChainID, firstEpoch)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := committee.AddBinding(c.bindings, c.file.ChainID, b); err != nil {
		c.t.Fatal(err)
	}
	return b
}

// bindingsDir returns validator i's own bindings directory, holding the
// genesis set's bindings (a network's first committee comes as files).
func (c *chainNet) bindingsDir(i int) string {
	c.t.Helper()
	dir := filepath.Join(c.dirs[i], "bindings")
	if _, err := os.Stat(dir); err == nil {
		return dir
	}
	bs, _, err := committee.LoadBindings(c.bindings)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, b := range bs {
		if _, err := committee.AddBinding(dir, c.file.ChainID, b); err != nil {
			c.t.Fatal(err)
		}
	}
	return dir
}

// owner sends a ValidatorConfig call as its owner and waits for it.
func (c *chainNet) owner(data []byte) {
	c.t.Helper()
	tx, err := devkit.SignCall(devkit.ValidatorConfigOwner().Key, c.ownerTxs, tempo.ValidatorConfigAddress, data, new(big.Int).SetUint64(c.file.ChainID), 0, devkit.Fees{})
	if err != nil {
		c.t.Fatal(err)
	}
	c.ownerTxs++
	raw, err := tx.MarshalBinary()
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.client.SendRawTransaction(context.Background(), raw); err != nil {
		c.t.Fatal(err)
	}
	testkit.Eventually(c.t, 20*time.Second, "the owner's call included", func() bool {
		r, err := c.client.TransactionReceipt(context.Background(), tx.Hash())
		if r != nil && !r.Succeeded() {
			c.t.Fatalf("owner call reverted: %+v", r)
		}
		return err == nil && r != nil
	})
}

func (c *chainNet) start(i int) {
	c.t.Helper()
	cfg := runnerConfig(c.dirs[i], c.file.Members[i].Addrs)
	cfg.BindingsDir = c.bindingsDir(i)
	cfg.Sidecar.BindingPullInterval = 200 * time.Millisecond
	for len(c.runners) <= i {
		c.runners = append(c.runners, nil)
	}
	c.runners[i] = startRunner(c.t, cfg, node.WithIdentity(c.file.Members[i].Name, c.sidecar[i]), node.WithCommittee(c.file),
		node.WithChain(c.client), node.WithLogger(c.logger(i)))
}

func (c *chainNet) logger(i int) *slog.Logger {
	if h, ok := c.logs[i]; ok {
		return slog.New(h).With("node", c.file.Members[i].Name)
	}
	return testLogger(c.t).With("node", c.file.Members[i].Name)
}

// signing reports whether runner i runs a node of the chain's current
// epoch whose handover is complete, and that epoch.
func (c *chainNet) signing(i int) (uint64, bool) {
	r := c.runners[i]
	e, _ := r.Epoch()
	n := r.Node()
	if n == nil || n.Sidecar.Validator().Committee().Domain().Epoch != e {
		return e, false
	}
	select {
	case <-n.Sidecar.HandoverDone():
		return e, true
	default:
		return e, false
	}
}

// TestCommitteeFromChain: the committee of each epoch is the dev chain's
// active validator set at the epoch's committee block, signing through the
// bound sidecar keys. A fifth validator, added on chain while the network
// runs, is in the committee from the next epoch on (its sidecar, started
// before, waits until then); one deactivated leaves at the epoch after,
// and payments are certified throughout with the quorum of each epoch.
func TestCommitteeFromChain(t *testing.T) {
	if testing.Short() {
		t.Skip("a dev chain and five sidecars across several epochs")
	}
	const length = 20 // 2 s epochs at 100 ms blocks
	c := newChainNet(t, 5, 4, length)
	// Validator 4's mesh port is held by another process when it joins:
	// its node's start fails, and it starts once the port is free.
	held, err := net.Listen("tcp4", strings.TrimPrefix(strings.Replace(c.file.Members[4].Addrs[0], "/tcp/", ":", 1), "/ip4/"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	retrying := make(chan struct{})
	c.logs = map[int]slog.Handler{4: &signalHandler{Handler: testLogger(t).Handler(), msg: "starting the epoch's node failed; trying again", seen: retrying, once: new(sync.Once)}}
	for i := range 5 {
		c.start(i)
	}
	testkit.Eventually(t, 30*time.Second, "validators 0..3 signing", func() bool {
		for i := range 4 {
			if _, ok := c.signing(i); !ok {
				return false
			}
		}
		return true
	})
	if n := c.runners[4].Node(); n != nil {
		t.Fatal("validator 4, not on chain yet, runs a node")
	}
	// Meanwhile its API says why it does not sign, and refuses payments
	// with a retryable error.
	waiting := c.runners[4].APIAddr()
	if waiting == nil {
		t.Fatal("validator 4 serves no API while it waits to join")
	}
	ready, err := http.Get("http://" + waiting.String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(ready.Body)
	ready.Body.Close()
	if ready.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "not in the committee") {
		t.Fatalf("validator 4's /readyz while waiting: %d %s", ready.StatusCode, body)
	}
	var waitInfo apiserver.InfoResponse
	getJSON(t, "http://"+waiting.String()+"/api/v1/info", &waitInfo)
	var waitCommittee apiserver.CommitteeResponse
	getJSON(t, "http://"+waiting.String()+"/api/v1/committee", &waitCommittee)
	if waitInfo.ID != qc.ValidatorID(c.sidecar[4].Public().(ed25519.PublicKey)).Hex() || waitCommittee.N != 4 {
		t.Fatalf("validator 4's info %+v and committee (n=%d) while waiting", waitInfo, waitCommittee.N)
	}
	{
		conn, err := grpc.NewClient(waiting.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		req := nodetest.Pay{Key: devkit.DemoAccounts()[0].Key, ChainID: c.file.ChainID, Recipient: devkit.DemoAccounts()[1].Address, Amount: devkit.Dollar}.Request(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		answer, err := fastpayv1.NewFastPaySidecarClient(conn).SubmitFastPay(ctx, req)
		cancel()
		conn.Close()
		if err != nil || answer.GetReject().GetCode() != fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE || !strings.Contains(answer.GetReject().GetMessage(), "not in the committee") {
			t.Fatalf("a payment to validator 4 while it waits: %v %v", answer, err)
		}
	}
	demo := devkit.DemoAccounts()
	pay := func(entry int, from devkit.Account, nonce uint64, to common.Address) *qc.QC {
		t.Helper()
		req := nodetest.Pay{Key: from.Key, ChainID: c.file.ChainID, Nonce: nonce, Recipient: to, Amount: devkit.Dollar}.Request(t)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		// A payment at a boundary waits out the handover (retryable).
		return testkit.RetryStreamToQC(t, ctx, func() fastpayv1.FastPaySidecarClient {
			conn, err := grpc.NewClient(c.runners[entry].Node().API.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			return fastpayv1.NewFastPaySidecarClient(conn)
		}, req)
	}
	q := pay(0, demo[0], 0, demo[1].Address)
	if len(q.Certs) != 3 {
		t.Fatalf("QC of %d certificates with 4 seats", len(q.Certs))
	}

	// Validator 4 joins: added on chain, its binding in effect two epochs
	// on (as a binding made while the network runs must be), handed to
	// validator 0's API and passed on through the mesh; the operator keeps
	// it in its own sidecar's directory too.
	now, _ := c.runners[0].Epoch()
	b4 := c.bind(4, now+2)
	if _, err := committee.AddBinding(c.bindingsDir(4), c.file.ChainID, b4); err != nil {
		t.Fatal(err)
	}
	early := b4
	early.FirstEpoch = now
	if code := postBinding(t, c.runners[0].Node().API.Addr().String(), early); code != http.StatusBadRequest {
		t.Fatalf("a binding for the current epoch: status %d, want 400", code)
	}
	if code := postBinding(t, c.runners[0].Node().API.Addr().String(), b4); code != http.StatusOK {
		t.Fatalf("posting validator 4's binding: status %d", code)
	}
	testkit.Eventually(t, 20*time.Second, "validator 4's binding at every member", func() bool {
		for i := range 4 {
			bs, _, _ := committee.LoadBindings(c.bindingsDir(i))
			if !slices.ContainsFunc(bs, func(b qc.Binding) bool { return b.SidecarKey == b4.SidecarKey }) {
				return false
			}
		}
		return true
	})
	add, err := tempo.AddValidatorCalldata(validatorOf(c.consensus[4], 4))
	if err != nil {
		t.Fatal(err)
	}
	c.owner(add)
	select {
	case <-retrying:
	case <-time.After(30 * time.Second):
		t.Fatal("validator 4 did not try to start its node with its port held")
	}
	held.Close()
	testkit.Eventually(t, 30*time.Second, "validator 4 signing", func() bool {
		e, ok := c.signing(4)
		return ok && e >= now+2
	})
	joined, _ := c.signing(4)
	n4 := c.runners[4].Node()
	if got := n4.Sidecar.Validator().Committee(); got.N() != 5 || got.Quorum() != 4 {
		t.Fatalf("committee of epoch %d: n=%d quorum=%d", joined, got.N(), got.Quorum())
	}
	testkit.Eventually(t, 30*time.Second, "every validator signing in one epoch", func() bool {
		e0, ok := c.signing(0)
		for i := 1; i < 5 && ok; i++ {
			var e uint64
			e, ok = c.signing(i)
			ok = ok && e == e0
		}
		return ok
	})
	q = pay(4, demo[1], 0, demo[2].Address)
	if len(q.Certs) != 4 {
		t.Fatalf("QC of %d certificates with 5 seats", len(q.Certs))
	}
	// The settler the epochs share reports through every epoch's node.
	if metrics := runnerGet(t, c.runners[1], "/metrics"); !strings.Contains(string(metrics), "allegro_settlement_") {
		t.Fatal("/metrics lacks the settler's metrics")
	}
	// Any sidecar's API tells the committee of an epoch, with its seats.
	var got apiserver.CommitteeResponse
	runnerJSON(t, c.runners[1], fmt.Sprintf("/api/v1/committee?epoch=%d", joined), &got)
	if got.N != 5 || len(got.Seats) != 5 || len(got.Members) != 5 || uint64(got.Epoch) != joined {
		t.Fatalf("committee of epoch %d from the API: %+v", joined, got)
	}
	runnerJSON(t, c.runners[1], "/api/v1/committee?epoch=1", &got)
	if got.N != 4 || uint64(got.Epoch) != 1 {
		t.Fatalf("committee of epoch 1 from the API: %+v", got)
	}
	// The current committee lists each member's addresses from the
	// committee file, found by key (its members are named after their seats).
	runnerJSON(t, c.runners[1], "/api/v1/committee", &got)
	for _, m := range got.Members {
		if len(m.Addrs) == 0 {
			t.Fatalf("member %s of the current committee has no addresses: %+v", m.Name, got)
		}
	}

	// Validator 0 leaves: deactivated on chain.
	c.owner(tempo.ChangeValidatorStatusCalldata(common.Address{0xA0, 0}, false))
	testkit.Eventually(t, 30*time.Second, "a committee without validator 0", func() bool {
		n := c.runners[1].Node()
		e, ok := c.signing(1)
		return ok && n.Sidecar.Validator().Committee().N() == 4 && !n.Sidecar.Validator().Committee().Contains(qc.ValidatorID(c.sidecar[0].Public().(ed25519.PublicKey))) && e > joined
	})
	if _, ok := c.signing(0); ok {
		t.Fatal("validator 0 still signs after it left the set")
	}
	q = pay(2, demo[2], 0, demo[0].Address)
	if len(q.Certs) != 3 {
		t.Fatalf("QC of %d certificates with 4 seats again", len(q.Certs))
	}
}

// postBinding hands b to a sidecar's API and returns the HTTP status.
func postBinding(t *testing.T, api string, b qc.Binding) int {
	t.Helper()
	body, err := json.Marshal(apiserver.NewJSONBinding(b))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+api+"/api/v1/bindings", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode
}

// signalHandler closes seen at the first record whose message is msg.
type signalHandler struct {
	slog.Handler
	msg  string
	once *sync.Once
	seen chan struct{}
}

func (h *signalHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *signalHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(func() { close(h.seen) })
	}
	if !h.Handler.Enabled(ctx, r.Level) {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h *signalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &signalHandler{Handler: h.Handler.WithAttrs(as), msg: h.msg, seen: h.seen, once: h.once}
}

func (h *signalHandler) WithGroup(name string) slog.Handler {
	return &signalHandler{Handler: h.Handler.WithGroup(name), msg: h.msg, seen: h.seen, once: h.once}
}

// runnerGet reads path from the API of r's current node. Each epoch
// starts a node with its own listener (a new port when the configured one
// is 0), so a request that meets a boundary is sent again to the address
// r serves then; an HTTP status other than 200 fails at once.
func runnerGet(t *testing.T, r *node.Runner, path string) []byte {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		if a := r.APIAddr(); a != nil {
			var resp *http.Response
			if resp, err = http.Get("http://" + a.String() + path); err == nil {
				body, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("GET %s: %s %s", path, resp.Status, body)
				}
				if rerr == nil {
					return body
				}
				err = rerr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: no answer for 20 s: %v", path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runnerJSON decodes the JSON answer to path from r's current node.
func runnerJSON(t *testing.T, r *node.Runner, path string, v any) {
	t.Helper()
	if err := json.Unmarshal(runnerGet(t, r, path), v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
