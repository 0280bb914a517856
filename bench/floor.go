package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	lpcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/validator"
)

// The gossip floor runs the protocol's message pattern on bare gossipsub:
// the same libp2p hosts (p2p.NewHost), pubsub configuration
// (p2p.GossipOptions, topic scores), topics and object sizes as the mesh,
// and per payment the same objects — the entry publishes the transaction,
// every validator publishes a certificate when it sees it, and the entry
// publishes the QC on the bulletin and on its QC shard once it holds a
// quorum — but validators accept every message and nothing is decoded,
// signed, verified, stored or served over an API. Its CPU per payment is
// what the gossip pattern costs before any of the protocol's work: a floor
// under the mesh, and so a ceiling on achieved/limit that no change inside
// the validators can lift. A FloorPattern says how objects become
// messages: one message each (mesh protocol 1), or frames (protocol 2).

// FloorSizes are the sizes of the floor's objects as they sit in a frame,
// and what a frame adds beside them.
type FloorSizes struct {
	Tx, Cert, QC int
	// FrameHeader is the bytes of a frame that are not its objects.
	FrameHeader int
}

// FloorPattern is how the floor's validators turn objects into gossip
// messages.
type FloorPattern struct {
	// Frames: per node and topic one publisher loop that, whenever it
	// wakes, publishes everything queued as one message, as the mesh's
	// framer does (SPEC §5, protocol 2). Otherwise every object is its own
	// message, published at once (protocol 1).
	Frames bool
	// Linger is how long a publisher loop waits after waking before it
	// takes its queue, so more objects join the frame (frames only).
	Linger time.Duration
	// Linear sends each certificate to its payment's entry over a direct
	// stream instead of gossiping it on the bulletin; the entry counts its
	// own without sending it, and floods only the QC (the linear
	// certificate flow proposed as a revision of SPEC §5, measured here
	// before any protocol change). With Frames, the certificates queued
	// for one entry leave in one write.
	Linear bool
}

// The floor's patterns.
var (
	FloorPerObject = FloorPattern{}
	FloorFrames    = FloorPattern{Frames: true}
	FloorLinear    = FloorPattern{Frames: true, Linear: true}
)

// String names the pattern in row cases.
func (p FloorPattern) String() string {
	if p.Linear {
		return "linear certificates, " + FloorPattern{Frames: p.Frames, Linger: p.Linger}.String()
	}
	switch {
	case !p.Frames:
		return "one message per object"
	case p.Linger > 0:
		return fmt.Sprintf("frames, %s linger", p.Linger)
	}
	return "frames"
}

// describe says what the pattern does, for row notes.
func (p FloorPattern) describe() string {
	if p.Linear {
		return "certificates to the entry over a direct stream, only the transaction and the QC gossiped; " + FloorPattern{Frames: p.Frames, Linger: p.Linger}.describe()
	}
	switch {
	case !p.Frames:
		return "every transaction, certificate and QC its own message (mesh protocol 1)"
	case p.Linger > 0:
		return fmt.Sprintf("frames: per node and topic a publisher loop that waits %s after waking, then publishes everything queued as one message", p.Linger)
	}
	return "frames: per node and topic a publisher loop that publishes everything queued as one message whenever it wakes, no timer (mesh protocol 2)"
}

func (p FloorPattern) validate() error {
	switch {
	case p.Linger < 0:
		return fmt.Errorf("gossip floor: negative linger %s", p.Linger)
	case p.Linger > 0 && !p.Frames:
		return errors.New("gossip floor: a linger needs frames")
	}
	return nil
}

