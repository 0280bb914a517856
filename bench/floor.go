package bench

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	lpcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/validator"
)

// The gossip floor runs the protocol's message pattern on bare gossipsub:
// the same libp2p hosts (p2p.NewHost), pubsub configuration
// (p2p.GossipOptions, topic scores), topics and payload sizes as the mesh,
// and per payment the same messages — the entry publishes the transaction,
// every validator publishes a certificate when it sees it, and the entry
// publishes the QC on the bulletin and on its QC shard once it holds a
// quorum — but validators accept every message and nothing is decoded,
// signed, verified, stored or served over an API. Its CPU per payment is
// what gossiping each certificate as its own message (SPEC §5) costs
// before any of the protocol's work: a floor under the mesh, and so a
// ceiling on achieved/limit that no change inside the validators can lift.

// FloorSizes are the payload sizes of the floor's messages.
type FloorSizes struct {
	Tx, Cert, QC int
}

// FloorResult is one floor run.
type FloorResult struct {
	Payments int
	Wall     time.Duration
	CPU      time.Duration
	// Copies are the message copies all validators received from peers
	// (their own publishes excluded).
	Copies int64
	// Latency is each payment's time from its transaction to the entry's
	// quorum.
	Latency Summary
	// IDHeapPerPayment is the live heap of pubsub's per-message-id state
	// per payment per validator at the end (bytes): ids in its time caches
	// and score records, kept until its once-a-minute sweep (the run is
	// shorter than a sweep period, so every payment's ids are still there).
	IDHeapPerPayment float64
}

// CPUPerPayment returns the process CPU per payment in microseconds.
func (r FloorResult) CPUPerPayment() float64 {
	if r.Payments == 0 {
		return 0
	}
	return float64(r.CPU.Microseconds()) / float64(r.Payments)
}

// Floor message header: payment sequence, kind, signer and entry; the rest
// of a payload is filler up to its real size.
const (
	floorHeader = 11
	floorTx     = 0
	floorCert   = 1
	floorQC     = 2
)

// RealFloorSizes encodes one payment, certificate and QC of a committee of
// n as the mesh does and returns their sizes.
func RealFloorSizes(chainID uint64, n int) (FloorSizes, error) {
	f, err := newCostFixture(chainID, []int{n}, 1)
	if err != nil {
		return FloorSizes{}, err
	}
	req := f.reqs[0]
	p, err := validator.Decode(req, f.domain, validator.DefaultConfig().MaxParentQCs)
	if err != nil {
		return FloorSizes{}, err
	}
	c := f.committees[n]
	a := qc.NewAssembler(c, p.TxHash, p.Effects.Hash())
	var cert qc.Certificate
	for _, s := range f.signers[n][:c.Quorum()] {
		cert = s.Sign(p.TxHash, p.Effects, uint64(time.Now().UnixMilli()))
		if _, err := a.AddVerified(cert); err != nil {
			return FloorSizes{}, err
		}
	}
	q, err := a.Build()
	if err != nil {
		return FloorSizes{}, err
	}
	certMsg := &fastpayv1.BulletinMessage{Item: &fastpayv1.BulletinMessage_Cert{Cert: fastpayv1.NewValidatorCertificate(&cert)}}
	qcMsg := fastpayv1.NewQuorumCertificate(q)
	return FloorSizes{Tx: proto.Size(req), Cert: proto.Size(certMsg), QC: proto.Size(qcMsg)}, nil
}

type floorNode struct {
	index  int
	host   *p2p.Host
	ps     *pubsub.PubSub
	tx     *pubsub.Topic
	bull   *pubsub.Topic
	shard  *pubsub.Topic
	copies atomic.Int64

	batch   time.Duration // 0: every item is its own message
	bmu     sync.Mutex
	pending map[*pubsub.Topic][]byte // framed items waiting for the next flush

	mu     sync.Mutex
	certs  map[uint64]int // certificates seen per payment this node entered
	quorum int
	n      int
	done   func(seq uint64)
	sizes  FloorSizes
}

