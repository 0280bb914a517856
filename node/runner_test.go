package node_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/lightclient"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devkit"
	"github.com/allegro-mesh/allegro/validator"
)

// epochCluster is n Runners on one in-memory chain whose committee file
// sets an epoch length: each validator listens on fixed ports (its entry
// in the file), so the nodes of every epoch find each other.
type epochCluster struct {
	t       *testing.T
	chain   *tempo.MemChain
	file    *committee.File
	keys    []ed25519.PrivateKey
	dirs    []string
	runners []*node.Runner
}

func newEpochCluster(t *testing.T, n int, length uint64) *epochCluster {
	t.Helper()
	c := &epochCluster{t: t, chain: nodetest.Funded(),
		file: &committee.File{ChainID: chainID, Epoch: 1, EpochLength: length, QCShards: 4, TestNetwork: true}}
	base := t.TempDir()
	for i := range n {
		seed := make([]byte, ed25519.SeedSize)
		copy(seed, fmt.Sprintf("epoch-validator-%d", i))
		key := ed25519.NewKeyFromSeed(seed)
		c.keys = append(c.keys, key)
		c.dirs = append(c.dirs, filepath.Join(base, fmt.Sprintf("v%d", i)))
		c.file.Members = append(c.file.Members, committee.Member{Name: fmt.Sprintf("v%d", i),
			PublicKey: hex.EncodeToString(key.Public().(ed25519.PublicKey)),
			Addrs:     []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", testkit.FreePort(t))}})
	}
	c.chain.SetHead(length) // epoch 1's first block
	return c
}

// runningEpochCluster starts n Runners on a new epochCluster and waits until
// every one signs in epoch 1.
func runningEpochCluster(t *testing.T, n int, length uint64) *epochCluster {
	t.Helper()
	c := newEpochCluster(t, n, length)
	for i := range n {
		c.start(i)
	}
	c.waitEpoch(1, 20*time.Second)
	return c
}

func (c *epochCluster) start(i int) {
	c.t.Helper()
	for len(c.runners) <= i {
		c.runners = append(c.runners, nil)
	}
	c.runners[i] = startRunner(c.t, runnerConfig(c.dirs[i], c.file.Members[i].Addrs),
		node.WithIdentity(c.file.Members[i].Name, c.keys[i]), node.WithCommittee(c.file),
		node.WithChain(c.chain), node.WithLogger(testLogger(c.t).With("node", c.file.Members[i].Name)))
}

// runnerConfig is the configuration of a test sidecar with data directory
// dir listening for the mesh on listen.
func runnerConfig(dir string, listen []string) node.Config {
	cfg := node.DefaultConfig()
	cfg.DataDir = dir
	cfg.P2P = p2p.LocalConfig()
	cfg.P2P.ListenAddrs = listen
	cfg.API.ListenAddr = "127.0.0.1:0"
	cfg.Sidecar.PruneInterval = 200 * time.Millisecond
	cfg.Sidecar.DoppelgangerWindow = 0
	return cfg
}

// startRunner builds and starts a Runner, stopped when the test ends.
func startRunner(t *testing.T, cfg node.Config, opts ...node.Option) *node.Runner {
	t.Helper()
	r, err := node.NewRunner(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = r.Stop(ctx)
	})
	return r
}

// stop stops runner i (its data directory stays for a restart).
func (c *epochCluster) stop(i int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.runners[i].Stop(ctx); err != nil {
		c.t.Fatal(err)
	}
	c.runners[i] = nil
}

// waitEpoch waits until every runner runs epoch e and its handover is
// complete.
func (c *epochCluster) waitEpoch(e uint64, timeout time.Duration) {
	c.t.Helper()
	testkit.Eventually(c.t, timeout, fmt.Sprintf("every validator signing in epoch %d", e), func() bool {
		for _, r := range c.runners {
			if r == nil {
				continue
			}
			got, _ := r.Epoch()
			if got != e {
				return false
			}
			select {
			case <-r.Node().Sidecar.HandoverDone():
			default:
				return false
			}
		}
		return true
	})
}

func (c *epochCluster) client(i int) fastpayv1.FastPaySidecarClient {
	c.t.Helper()
	conn, err := grpc.NewClient(c.runners[i].Node().API.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { conn.Close() })
	return fastpayv1.NewFastPaySidecarClient(conn)
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("ALLEGRO_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

// payToQC submits req to validator i, retrying while the mesh answers that
// the epoch is changing, and returns the QC.
func (c *epochCluster) payToQC(i int, req *fastpayv1.SubmitFastPayRequest) *qc.QC {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return testkit.RetryStreamToQC(c.t, ctx, func() fastpayv1.FastPaySidecarClient { return c.client(i) }, req)
}

// TestEpochsFollowTheChain: four validators change epochs as the chain's
// head crosses each boundary; each closes its epoch, gathers the others'
// closes and signs in the next; payments are certified in every epoch,
// with the QC of the epoch that signed it, and a child whose parent was
// certified in the previous epoch is certified in the next.
func TestEpochsFollowTheChain(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four sidecars three times")
	}
	const length = 10
	c := runningEpochCluster(t, 4, length)

	pay := nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Recipient: nodetest.Address(nodetest.Bob), Amount: 7_000}
	parent := c.payToQC(0, pay.Request(t))
	if parent.Epoch != 1 {
		t.Fatalf("QC of epoch %d in epoch 1", parent.Epoch)
	}

	// A payment signed in epoch 1 and not yet settled when it ends.
	pay2 := nodetest.Pay{Key: nodetest.Carol, ChainID: chainID, Recipient: nodetest.Address(nodetest.Alice), Amount: 1_000}
	c.payToQC(1, pay2.Request(t))

	// The API keeps its address (its port was chosen by the system) and
	// answers throughout the node swap: a client polling it meets no
	// refused connection.
	before := c.runners[0].APIAddr().String()
	stopPolling := make(chan struct{})
	polled := make(chan []error, 1)
	go func() {
		var failures []error
		client := &http.Client{Timeout: 5 * time.Second}
		for {
			select {
			case <-stopPolling:
				polled <- failures
				return
			case <-time.After(5 * time.Millisecond):
			}
			resp, err := client.Get("http://" + before + "/readyz")
			if err != nil {
				failures = append(failures, err)
				continue
			}
			resp.Body.Close()
		}
	}()
	boundary := time.Now()
	c.chain.SetHead(2 * length)
	c.waitEpoch(2, 30*time.Second)
	t.Logf("epoch 1 → 2: every validator signing after %s", time.Since(boundary).Round(time.Millisecond))
	close(stopPolling)
	if failures := <-polled; len(failures) > 0 {
		t.Errorf("%d requests to the API failed across the boundary, the first: %v", len(failures), failures[0])
	}
	if after := c.runners[0].APIAddr().String(); after != before {
		t.Errorf("the API moved from %s to %s at the boundary", before, after)
	}
	// Epoch 1's board stays readable through the new node's API.
	api := "http://" + c.runners[0].Node().API.Addr().String()
	var info apiserver.InfoResponse
	getJSON(t, api+"/api/v1/info", &info)
	if !slices.Equal(info.BoardEpochs, []apiserver.U64{2, 1}) {
		t.Fatalf("board_epochs %v after the boundary, want [2 1]", info.BoardEpochs)
	}
	var page apiserver.BulletinResponse
	getJSON(t, api+"/api/v1/bulletin?epoch=1&tx="+parent.TxHash.Hex(), &page)
	if len(page.Certificates) == 0 || len(page.QCs) != 1 || page.QCs[0].TxHash != parent.TxHash.Hex() {
		t.Fatalf("epoch 1's board: %d certificates, %d QCs of the parent", len(page.Certificates), len(page.QCs))
	}

	// Bob spends the credit of epoch 1's QC in epoch 2.
	// Bob needs the credit: 5,000 more than his balance less the fee.
	child := nodetest.Pay{Key: nodetest.Bob, ChainID: chainID, Recipient: nodetest.Address(nodetest.Carol),
		Amount: 100_000_000 - nodetest.MaxFee + 5_000, Parent: parent}
	q := c.payToQC(2, child.Request(t))
	if q.Epoch != 2 {
		t.Fatalf("child's QC of epoch %d, want 2", q.Epoch)
	}
	// Carol's conflicting payment for the key certified in epoch 1 is
	// refused by every member of epoch 2.
	conflict := pay2
	conflict.Recipient = nodetest.Address(nodetest.Bob)
	for i, r := range c.runners {
		_, err := r.Node().Sidecar.Validator().Submit(context.Background(), conflict.Request(t))
		if validator.RejectCodeOf(err) != fastpayv1.RejectCode_EQUIVOCATION {
			t.Fatalf("validator %d in epoch 2, a conflict with a key certified in epoch 1: %v", i, err)
		}
	}
	boundary = time.Now()
	c.chain.SetHead(3 * length)
	c.waitEpoch(3, 30*time.Second)
	t.Logf("epoch 2 → 3: every validator signing after %s", time.Since(boundary).Round(time.Millisecond))
	// Alice's next nonce, at the validator that signed her first payment
	// two epochs ago (a validator expects a sender's nonces in order).
	pay3 := nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Nonce: 1, Recipient: nodetest.Address(nodetest.Carol), Amount: 1_000}
	if q := c.payToQC(0, pay3.Request(t)); q.Epoch != 3 {
		t.Fatalf("QC of epoch %d in epoch 3", q.Epoch)
	}
}