// FloorResult is one floor run.
type FloorResult struct {
	Payments int
	Wall     time.Duration
	CPU      time.Duration
	// Published are the messages all validators published, and
	// ObjectsPublished the objects in them.
	Published, ObjectsPublished int64
	// Copies are the messages all validators received from peers (their
	// own publishes excluded), and ObjectCopies the objects in them.
	Copies, ObjectCopies int64
	// Latency is each payment's time from its transaction to the entry's
	// quorum.
	Latency Summary
	// BytesSent is the libp2p stream payload all validators sent, every
	// protocol (gossip, its control messages and direct streams).
	BytesSent int64
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

// ObjectsPerMessage returns the mean objects per published message.
func (r FloorResult) ObjectsPerMessage() float64 {
	return ratio(float64(r.ObjectsPublished), float64(r.Published))
}

// An object of the floor: payment sequence, kind, signer and entry, then
// filler up to its real size. A single object's first byte is its
// sequence number's high byte, which stays 0; a frame's is floorFrameMark.
const (
	floorHeader = 11
	floorTx     = 0
	floorCert   = 1
	floorQC     = 2
)

// A frame of the floor: floorFrameMark, the header's length (2 bytes), the
// publisher's index (1) and its frame sequence (8), filler up to the
// header's real size; then each object after its length (4 bytes). Its
// objects are sized so that object and length take the object's place in
// a real frame (FloorSizes), which keeps the frame its real size.
const (
	floorFrameMark      = 0xff
	floorFrameMinHeader = 1 + 2 + 1 + 8
	floorLengthPrefix   = 4
)

// RealFloorSizes encodes one payment, certificate and QC of a committee of
// n as the mesh does and returns their sizes in a frame, and a frame
// header's.
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
	// Each object as it sits in a frame: its bytes and its field's tag and
	// length prefix.
	inFrame := func(m proto.Message) int {
		n := proto.Size(m)
		return n + 1 + protowire.SizeVarint(uint64(n))
	}
	// A frame header as the mesh writes it: a 32-byte publisher key and a
	// sequence that starts from the clock.
	header := proto.Size(&fastpayv1.TxFrame{Header: &fastpayv1.FrameHeader{Publisher: make([]byte, ed25519.PublicKeySize), Seq: uint64(time.Now().UnixNano())}})
	return FloorSizes{Tx: inFrame(req), Cert: inFrame(fastpayv1.NewValidatorCertificate(&cert)), QC: inFrame(fastpayv1.NewQuorumCertificate(q)), FrameHeader: header}, nil
}

type floorNode struct {
	index   int
	host    *p2p.Host
	ps      *pubsub.PubSub
	tx      *pubsub.Topic
	bull    *pubsub.Topic
	shard   *pubsub.Topic
	pattern FloorPattern
	sizes   FloorSizes
	// framers are the publisher loops by topic (frames only).
	framers  map[*pubsub.Topic]*floorFramer
	frameSeq atomic.Uint64
	// direct are the certificate streams to other entries (Linear only).
	direct *floorDirect
	peers  []peer.ID // every node's peer id, by index

	published, objectsPublished atomic.Int64
	copies, objectCopies        atomic.Int64

	mu     sync.Mutex
	certs  map[uint64]int // certificates seen per payment this node entered
	quorum int
	n      int
	done   func(seq uint64)
}

type floorCluster struct {
	nodes  []*floorNode
	cancel context.CancelFunc
	wg     sync.WaitGroup
	bytes  *ByteCounter

	mu      sync.Mutex
	waiting map[uint64]chan struct{}
}

// floorCounts are a floor cluster's message counters, summed over nodes.
type floorCounts struct {
	published, objectsPublished, copies, objectCopies int64
}

func (fc *floorCluster) counts() floorCounts {
	var c floorCounts
	for _, nd := range fc.nodes {
		c.published += nd.published.Load()
		c.objectsPublished += nd.objectsPublished.Load()
		c.copies += nd.copies.Load()
		c.objectCopies += nd.objectCopies.Load()
	}
	return c
}

