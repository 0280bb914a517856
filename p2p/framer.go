package p2p

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"

	"github.com/allegro-mesh/allegro/qc"
)

// ErrPublishQueueFull: a topic's publish queue holds PublishQueueSize
// objects already; the object was dropped (and counted).
var ErrPublishQueueFull = errors.New("p2p: publish queue full")

// frameOverhead bounds what a frame adds to its objects' encoded sizes:
// the header and one field tag and length prefix per object.
const (
	frameHeaderOverhead = 64
	frameObjectOverhead = 8
)

// queued is one object waiting in a framer: exactly one of tx, cert, qc
// and pair is set, with its wire encoding made once (encode.go) and the
// size it adds to a frame.
type queued struct {
	tx   *TxMessage
	cert *qc.Certificate
	qc   *qc.QC
	pair *qc.Equivocation
	enc  []byte
	size int
}

// framer is one topic's publisher loop (SPEC §5): whenever it wakes it
// takes everything queued, up to FrameMaxObjects and FrameMaxBytes, and
// publishes it as one frame. At light load a frame holds one object and
// leaves at once; under load objects queue while the previous frame is
// being published (and while congested peers drain, see backpressure.go),
// so frames grow by themselves. Pacing (FrameInterval) makes them grow
// further once they do: after a frame of several objects the next waits
// out the interval, carrying everything queued meanwhile. A QC shard that
// no light client watches through this node is paced after every frame
// (Config.QCUnwatchedInterval). A certificate stream's sender runs the
// same loop with its own flush (certstream.go).
type framer struct {
	m     *Mesh
	kind  TopicKind
	topic string
	wake  chan struct{}
	// interval is the pacing for this mesh's committee (pacedInterval);
	// linger is Config.FrameLinger for a topic.
	interval, linger time.Duration
	// flush sends one frame's objects; queueFull counts n objects refused
	// by a full queue; what names the queue in errors.
	flush     func([]queued)
	queueFull func(n int)
	what      string

	mu    sync.Mutex
	queue []queued
}

// newFramer returns the publisher loop of a topic (not started).
func newFramer(m *Mesh, kind TopicKind, topic string) *framer {
	f := &framer{m: m, kind: kind, topic: topic, wake: make(chan struct{}, 1),
		interval: pacedInterval(m.cfg.FrameInterval, m.committee.N()), linger: m.cfg.FrameLinger,
		queueFull: func(n int) { m.metrics.publishQueueFull(kind, n) }, what: kind.String()}
	f.flush = f.publish
	return f
}

// maxFrameInterval bounds the pacing of large committees: under load a
// payment waits up to one interval per hop.
const maxFrameInterval = 250 * time.Millisecond

// pacedInterval is the pacing interval of a committee of members: base
// (Config.FrameInterval, the interval of a committee of four) per three
// other members, at least base and at most maxFrameInterval (or base, if
// larger). A frame costs each other member its reception, while what one
// validator publishes per payment does not grow with the committee.
func pacedInterval(base time.Duration, members int) time.Duration {
	if base <= 0 {
		return 0
	}
	scaled := time.Duration(float64(base) * float64(members-1) / 3)
	return max(base, min(scaled, maxFrameInterval))
}

// enqueue adds objects to the next frame; all or none fit in the queue.
func (f *framer) enqueue(objs ...queued) error {
	f.mu.Lock()
	if len(f.queue)+len(objs) > f.m.cfg.PublishQueueSize {
		f.mu.Unlock()
		f.queueFull(len(objs))
		return fmt.Errorf("%w (%s, %d objects)", ErrPublishQueueFull, f.what, f.m.cfg.PublishQueueSize)
	}
	f.queue = append(f.queue, objs...)
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
	return nil
}

// loop publishes frames until the mesh stops; objects still queued then
// are dropped.
func (f *framer) loop() {
	defer f.m.wg.Done()
	var timer *time.Timer
	// pause waits d unless the mesh stops first.
	pause := func(d time.Duration) bool {
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		select {
		case <-f.m.ctx.Done():
			return false
		case <-timer.C:
			return true
		}
	}
	var (
		last     time.Time // when the last frame started
		lastSize int       // and how many objects it carried
	)
	for {
		select {
		case <-f.m.ctx.Done():
			return
		case <-f.wake:
		}
		if d := f.linger; d > 0 && !pause(d) {
			return
		}
		for f.pending() {
			// A frame that carried several objects shows objects arrive
			// faster than frames leave: the next one waits out the
			// interval, and everything queued meanwhile joins it. After
			// a frame of one object the next leaves at once, so light
			// load and a chain of dependent objects pay nothing; and the
			// pacing gate (SetPacingGate) can say that nothing else is in
			// flight to join the frame.
			if iv := f.unwatchedInterval(); iv > 0 {
				// Only other members read this shard's frames through
				// us, and they hold its QCs from the bulletin already.
				if d := iv - time.Since(last); d > 0 && !pause(d) {
					return
				}
			} else if iv := f.interval; iv > 0 && lastSize > 1 && f.m.pacingAllowed() {
				if d := iv - time.Since(last); d > 0 && !pause(d) {
					return
				}
			}
			objs := f.take()
			if len(objs) == 0 {
				break
			}
			last, lastSize = time.Now(), len(objs)
			f.flush(objs)
		}
	}
}