// TestEpochRestartAndMissedBoundary: a validator restarted within an epoch
// enters it again from the closes it stored; one that was down across a
// boundary closes the epoch it missed when it starts, and then signs in the
// new one; while it was down the other three (a quorum) moved on.
func TestEpochRestartAndMissedBoundary(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four sidecars several times")
	}
	const length = 10
	c := runningEpochCluster(t, 4, length)
	pay := nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Recipient: nodetest.Address(nodetest.Bob), Amount: 7_000}
	c.payToQC(0, pay.Request(t))
	c.chain.SetHead(2 * length)
	c.waitEpoch(2, 30*time.Second)

	// Restarted within epoch 2.
	c.stop(3)
	c.start(3)
	c.waitEpoch(2, 30*time.Second)

	// Down across the boundary into epoch 3: the others move on.
	c.stop(3)
	c.chain.SetHead(3 * length)
	c.waitEpoch(3, 30*time.Second)
	carol := nodetest.Pay{Key: nodetest.Carol, ChainID: chainID, Recipient: nodetest.Address(nodetest.Bob), Amount: 1_000}
	if q := c.payToQC(1, carol.Request(t)); q.Epoch != 3 {
		t.Fatalf("QC of epoch %d with validator 3 down", q.Epoch)
	}
	c.start(3)
	c.waitEpoch(3, 30*time.Second)
	if !closedBy(c, 3) {
		t.Fatal("validator 3 did not close the epoch it missed")
	}
	// Validator 3 signs in epoch 3: a payment it enters is certified.
	bob := nodetest.Pay{Key: nodetest.Bob, ChainID: chainID, Recipient: nodetest.Address(nodetest.Carol), Amount: 1_000}
	if q := c.payToQC(3, bob.Request(t)); q.Epoch != 3 {
		t.Fatalf("QC of epoch %d from the restarted validator", q.Epoch)
	}
}