// MeasureGossipFloor runs payments through the bare gossip floor of a
// committee of n with the given pattern (after warmup unmeasured ones),
// inflight at a time, its hosts dialling transport first ("": the mesh's
// default).
func MeasureGossipFloor(ctx context.Context, chainID uint64, n, warmup, payments, inflight int, sizes FloorSizes, pattern FloorPattern, transport string, logger *slog.Logger) (FloorResult, error) {
	if n < 1 || payments < 1 || inflight < 1 {
		return FloorResult{}, fmt.Errorf("gossip floor: need n, payments and inflight ≥ 1, got %d, %d, %d", n, payments, inflight)
	}
	if err := pattern.validate(); err != nil {
		return FloorResult{}, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	fc, err := startFloor(ctx, chainID, n, sizes, pattern, transport, logger)
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
	c0, bytes0 := fc.counts(), fc.bytes.Sent()
	cpu0, wall0 := processCPU(), time.Now()
	lat, err := fc.run(ctx, &seq, payments, inflight)
	if err != nil {
		return FloorResult{}, fmt.Errorf("gossip floor: %w", err)
	}
	wall, cpu := time.Since(wall0), processCPU()-cpu0
	c := fc.counts()
	r := FloorResult{Payments: payments, Wall: wall, CPU: cpu, Latency: Summarize(lat),
		Published: c.published - c0.published, ObjectsPublished: c.objectsPublished - c0.objectsPublished,
		Copies: c.copies - c0.copies, ObjectCopies: c.objectCopies - c0.objectCopies,
		BytesSent: fc.bytes.Sent() - bytes0}
	heap, err := measureHeapShares()
	if err != nil {
		return r, err
	}
	r.IDHeapPerPayment = float64(heap.GossipIDs) / float64(n) / float64(warmup+payments)
	return r, nil
}

func startFloor(ctx context.Context, chainID uint64, n int, sizes FloorSizes, pattern FloorPattern, transport string, logger *slog.Logger) (_ *floorCluster, err error) {
	file := committeeFile(n, chainID)
	committee, err := file.Committee()
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	fc := &floorCluster{cancel: cancel, waiting: map[uint64]chan struct{}{}, bytes: NewByteCounter()}
	defer func() {
		if err != nil {
			fc.stop()
		}
	}()
	cfg := localP2P(transport)
	prod := p2p.DefaultConfig()
	cfg.PubsubCheckInterval = prod.PubsubCheckInterval
	cfg.Scoring.InspectPeriod = prod.Scoring.InspectPeriod
	cfg.HostOptions = []libp2p.Option{libp2p.BandwidthReporter(fc.bytes)}
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
			pattern: pattern, framers: map[*pubsub.Topic]*floorFramer{}}
		fc.nodes = append(fc.nodes, nd)
		if pattern.Linear {
			nd.direct = newFloorDirect(nd)
			// A handler ends when its stream does: the host's Close
			// resets every stream.
			h.LibP2P().SetStreamHandler(floorCertProtocol, func(st network.Stream) { nd.readDirect(runCtx, st) })
		}
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
		if pattern.Frames {
			for _, t := range []*pubsub.Topic{nd.tx, nd.bull, nd.shard} {
				f := &floorFramer{nd: nd, topic: t, wake: make(chan struct{}, 1)}
				nd.framers[t] = f
				fc.wg.Add(1)
				go func() {
					defer fc.wg.Done()
					f.loop(runCtx)
				}()
			}
		}
	}
	for _, nd := range fc.nodes {
		for _, other := range fc.nodes {
			nd.peers = append(nd.peers, other.host.ID())
		}
	}
	// Connecting and exchanging subscriptions takes seconds even for large
	// committees; past floorStartTime something is broken, so say what.
	startCtx, cancelStart := context.WithTimeout(ctx, floorStartTime)
	defer cancelStart()
	for i, a := range fc.nodes {
		for _, b := range fc.nodes[i+1:] {
			if err := a.host.LibP2P().Connect(startCtx, peer.AddrInfo{ID: b.host.ID(), Addrs: b.host.Addrs()}); err != nil {
				return nil, fmt.Errorf("gossip floor: connect: %w", err)
			}
		}
	}
	var lacking string
	err = poll(startCtx, 10*time.Millisecond, "every floor node sees every other on its topics", func() bool {
		for _, nd := range fc.nodes {
			for _, t := range []*pubsub.Topic{nd.tx, nd.bull, nd.shard} {
				if got := len(t.ListPeers()); got < n-1 {
					lacking = fmt.Sprintf("node %d sees %d of %d peers on %s, with %d connections", nd.index, got, n-1, t.String(), len(nd.host.LibP2P().Network().Conns()))
					return false
				}
			}
		}
		return true
	})
	if err != nil && lacking != "" {
		err = fmt.Errorf("%w (%s)", err, lacking)
	}
	return fc, err
}

// floorStartTime bounds connecting a floor's nodes and their subscriptions.
const floorStartTime = 2 * time.Minute

// floorShard is the QC shard of the bench's recipient.
func floorShard(shards int) int { return int(recipientAddress()[0]) % shards }

// floorMessageID is a content-derived id like the mesh's: a digest of the
// payload (payment sequence and signer make each object distinct, and
// publisher and frame sequence each frame).
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
			objects := nd.handle(ctx, msg.GetData())
			if msg.ReceivedFrom != self {
				nd.copies.Add(1)
				nd.objectCopies.Add(int64(objects))
			}
		}
	}()
	return t, nil
}