type floorCluster struct {
	nodes  []*floorNode
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	waiting map[uint64]chan struct{}
}

// MeasureGossipFloor runs payments through the bare gossip floor of a
// committee of n (after warmup unmeasured ones), inflight at a time.
//
// With batch > 0 it measures a protocol variant instead: each validator
// collects its certificates and QCs and publishes them every batch as one
// message per topic (transactions stay one message each, as wallets
// submit them). That is what batching certificates would save.
func MeasureGossipFloor(ctx context.Context, chainID uint64, n, warmup, payments, inflight int, sizes FloorSizes, batch time.Duration, logger *slog.Logger) (FloorResult, error) {
	if n < 1 || payments < 1 || inflight < 1 {
		return FloorResult{}, fmt.Errorf("gossip floor: need n, payments and inflight ≥ 1, got %d, %d, %d", n, payments, inflight)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if batch < 0 {
		return FloorResult{}, fmt.Errorf("gossip floor: negative batch interval %s", batch)
	}
	fc, err := startFloor(ctx, chainID, n, sizes, batch, logger)
	if err != nil {
		return FloorResult{}, err
	}
	defer fc.stop()
	var seq atomic.Uint64
	if warmup > 0 {
		if _, err := fc.run(ctx, &seq, warmup, inflight); err != nil {
			return FloorResult{}, fmt.Errorf("gossip floor warm-up: %w", err)
		}
	}
	copies0 := fc.copies()
	cpu0, wall0 := processCPU(), time.Now()
	lat, err := fc.run(ctx, &seq, payments, inflight)
	if err != nil {
		return FloorResult{}, fmt.Errorf("gossip floor: %w", err)
	}
	r := FloorResult{Payments: payments, Wall: time.Since(wall0), CPU: processCPU() - cpu0, Copies: fc.copies() - copies0, Latency: Summarize(lat)}
	heap, err := measureHeapShares()
	if err != nil {
		return r, err
	}
	r.IDHeapPerPayment = float64(heap.GossipIDs) / float64(n) / float64(warmup+payments)
	return r, nil
}

func startFloor(ctx context.Context, chainID uint64, n int, sizes FloorSizes, batch time.Duration, logger *slog.Logger) (_ *floorCluster, err error) {
	file := committeeFile(n, chainID)
	committee, err := file.Committee()
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	fc := &floorCluster{cancel: cancel, waiting: map[uint64]chan struct{}{}}
	defer func() {
		if err != nil {
			fc.stop()
		}
	}()
	cfg := p2p.LocalConfig()
	prod := p2p.DefaultConfig()
	cfg.PubsubCheckInterval = prod.PubsubCheckInterval
	cfg.Scoring.InspectPeriod = prod.Scoring.InspectPeriod
	opts, err := p2p.GossipOptions(cfg, committee)
	if err != nil {
		return nil, err
	}
	for i, k := range validatorKeys(n) {
		key, err := lpcrypto.UnmarshalEd25519PrivateKey(k)
		if err != nil {
			return nil, err
		}
		h, err := p2p.NewHost(cfg, key, committee, nil, logger)
		if err != nil {
			return nil, err
		}
		nd := &floorNode{index: i, host: h, certs: map[uint64]int{}, quorum: committee.Quorum(), n: n, done: fc.complete, sizes: sizes,
			batch: batch, pending: map[*pubsub.Topic][]byte{}}
		fc.nodes = append(fc.nodes, nd)
		nd.ps, err = pubsub.NewGossipSub(runCtx, h.LibP2P(), append(slices.Clip(opts), pubsub.WithMessageIdFn(floorMessageID))...)
		if err != nil {
			return nil, fmt.Errorf("gossip floor: gossipsub: %w", err)
		}
		for s := range cfg.QCShards {
			t, err := fc.join(runCtx, nd, p2p.QCTopic(chainID, 1, s), cfg)
			if err != nil {
				return nil, err
			}
			// Every shard is joined, as a validator does; payments use one.
			if s == floorShard(cfg.QCShards) {
				nd.shard = t
			}
		}
		if nd.tx, err = fc.join(runCtx, nd, p2p.TxTopic(chainID, 1), cfg); err != nil {
			return nil, err
		}
		if nd.bull, err = fc.join(runCtx, nd, p2p.BulletinTopic(chainID, 1), cfg); err != nil {
			return nil, err
		}
	}
	for i, a := range fc.nodes {
		for _, b := range fc.nodes[i+1:] {
			if err := a.host.LibP2P().Connect(ctx, peer.AddrInfo{ID: b.host.ID(), Addrs: b.host.Addrs()}); err != nil {
				return nil, fmt.Errorf("gossip floor: connect: %w", err)
			}
		}
	}
	err = poll(ctx, 10*time.Millisecond, "every floor node sees every other on its topics", func() bool {
		for _, nd := range fc.nodes {
			for _, t := range []*pubsub.Topic{nd.tx, nd.bull, nd.shard} {
				if len(t.ListPeers()) < n-1 {
					return false
				}
			}
		}
		return true
	})
	if err == nil && batch > 0 {
		for _, nd := range fc.nodes {
			fc.wg.Add(1)
			go func() {
				defer fc.wg.Done()
				nd.flushLoop(runCtx)
			}()
		}
	}
	return fc, err
}

// floorShard is the QC shard of the bench's recipient.
func floorShard(shards int) int { return int(recipientAddress()[0]) % shards }

// floorMessageID is a content-derived id like the mesh's: a digest of the
// payload (the payment sequence and signer make each message's distinct).
func floorMessageID(m *pb.Message) string {
	d := sha256.Sum256(m.GetData())
	return string(d[:])
}

func (fc *floorCluster) join(ctx context.Context, nd *floorNode, name string, cfg p2p.Config) (*pubsub.Topic, error) {
	accept := func(context.Context, peer.ID, *pubsub.Message) pubsub.ValidationResult {
		return pubsub.ValidationAccept
	}
	if err := nd.ps.RegisterTopicValidator(name, accept, pubsub.WithValidatorInline(true)); err != nil {
		return nil, fmt.Errorf("gossip floor: validator for %s: %w", name, err)
	}
	t, err := nd.ps.Join(name)
	if err != nil {
		return nil, fmt.Errorf("gossip floor: join %s: %w", name, err)
	}
	if sp := p2p.TopicScoreParams(cfg); sp != nil {
		if err := t.SetScoreParams(sp); err != nil {
			return nil, fmt.Errorf("gossip floor: score params for %s: %w", name, err)
		}
	}
	sub, err := t.Subscribe(pubsub.WithBufferSize(cfg.SubscriptionBufferSize))
	if err != nil {
		return nil, fmt.Errorf("gossip floor: subscribe %s: %w", name, err)
	}
	self := nd.host.ID()
	fc.wg.Add(1)
	go func() {
		defer fc.wg.Done()
		for {
			msg, err := sub.Next(ctx)
			if err != nil {
				return
			}
			if msg.ReceivedFrom != self {
				nd.copies.Add(1)
			}
			nd.handle(ctx, msg.GetData())
		}
	}()
	return t, nil
}

func (fc *floorCluster) copies() int64 {
	var total int64
	for _, nd := range fc.nodes {
		total += nd.copies.Load()
	}
	return total
}

// floorPayload builds a message of size bytes with the floor header.
func floorPayload(size int, seq uint64, kind, signer, entry int) []byte {
	b := make([]byte, max(size, floorHeader))
	binary.BigEndian.PutUint64(b, seq)
	b[8], b[9], b[10] = byte(kind), byte(signer), byte(entry)
	return b
}

// handle reacts to a delivered message as a validator would: a transaction
// from another entry gets this node's certificate; the entry counts
// certificates and publishes the QC at quorum.
func (nd *floorNode) handle(ctx context.Context, data []byte) {
	if len(data) > 0 && data[0] == floorBatchMark {
		for rest := data[1:]; len(rest) >= 2; {
			size := int(binary.BigEndian.Uint16(rest))
			if len(rest) < 2+size {
				return
			}
			nd.handleItem(ctx, rest[2:2+size])
			rest = rest[2+size:]
		}
		return
	}
	nd.handleItem(ctx, data)
}

func (nd *floorNode) handleItem(ctx context.Context, data []byte) {
	if len(data) < floorHeader {
		return
	}
	seq, kind, entry := binary.BigEndian.Uint64(data), data[8], int(data[10])
	switch kind {
	case floorTx:
		if entry != nd.index {
			_ = nd.send(ctx, nd.bull, floorPayload(nd.sizes.Cert, seq, floorCert, nd.index, entry))
		}
	case floorCert:
		if entry != nd.index {
			return
		}
		nd.mu.Lock()
		nd.certs[seq]++
		c := nd.certs[seq]
		if c >= nd.n {
			delete(nd.certs, seq)
		}
		nd.mu.Unlock()
		if c == nd.quorum {
			_ = nd.send(ctx, nd.bull, floorPayload(nd.sizes.QC, seq, floorQC, 0, entry))
			_ = nd.send(ctx, nd.shard, floorPayload(nd.sizes.QC, seq, floorQC, 1, entry))
			nd.done(seq)
		}
	}
}

// Batches: a mark byte (a single item starts with its sequence number's
// high byte, which stays 0), then items framed by a 2-byte length. A batch
// is published when the interval ticks or it reaches floorBatchBytes.
const (
	floorBatchMark  = 0xff
	floorBatchBytes = 256 << 10
)

// send publishes item on t, or queues it for the next batch.
func (nd *floorNode) send(ctx context.Context, t *pubsub.Topic, item []byte) error {
	if nd.batch == 0 {
		return t.Publish(ctx, item)
	}
	nd.bmu.Lock()
	b := nd.pending[t]
	if b == nil {
		b = []byte{floorBatchMark}
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(item)))
	b = append(b, item...)
	full := len(b) >= floorBatchBytes
	if full {
		delete(nd.pending, t)
	} else {
		nd.pending[t] = b
	}
	nd.bmu.Unlock()
	if full {
		return t.Publish(ctx, b)
	}
	return nil
}