// unwatchedInterval returns Config.QCUnwatchedInterval for a QC shard that
// no peer outside the committee subscribes to through this node, else 0.
// The subscriptions are read from pubsub when the loop is about to build
// a frame, so a light client that subscribes meanwhile is served at the
// pace of FrameInterval from the next frame on.
func (f *framer) unwatchedInterval() time.Duration {
	iv := f.m.cfg.QCUnwatchedInterval
	if f.kind != KindQC || iv <= 0 {
		return 0
	}
	for _, p := range f.m.ListPeers(f.topic) {
		if _, member := f.m.host.committee.member(p); !member {
			return 0
		}
	}
	return iv
}

// pending reports whether objects wait for a frame.
func (f *framer) pending() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.queue) > 0
}

// take removes the next frame's objects from the queue: in order, at least
// one, then as many as fit FrameMaxObjects and FrameMaxBytes. A QC already
// accepted on this topic (another validator published it while ours
// waited) is dropped: the frame would carry nothing new for it.
func (f *framer) take() []queued {
	f.mu.Lock()
	defer f.mu.Unlock()
	cfg := f.m.cfg
	var out []queued
	size := frameHeaderOverhead
	i := 0
	for ; i < len(f.queue) && len(out) < cfg.FrameMaxObjects; i++ {
		o := f.queue[i]
		if o.qc != nil && f.m.pipes.accepted.qcSeen(f.kind, o.qc.TxHash) {
			f.m.metrics.publishSkipped(f.kind)
			continue
		}
		if len(out) > 0 && size+o.size > cfg.FrameMaxBytes {
			break
		}
		out = append(out, o)
		size += o.size
	}
	rest := copy(f.queue, f.queue[i:])
	clear(f.queue[rest:])
	f.queue = f.queue[:rest]
	if cap(f.queue) > 4*cfg.FrameMaxObjects && rest < cfg.FrameMaxObjects {
		// Give back a burst's backing array once the burst is over.
		f.queue = append([]queued(nil), f.queue...)
	}
	return out
}

// publish sends objs as one frame. Errors are counted and logged: the
// objects are lost to gossip, and the callers' own repair paths
// (re-announcement, anti-entropy, staggered QC publication) recover them.
func (f *framer) publish(objs []queued) {
	m := f.m
	local := &frameObjects{header: FrameHeader{Publisher: m.selfID, Seq: m.seq.Add(1)}, local: true}
	for _, o := range objs {
		switch {
		case o.tx != nil:
			local.txs = append(local.txs, o.tx)
		case f.kind == KindQC:
			local.qcs = append(local.qcs, o.qc)
		case o.cert != nil:
			local.items = append(local.items, &BulletinItem{Cert: o.cert})
		case o.qc != nil:
			local.items = append(local.items, &BulletinItem{QC: o.qc})
		case o.pair != nil:
			local.items = append(local.items, &BulletinItem{Cert: &o.pair.First}, &BulletinItem{Cert: &o.pair.Second})
		}
	}
	data, err := encodeFrame(f.kind, local.header, objs)
	if err == nil {
		err = m.publishFrame(m.ctx, f.kind, f.topic, data, local, len(objs))
	}
	if err != nil && m.ctx.Err() == nil {
		m.logger.Warn("p2p: frame not published", "topic", f.topic, "objects", len(objs), "err", err)
	}
}

// framerFor returns the publisher loop of a topic, starting it on first
// use.
func (m *Mesh) framerFor(k TopicKind, name string) (*framer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.runningLocked(); err != nil {
		return nil, err
	}
	if f, ok := m.framers[name]; ok {
		return f, nil
	}
	if err := m.joinLocked(name, false); err != nil {
		return nil, err
	}
	f := newFramer(m, k, name)
	m.framers[name] = f
	m.wg.Add(1)
	go f.loop()
	return f, nil
}

// runningLocked returns ErrNotStarted or ErrStopped unless the mesh runs;
// m.mu must be held.
func (m *Mesh) runningLocked() error {
	switch m.state {
	case stateNew:
		return ErrNotStarted
	case stateStopped:
		return ErrStopped
	}
	return nil
}

// publishFrame sends a frame's bytes on a topic, passing its objects as the
// message's validator data so the local validation accepts it without
// decoding or verifying. It first waits (bounded) for congested committee
// peers' outbound queues.
func (m *Mesh) publishFrame(ctx context.Context, k TopicKind, name string, data []byte, objs *frameObjects, n int) error {
	m.mu.Lock()
	jt := m.joined[name]
	m.mu.Unlock()
	if jt == nil {
		return fmt.Errorf("p2p: publish on %s: topic not joined", name)
	}
	err := m.waitOutbound(ctx)
	if err == nil {
		err = jt.topic.Publish(ctx, data, pubsub.WithValidatorData(objs))
	}
	m.metrics.publish(k, err, n)
	if err != nil {
		return fmt.Errorf("p2p: publish on %s: %w", name, err)
	}
	return nil
}

func queuedTx(tx *TxMessage) (queued, error) {
	enc, err := encodeTx(tx.Request)
	return queued{tx: tx, enc: enc, size: len(enc) + frameObjectOverhead}, err
}

func queuedCert(c *qc.Certificate) queued {
	enc := encodeCert(c)
	return queued{cert: c, enc: enc, size: len(enc) + frameObjectOverhead}
}

func queuedQC(q *qc.QC) queued {
	enc := encodeQC(q)
	return queued{qc: q, enc: enc, size: len(enc) + frameObjectOverhead}
}

func queuedPair(e *qc.Equivocation) queued {
	enc := encodePair(e)
	return queued{pair: e, enc: enc, size: len(enc) + frameObjectOverhead}
}