// closedBy reports whether validator i's own close of the epoch before
// its current one is among those its handover adopted.
func closedBy(c *epochCluster, i int) bool {
	h := c.runners[i].Node().Sidecar.Handover()
	return h != nil && slices.Contains(h.Signers(), qc.ValidatorID(c.keys[i].Public().(ed25519.PublicKey)))
}

// TestPaymentsAcrossBoundaries: payments submitted one after another while
// the chain crosses three epoch boundaries are all certified, each with a
// QC of the epoch it was signed in; the time from submission to QC (which
// includes waiting out a handover) shows the pause a boundary costs. It
// reports them; machines are shared, so nothing is asserted about time.
func TestPaymentsAcrossBoundaries(t *testing.T) {
	if testing.Short() {
		t.Skip("four sidecars across three boundaries")
	}
	const length, payers = 10, 400
	c := newEpochCluster(t, 4, length)
	var keys []*ecdsa.PrivateKey
	for i := range payers {
		k := nodetest.Key(fmt.Sprintf("boundary-payer-%d", i))
		keys = append(keys, k)
		c.chain.SetBalance(devkit.TokenAddress, nodetest.Address(k), big.NewInt(10_000_000))
	}
	for i := range 4 {
		c.start(i)
	}
	c.waitEpoch(1, 20*time.Second)

	type result struct {
		took  time.Duration
		epoch uint64
	}
	var results []result // written by the payer until done
	var paid atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i, k := range keys {
			req := nodetest.Pay{Key: k, ChainID: chainID, Recipient: nodetest.Address(nodetest.Bob), Amount: 1_000}.Request(t)
			start := time.Now()
			q := c.payToQC(i%4, req)
			results = append(results, result{time.Since(start), q.Epoch})
			paid.Add(1)
		}
	}()
	for e := uint64(2); e <= 4; e++ {
		testkit.Eventually(t, 60*time.Second, "payments flowing", func() bool {
			select {
			case <-done:
				return true
			default:
			}
			return paid.Load() > int64(e-1)*payers/4
		})
		c.chain.SetHead(e * length)
	}
	<-done
	last := uint64(0)
	var worst time.Duration
	var all []time.Duration
	for i, r := range results {
		if r.epoch < last {
			t.Fatalf("payment %d certified in epoch %d after one in epoch %d", i, r.epoch, last)
		}
		last = r.epoch
		worst = max(worst, r.took)
		all = append(all, r.took)
	}
	if last != 4 {
		t.Fatalf("the last payment was certified in epoch %d, want 4", last)
	}
	slices.Sort(all)
	t.Logf("%d payments across 3 boundaries: submit→QC p50 %s, p99 %s, max %s (the boundary pause)",
		len(all), all[len(all)/2].Round(time.Millisecond), all[len(all)*99/100].Round(time.Millisecond), worst.Round(time.Millisecond))
}

