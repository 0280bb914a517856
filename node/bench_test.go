package node_test

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"math/big"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/bench"
	"github.com/allegro-mesh/allegro/node"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/sidecar"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// benchSenders is the number of funded accounts of BenchmarkMesh; each
// concurrent stream uses its own sender so its nonces stay sequential.
const benchSenders = 256

// BenchmarkMesh measures payments on an in-process mesh of four validators
// (real libp2p hosts on loopback, real pebble stores with fsync, one
// in-memory chain), submitted over gRPC SubmitFastPayStream:
//
//   - latency: one payment at a time through validator 0, from the call
//     until the QC arrives on the stream; reports p50-ms and p99-ms;
//   - throughput: 64 concurrent senders (spread over the four sidecars),
//     each submitting its next nonce once the previous has its QC; reports
//     certified payments per second and the latency under that load.
//
// Both also report where the time and work go: board-p50-ms and
// board-p99-ms (at the entry sidecar, from its own certificate to the QC:
// the mesh part of the latency), cpu-µs/payment and cores (CPU of the whole
// process: four validators and the clients), mesh-msgs/payment (message
// copies the four validators received, duplicates included) and
// qc-publishes/payment. A block producer settles certified payments every
// 0.5 s, so validators prune their overlays as on a real chain.
//
// Run with: go test -run '^$' -bench Mesh -benchtime 2000x -count 3 ./node
// (results and profile in docs/benchmarks.md); RELAY=1 in the environment
// turns gossip relaying on (p2p.Config.Relay) to compare with the default.
func BenchmarkMesh(b *testing.B) {
	chain := tempo.NewMemChain()
	keys := make([]*ecdsa.PrivateKey, benchSenders)
	balance := new(big.Int).Exp(big.NewInt(10), big.NewInt(30), nil)
	for i := range keys {
		keys[i] = nodetest.Key(fmt.Sprintf("bench-sender-%d", i))
		chain.SetBalance(devkit.TokenAddress, nodetest.Address(keys[i]), balance)
	}
	chain.SetHead(10)
	recipient := nodetest.Address(nodetest.Key("bench-recipient"))

	cl := nodetest.New(b, 4, chainID, chain, nodetest.WithConfig(func(_ int, cfg *node.Config) {
		// Production pruning cadence (nodetest prunes every 200 ms).
		cfg.Sidecar.PruneInterval = sidecar.DefaultConfig().PruneInterval
		cfg.P2P.Relay = os.Getenv("RELAY") != ""
	}))
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)
	blocks := newBlockProducer(chain, keys)
	b.Cleanup(blocks.stop)
	clients := make([]fastpayv1.FastPaySidecarClient, len(cl.Nodes))
	for i := range clients {
		clients[i] = cl.Client(i)
	}
	// Next nonce per sender; sub-benchmark rounds run one after another on
	// the same cluster.
	nonces := make([]uint64, benchSenders)
	requests := func(sender, n int) []*fastpayv1.SubmitFastPayRequest {
		out := make([]*fastpayv1.SubmitFastPayRequest, n)
		for i := range out {
			out[i] = nodetest.Pay{Key: keys[sender], ChainID: chainID, Nonce: nonces[sender], Recipient: recipient, Amount: 1}.Request(b)
			nonces[sender]++
		}
		return out
	}

	b.Run("latency", func(b *testing.B) {
		reqs := requests(0, b.N)
		lat := make([]time.Duration, 0, b.N)
		m := startMeasure(cl)
		b.ResetTimer()
		for _, req := range reqs {
			start := time.Now()
			if err := bench.SubmitToQC(context.Background(), clients[0], req, 30*time.Second); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
			blocks.certified(0, req)
		}
		b.StopTimer()
		m.report(b, cl, lat, [][]*fastpayv1.SubmitFastPayRequest{reqs})
	})

	b.Run("throughput", func(b *testing.B) {
		const streams = 64
		perStream := make([][]*fastpayv1.SubmitFastPayRequest, streams)
		for g := range perStream {
			n := b.N / streams
			if g < b.N%streams {
				n++
			}
			perStream[g] = requests(1+g, n)
		}
		lats := make([][]time.Duration, streams)
		errs := make([]error, streams)
		var wg sync.WaitGroup
		m := startMeasure(cl)
		b.ResetTimer()
		for g := range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				client := clients[g%len(clients)]
				for _, req := range perStream[g] {
					t0 := time.Now()
					if err := bench.SubmitToQC(context.Background(), client, req, 30*time.Second); err != nil {
						errs[g] = err
						return
					}
					lats[g] = append(lats[g], time.Since(t0))
					blocks.certified(1+g, req)
				}
			}()
		}
		wg.Wait()
		b.StopTimer()
		if err := errors.Join(errs...); err != nil {
			b.Fatal(err)
		}
		m.report(b, cl, slices.Concat(lats...), perStream)
	})
}