// floorObject builds an object of size bytes with the floor header.
func floorObject(size int, seq uint64, kind, signer, entry int) []byte {
	b := make([]byte, max(size, floorHeader))
	binary.BigEndian.PutUint64(b, seq)
	b[8], b[9], b[10] = byte(kind), byte(signer), byte(entry)
	return b
}

// object builds one of this node's objects, sized for its pattern: in a
// frame the length prefix takes part of the object's real size.
func (nd *floorNode) object(size int, seq uint64, kind, signer, entry int) []byte {
	if nd.pattern.Frames {
		size -= floorLengthPrefix
	}
	return floorObject(size, seq, kind, signer, entry)
}

// encodeFloorFrame builds a frame of objs with a header of headerSize
// bytes (at least floorFrameMinHeader).
func encodeFloorFrame(headerSize, publisher int, seq uint64, objs [][]byte) []byte {
	headerSize = max(headerSize, floorFrameMinHeader)
	size := headerSize
	for _, o := range objs {
		size += floorLengthPrefix + len(o)
	}
	b := make([]byte, headerSize, size)
	b[0] = floorFrameMark
	binary.BigEndian.PutUint16(b[1:], uint16(headerSize))
	b[3] = byte(publisher)
	binary.BigEndian.PutUint64(b[4:], seq)
	for _, o := range objs {
		b = binary.BigEndian.AppendUint32(b, uint32(len(o)))
		b = append(b, o...)
	}
	return b
}

// isFloorFrame reports whether a message is a frame, not a single object.
func isFloorFrame(data []byte) bool { return len(data) > 0 && data[0] == floorFrameMark }

// floorFrameObjects returns a frame's objects; of a damaged frame, those
// before the damage.
func floorFrameObjects(data []byte) [][]byte {
	if !isFloorFrame(data) || len(data) < floorFrameMinHeader {
		return nil
	}
	headerSize := int(binary.BigEndian.Uint16(data[1:]))
	if headerSize < floorFrameMinHeader || headerSize > len(data) {
		return nil
	}
	var out [][]byte
	for rest := data[headerSize:]; len(rest) >= floorLengthPrefix; {
		size := int(binary.BigEndian.Uint32(rest))
		if size > len(rest)-floorLengthPrefix {
			break
		}
		out = append(out, rest[floorLengthPrefix:floorLengthPrefix+size])
		rest = rest[floorLengthPrefix+size:]
	}
	return out
}

// floorOutbox collects what handling a message makes a node send.
type floorOutbox struct {
	bulletin, shard [][]byte
	quorums         []uint64 // payments this node entered that reached their quorum
	// direct are certificates for other entries' direct streams (Linear).
	direct []directObject
}

type directObject struct {
	entry int
	data  []byte
}

// handle reacts to a delivered message as a validator would (see
// handleObject), sends what that makes it send, and returns the number of
// objects the message carried.
func (nd *floorNode) handle(ctx context.Context, data []byte) int {
	objs := [][]byte{data}
	if isFloorFrame(data) {
		objs = floorFrameObjects(data)
	}
	nd.react(ctx, objs)
	return len(objs)
}

// react handles objects as a validator would and sends what that makes it
// send.
func (nd *floorNode) react(ctx context.Context, objs [][]byte) {
	var out floorOutbox
	for _, o := range objs {
		nd.handleObject(o, &out)
	}
	for _, d := range out.direct {
		nd.direct.enqueue(d.entry, d.data)
	}
	_ = nd.send(ctx, nd.bull, out.bulletin...)
	_ = nd.send(ctx, nd.shard, out.shard...)
	for _, seq := range out.quorums {
		nd.done(seq)
	}
}