func (nd *floorNode) flushLoop(ctx context.Context) {
	tick := time.NewTicker(nd.batch)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		nd.bmu.Lock()
		out := nd.pending
		nd.pending = make(map[*pubsub.Topic][]byte, len(out))
		nd.bmu.Unlock()
		for t, b := range out {
			_ = t.Publish(ctx, b)
		}
	}
}

func (fc *floorCluster) complete(seq uint64) {
	fc.mu.Lock()
	ch, ok := fc.waiting[seq]
	delete(fc.waiting, seq)
	fc.mu.Unlock()
	if ok {
		close(ch)
	}
}

// run drives total payments, inflight at a time, spread over the entries.
// It returns each payment's time from publishing the transaction to the
// entry's quorum.
func (fc *floorCluster) run(ctx context.Context, seq *atomic.Uint64, total, inflight int) ([]time.Duration, error) {
	return driveStreams(ctx, inflight, total, nil, func(ctx context.Context, _ int) (time.Duration, error) {
		start := time.Now()
		err := fc.pay(ctx, seq.Add(1))
		return time.Since(start), err
	})
}

func (fc *floorCluster) pay(ctx context.Context, seq uint64) error {
	entry := fc.nodes[int(seq%uint64(len(fc.nodes)))]
	ch := make(chan struct{})
	fc.mu.Lock()
	fc.waiting[seq] = ch
	fc.mu.Unlock()
	if err := entry.tx.Publish(ctx, floorPayload(entry.sizes.Tx, seq, floorTx, entry.index, entry.index)); err != nil {
		return err
	}
	if err := entry.send(ctx, entry.bull, floorPayload(entry.sizes.Cert, seq, floorCert, entry.index, entry.index)); err != nil {
		return err
	}
	t := time.NewTimer(payTimeout)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-t.C:
		return fmt.Errorf("payment %d: no quorum within %s", seq, payTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (fc *floorCluster) stop() {
	fc.cancel()
	for _, nd := range fc.nodes {
		_ = nd.host.Close()
	}
	fc.wg.Wait()
}

// floorRunFactor is the floor's payments per saturation payment.
const floorRunFactor = 4

// floorBatch is the batch interval of the floor's batched variant.
const floorBatch = 5 * time.Millisecond

// runFloor measures the gossip floor of the saturation run's committee,
// per message and with batched certificates, and reports what each leaves
// of the CPU-bound limit.
func (s *suite) runFloor(ctx context.Context, sat saturation) error {
	sizes, err := RealFloorSizes(s.cfg.ChainID, sat.n)
	if err != nil {
		return fmt.Errorf("gossip floor sizes: %w", err)
	}
	// Bare gossip runs several times faster than the mesh: four times the
	// payments keep the run long enough (seconds) to average out noise.
	payments := floorRunFactor * s.cfg.Payments
	// The most achieved/limit can be when validators do only the minimal
	// work and gossip this pattern: limit work over limit work plus floor.
	work := float64(sat.n) * sat.minimalMicros
	for _, batch := range []time.Duration{0, floorBatch} {
		what := "one message per certificate and QC (SPEC §5)"
		c := fmt.Sprintf("n=%d bare gossip, %d in flight", sat.n, s.cfg.Streams)
		if batch > 0 {
			what = fmt.Sprintf("certificates and QCs batched per validator every %s", batch)
			c = fmt.Sprintf("n=%d bare gossip batched %s, %d in flight", sat.n, batch, s.cfg.Streams)
		}
		s.logf("   gossip floor, %s: %d payments (tx %d B, certificate %d B, QC %d B)", what, payments, sizes.Tx, sizes.Cert, sizes.QC)
		runCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		r, err := MeasureGossipFloor(runCtx, s.cfg.ChainID, sat.n, s.cfg.Warmup, payments, s.cfg.Streams, sizes, batch, s.cfg.Logger)
		cancel()
		if err != nil {
			return err
		}
		p := float64(r.Payments)
		floorCPU := r.CPUPerPayment()
		ceiling := ratio(work, work+floorCPU)
		row := func(metric string, v float64, unit, note string) Row {
			return Row{Section: SectionThroughput, Case: c, Metric: metric, Value: v, Unit: unit, Note: note}
		}
		s.add(
			row("payments/s (gossip only)", p/r.Wall.Seconds(), "/s", fmt.Sprintf("%d payments in %s; %s; same hosts, pubsub settings, topics and sizes as the mesh; nothing decoded, signed, verified or stored", r.Payments, r.Wall.Round(time.Millisecond), what)),
			row("CPU per payment (gossip only)", floorCPU, "µs", fmt.Sprintf("%.0f%% of the mesh's %.0f µs", 100*ratio(floorCPU, sat.cpuPerPayment), sat.cpuPerPayment)),
			row("message copies per payment (gossip only)", float64(r.Copies)/p, "", "received by all validators from peers"),
			row("latency p50 (gossip only)", ms(r.Latency.P50), "ms", "entry publishes the tx → entry holds a quorum"),
			row("pubsub id state per payment per validator", r.IDHeapPerPayment, "B", "id caches and score records, live after a GC; pubsub keeps them 10–70 s (its TTL, then a sweep once a minute)"),
			row("achieved / limit ceiling with this gossip", ceiling, "", fmt.Sprintf("%.0f µs minimal work / (%.0f + %.0f µs gossip) per payment: the ratio if validators did nothing else", work, work, floorCPU)),
		)
		s.logf("   %.0f µs per payment: ceiling of achieved/limit %.2f", floorCPU, ceiling)
	}
	return nil
}