// TestLightClientFollowsEpochs: a light client following the chain reports
// a payment certified in epoch 1 and one certified in epoch 2, each
// verified against its epoch's committee.
func TestLightClientFollowsEpochs(t *testing.T) {
	if testing.Short() {
		t.Skip("four sidecars across a boundary")
	}
	const length = 10
	c := runningEpochCluster(t, 4, length)
	res, err := committee.NewResolver(c.file, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	boot, err := c.file.Bootstrap()
	if err != nil {
		t.Fatal(err)
	}
	cfg := lightclient.DefaultConfig()
	cfg.QCShards, cfg.Bootstrap = c.file.QCShards, boot
	cfg.Watch = []common.Address{nodetest.Address(nodetest.Bob)}
	cfg.Logger = testLogger(t).With("node", "light")
	lc, err := lightclient.NewFollower(cfg, lightclient.FollowConfig{Committees: res, Chain: c.chain, EpochOf: c.file.EpochOf,
		Poll: 50 * time.Millisecond, Overlap: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := lc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer lc.Stop(context.Background())
	expect := func(q *qc.QC) {
		t.Helper()
		for {
			select {
			case p := <-lc.Payments():
				if p.QC.TxHash == q.TxHash {
					if p.QC.Epoch != q.Epoch {
						t.Fatalf("light client's QC of epoch %d, the payment's of %d", p.QC.Epoch, q.Epoch)
					}
					return
				}
			case <-ctx.Done():
				t.Fatalf("the light client did not report the payment of epoch %d", q.Epoch)
			}
		}
	}
	// The other validators subscribe to every shard too, so only the light
	// client's own peer id in the entry's topic peers shows that the QC will
	// reach it: gossip announces a message for a few heartbeats only, and a
	// client that subscribes later than that (a loaded machine) never
	// learns the QC.
	subscribedAt0 := func(epoch uint64) bool {
		cur := lc.Current()
		if cur == nil {
			return false
		}
		topic := p2p.QCTopic(chainID, epoch, int(nodetest.Address(nodetest.Bob)[0])%c.file.QCShards)
		return slices.Contains(c.runners[0].Node().Sidecar.Mesh().ListPeers(topic), cur.ID())
	}
	testkit.Eventually(t, 20*time.Second, "the light client subscribed", func() bool { return subscribedAt0(1) })
	first := c.payToQC(0, nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Recipient: nodetest.Address(nodetest.Bob), Amount: 1_000}.Request(t))
	expect(first)

	c.chain.SetHead(2 * length)
	c.waitEpoch(2, 30*time.Second)
	testkit.Eventually(t, 20*time.Second, "the light client following epoch 2", func() bool {
		return lc.Epoch() == 2 && subscribedAt0(2)
	})
	second := c.payToQC(1, nodetest.Pay{Key: nodetest.Carol, ChainID: chainID, Recipient: nodetest.Address(nodetest.Bob), Amount: 2_000}.Request(t))
	if second.Epoch != 2 {
		t.Fatalf("second payment's QC of epoch %d", second.Epoch)
	}
	expect(second)
}