// blockProducer stands in for the chain's settlement: every block period
// (Tempo's 0.5 s) it advances the head and includes every payment certified
// by then, by moving its sender's chain nonce past it. Validators then prune
// those debits and credits, as they do on a real chain; without it the
// in-memory chain never settles anything and every sender's pending set
// (which each funds check walks) only grows.
type blockProducer struct {
	chain *tempo.MemChain
	addrs []common.Address
	next  []atomic.Uint64 // per sender: the chain nonce once its certified payments are included
	done  chan struct{}
	wg    sync.WaitGroup
}

const blockPeriod = 500 * time.Millisecond

func newBlockProducer(chain *tempo.MemChain, keys []*ecdsa.PrivateKey) *blockProducer {
	p := &blockProducer{chain: chain, next: make([]atomic.Uint64, len(keys)), done: make(chan struct{})}
	for _, k := range keys {
		p.addrs = append(p.addrs, nodetest.Address(k))
	}
	p.wg.Add(1)
	go p.run()
	return p
}

// certified records that req, from sender, has its QC.
func (p *blockProducer) certified(sender int, req *fastpayv1.SubmitFastPayRequest) {
	p.next[sender].Store(req.GetTx().GetNonce().GetNonceSeq() + 1)
}

func (p *blockProducer) run() {
	defer p.wg.Done()
	ticker := time.NewTicker(blockPeriod)
	defer ticker.Stop()
	included := make([]uint64, len(p.next))
	head := uint64(10)
	for {
		select {
		case <-p.done:
			return
		case <-ticker.C:
		}
		for i := range p.next {
			if n := p.next[i].Load(); n > included[i] {
				p.chain.SetNonce(p.addrs[i], [32]byte{}, n)
				included[i] = n
			}
		}
		head++
		p.chain.SetHead(head)
	}
}

func (p *blockProducer) stop() {
	close(p.done)
	p.wg.Wait()
}

// measure holds the counters at the start of a timed run.
type measure struct {
	start  time.Time
	cpu    time.Duration
	msgs   uint64
	qcPubs uint64
}

func startMeasure(cl *nodetest.Cluster) measure {
	m := measure{start: time.Now(), cpu: processCPU()}
	m.msgs, m.qcPubs = meshCounts(cl)
	return m
}

// meshCounts returns the message copies the validators received (accepted
// or dropped as duplicates, on every topic) and the QCs they published.
func meshCounts(cl *nodetest.Cluster) (msgs, qcPubs uint64) {
	for _, n := range cl.Nodes {
		st := n.Sidecar.Mesh().Stats()
		for _, t := range []p2p.TopicStats{st.Tx, st.Bulletin, st.QC} {
			msgs += t.Accepted + t.Duplicates - t.Published
		}
		qcPubs += st.QC.Published
	}
	return msgs, qcPubs
}

// report adds the run's metrics. reqs[g] went through sidecar g % 4 (the
// latency run has one group, all through sidecar 0).
func (m measure) report(b *testing.B, cl *nodetest.Cluster, lat []time.Duration, reqs [][]*fastpayv1.SubmitFastPayRequest) {
	elapsed := time.Since(m.start)
	cpu := processCPU() - m.cpu
	msgs, qcPubs := meshCounts(cl)
	n := float64(b.N)
	b.ReportMetric(n/elapsed.Seconds(), "payments/s")
	b.ReportMetric(float64(cpu.Microseconds())/n, "cpu-µs/payment")
	b.ReportMetric(cpu.Seconds()/elapsed.Seconds(), "cores")
	b.ReportMetric(float64(msgs-m.msgs)/n, "mesh-msgs/payment")
	b.ReportMetric(float64(qcPubs-m.qcPubs)/n, "qc-publishes/payment")
	reportPercentiles(b, lat, "")

	var mesh []time.Duration
	for g, group := range reqs {
		board := cl.Nodes[g%len(cl.Nodes)].Sidecar.Board()
		for _, req := range group {
			h, err := p2p.TxHash(req)
			if err != nil {
				b.Fatal(err)
			}
			if st, ok := board.Status(h); ok && !st.QCAt.IsZero() {
				mesh = append(mesh, st.QCAt.Sub(st.FirstSeen))
			}
		}
	}
	reportPercentiles(b, mesh, "board-")
}

// processCPU returns the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportPercentiles reports the p50 and p99 of lat in milliseconds.
func reportPercentiles(b *testing.B, lat []time.Duration, prefix string) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		i := min(len(lat)-1, int(p*float64(len(lat))))
		return float64(lat[i]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), prefix+"p50-ms")
	b.ReportMetric(pct(0.99), prefix+"p99-ms")
}