// handleObject: a transaction from another entry gets this node's
// certificate; the entry counts certificates and sends the QC on the
// bulletin and on the shard at quorum.
func (nd *floorNode) handleObject(data []byte, out *floorOutbox) {
	if len(data) < floorHeader {
		return
	}
	seq, kind, entry := binary.BigEndian.Uint64(data), data[8], int(data[10])
	switch kind {
	case floorTx:
		switch {
		case entry == nd.index:
		case nd.pattern.Linear:
			out.direct = append(out.direct, directObject{entry, nd.object(nd.sizes.Cert, seq, floorCert, nd.index, entry)})
		default:
			out.bulletin = append(out.bulletin, nd.object(nd.sizes.Cert, seq, floorCert, nd.index, entry))
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
			out.bulletin = append(out.bulletin, nd.object(nd.sizes.QC, seq, floorQC, 0, entry))
			out.shard = append(out.shard, nd.object(nd.sizes.QC, seq, floorQC, 1, entry))
			out.quorums = append(out.quorums, seq)
		}
	}
}

// send publishes objs on t as the pattern says: each as its own message
// now, or queued for the topic's next frame.
func (nd *floorNode) send(ctx context.Context, t *pubsub.Topic, objs ...[]byte) error {
	if len(objs) == 0 {
		return nil
	}
	if nd.pattern.Frames {
		nd.framers[t].enqueue(objs...)
		return nil
	}
	for _, o := range objs {
		if err := nd.publish(ctx, t, o, 1); err != nil {
			return err
		}
	}
	return nil
}

// publish sends one message of objects objects and counts it.
func (nd *floorNode) publish(ctx context.Context, t *pubsub.Topic, data []byte, objects int) error {
	if err := t.Publish(ctx, data); err != nil {
		return err
	}
	nd.published.Add(1)
	nd.objectsPublished.Add(int64(objects))
	return nil
}

// floorFramer is one topic's publisher loop on a floor node, as the mesh's
// (p2p/framer.go): whenever it wakes, after the pattern's linger, it takes
// everything queued, up to the mesh's default frame limits, and publishes
// it as one message.
type floorFramer struct {
	nd    *floorNode
	topic *pubsub.Topic
	wake  chan struct{}

	mu    sync.Mutex
	queue [][]byte
}

// enqueue adds objs to the next frame, all at once.
func (f *floorFramer) enqueue(objs ...[]byte) {
	f.mu.Lock()
	f.queue = append(f.queue, objs...)
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *floorFramer) loop(ctx context.Context) {
	var linger *time.Timer
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		}
		if d := f.nd.pattern.Linger; d > 0 {
			if linger == nil {
				linger = time.NewTimer(d)
			} else {
				linger.Reset(d)
			}
			select {
			case <-ctx.Done():
				return
			case <-linger.C:
			}
		}
		for {
			objs := f.take()
			if len(objs) == 0 {
				break
			}
			frame := encodeFloorFrame(f.nd.sizes.FrameHeader, f.nd.index, f.nd.frameSeq.Add(1), objs)
			_ = f.nd.publish(ctx, f.topic, frame, len(objs))
		}
	}
}

// take removes the next frame's objects from the queue: at least one, then
// as many as fit the mesh's default frame limits.
func (f *floorFramer) take() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	size := max(f.nd.sizes.FrameHeader, floorFrameMinHeader)
	i := 0
	for ; i < len(f.queue) && i < p2p.DefaultFrameMaxObjects; i++ {
		o := floorLengthPrefix + len(f.queue[i])
		if i > 0 && size+o > p2p.DefaultFrameMaxBytes {
			break
		}
		size += o
	}
	out := slices.Clone(f.queue[:i])
	rest := copy(f.queue, f.queue[i:])
	clear(f.queue[rest:])
	f.queue = f.queue[:rest]
	return out
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
// It returns each payment's time from sending the transaction to the
// entry's quorum.
func (fc *floorCluster) run(ctx context.Context, seq *atomic.Uint64, total, inflight int) ([]time.Duration, error) {
	return driveStreams(ctx, inflight, total, nil, func(ctx context.Context, _ int) (time.Duration, error) {
		start := time.Now()
		err := fc.pay(ctx, seq.Add(1))
		return time.Since(start), err
	})
}

// pay makes payment seq through its entry: the transaction on the tx
// topic, the entry's certificate on the bulletin, then waits for the
// entry's quorum.
func (fc *floorCluster) pay(ctx context.Context, seq uint64) error {
	entry := fc.nodes[int(seq%uint64(len(fc.nodes)))]
	ch := make(chan struct{})
	fc.mu.Lock()
	fc.waiting[seq] = ch
	fc.mu.Unlock()
	if err := entry.send(ctx, entry.tx, entry.object(entry.sizes.Tx, seq, floorTx, entry.index, entry.index)); err != nil {
		return err
	}
	own := entry.object(entry.sizes.Cert, seq, floorCert, entry.index, entry.index)
	if entry.pattern.Linear {
		// The entry's own certificate counts where it is made.
		entry.react(ctx, [][]byte{own})
	} else if err := entry.send(ctx, entry.bull, own); err != nil {
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
		if nd.direct != nil {
			nd.direct.cancel()
		}
	}
	// Closing the hosts ends any write still blocked on a stream.
	for _, nd := range fc.nodes {
		_ = nd.host.Close()
	}
	for _, nd := range fc.nodes {
		if nd.direct != nil {
			nd.direct.wg.Wait()
		}
	}
	fc.wg.Wait()
}

// floorRunFactor is the floor's payments per saturation payment.
const floorRunFactor = 4

// floorLinger is the linger of the floor's third pattern: what waiting for
// more objects buys over frames that leave when their loop wakes.
const floorLinger = 2 * time.Millisecond

// floorPatterns are the patterns runFloor measures, in order.
var floorPatterns = []FloorPattern{FloorPerObject, FloorFrames, {Frames: true, Linger: floorLinger}, FloorLinear}

// runFloor measures the gossip floor of the saturation run's committee in
// each pattern and reports what each leaves of the CPU-bound limit.
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
	mesh := "the mesh's validators'"
	if !sat.ownProcessLoad {
		mesh = "the mesh's (validators and load generator)"
	}
	for _, pattern := range floorPatterns {
		c := fmt.Sprintf("n=%d bare gossip, %s, %d in flight", sat.n, pattern, s.cfg.Streams)
		s.logf("   gossip floor, %s: %d payments (in a frame: tx %d B, certificate %d B, QC %d B; frame header %d B)",
			pattern, payments, sizes.Tx, sizes.Cert, sizes.QC, sizes.FrameHeader)
		runCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		r, err := MeasureGossipFloor(runCtx, s.cfg.ChainID, sat.n, s.cfg.Warmup, payments, s.cfg.Streams, sizes, pattern, s.cfg.Transport, s.cfg.Logger)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w", pattern, err)
		}
		p := float64(r.Payments)
		perValidator := p * float64(sat.n)
		floorCPU := r.CPUPerPayment()
		ceiling := ratio(work, work+floorCPU)
		row := func(metric string, v float64, unit, note string) Row {
			return Row{Section: SectionThroughput, Case: c, Metric: metric, Value: v, Unit: unit, Note: note}
		}
		s.add(
			row("payments/s (gossip only)", p/r.Wall.Seconds(), "/s", fmt.Sprintf("%d payments in %s; %s; same hosts, pubsub settings, topics and sizes as the mesh; nothing decoded, signed, verified or stored", r.Payments, r.Wall.Round(time.Millisecond), pattern.describe())),
			row("CPU per payment (gossip only)", floorCPU, "µs", fmt.Sprintf("%.0f%% of %s %.0f µs", 100*ratio(floorCPU, sat.cpuPerPayment), mesh, sat.cpuPerPayment)),
			row("message copies per payment per validator (gossip only)", float64(r.Copies)/perValidator, "", "messages received from peers"),
			row("object copies per payment per validator (gossip only)", float64(r.ObjectCopies)/perValidator, "", "objects in them"),
			row("objects per message (gossip only)", r.ObjectsPerMessage(), "", fmt.Sprintf("%d messages published", r.Published)),
			row("latency p50 (gossip only)", ms(r.Latency.P50), "ms", "entry sends the tx → entry holds a quorum"),
			row("bytes sent per payment per validator (gossip only)", float64(r.BytesSent)/perValidator, "B", "libp2p stream payload, all protocols"),
			row("pubsub id state per payment per validator", r.IDHeapPerPayment, "B", "id caches and score records, live after a GC; pubsub keeps them 10–70 s (its TTL, then a sweep once a minute)"),
			row("achieved / limit ceiling with this gossip", ceiling, "", fmt.Sprintf("%.0f µs minimal work / (%.0f + %.0f µs gossip) per payment: the ratio if validators did nothing else", work, work, floorCPU)),
		)
		s.logf("   %.0f µs per payment, %.1f objects per message: ceiling of achieved/limit %.2f", floorCPU, r.ObjectsPerMessage(), ceiling)
	}
	return nil
}
