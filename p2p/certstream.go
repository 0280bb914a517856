package p2p

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/allegro-mesh/allegro/qc"
)

// The certificate stream (Config.CertRouting "entry", the proposed SPEC §5
// revision 3 in docs/proposal-linear-certificates.md): a validator sends
// the certificates it signs for a transaction to the transaction's entry
// (the member whose tx frame brought it) instead of flooding them on the
// bulletin, so a payment costs each member about one frame reception per
// topic rather than one per member. The entry forms the QC and floods it.
//
// A stream carries frames from a member to another: each frame is
// a BulletinFrame holding only its sender's own certificates, prefixed by
// its length as an unsigned varint; the other way, the receiver writes
// unsigned varints counting the frames it has taken (accepted, or ignored
// as repeats). The receiver validates each frame like a
// bulletin frame (decode and caps; the sender a member and every
// certificate its own; every signature verified in one batch; repeats
// dropped) and delivers what is new to the bulletin handler. Nothing of a
// frame that fails is delivered. Without pubsub's peer score to penalise
// the sender, a provably bad frame resets the stream and counts against
// the sender; past certStreamStrikes within certStreamStrikeMemory its
// certificate streams are refused for certStreamBlockTime, which leaves it
// the bulletin, where peer scoring applies.

// CertProtocol returns the certificate stream protocol of a committee.
func CertProtocol(chainID, epoch uint64) protocol.ID {
	return protocol.ID(fmt.Sprintf("/allegro/%d/%d/certs/3", chainID, epoch))
}

const (
	certStreamStrikes      = 3
	certStreamStrikeMemory = 10 * time.Minute
	certStreamBlockTime    = 10 * time.Minute
	// certStreamMaxInbound bounds the certificate streams one member may
	// hold open to this node at once (a reconnect may briefly overlap two).
	certStreamMaxInbound = 2
	// certStreamWriteTimeout bounds writing one frame: a peer that stops
	// reading must not hold a sender's certificates back indefinitely.
	certStreamWriteTimeout = 5 * time.Second
	// certStreamRetry is how long after a failed stream the frames for
	// that member go to the bulletin without trying the stream again.
	certStreamRetry = time.Second
	// certStreamAckTimeout bounds the wait for a frame's acknowledgement:
	// long enough for a loaded receiver to work through what it has
	// queued, short of the re-announcement that would otherwise recover a
	// crashed entry's payments.
	certStreamAckTimeout = 2 * time.Second
)

// ErrNoCertStream: a certificate cannot go to its entry over the
// certificate stream (the entry is this node or not a member).
var ErrNoCertStream = errors.New("p2p: no certificate stream to that validator")

// RoutesCertificatesToEntry reports whether this node sends its
// certificates to each transaction's entry (Config.CertRouting "entry").
func (m *Mesh) RoutesCertificatesToEntry() bool {
	return m.member && m.cfg.CertRouting == CertRoutingEntry
}

// SendCertificate queues one of this node's own certificates for the
// committee member to, over the certificate stream. When the stream cannot
// be opened, fails, or goes unacknowledged, the certificates waiting for
// it or sent without acknowledgement are published on the bulletin
// instead, so none is lost to a failed entry. Validators only.
func (m *Mesh) SendCertificate(_ context.Context, to qc.ValidatorID, cert qc.Certificate) error {
	if !m.member {
		return ErrNotCommitteeMember
	}
	if cert.Signer != m.selfID {
		return fmt.Errorf("p2p: send certificate: signed by %s, not by this node", cert.Signer.Hex())
	}
	if to == m.selfID || !m.committee.Contains(to) {
		return fmt.Errorf("%w: %s", ErrNoCertStream, to.Hex())
	}
	pid, err := PeerIDFromValidatorID(to)
	if err != nil {
		return fmt.Errorf("p2p: send certificate: %w", err)
	}
	s, err := m.certSenderFor(pid)
	if err != nil {
		return fmt.Errorf("p2p: send certificate: %w", err)
	}
	m.pipes.verifier.Remember(&cert)
	return s.enqueue(queuedCert(&cert))
}

// certSender sends one member's certificate stream: a framer (the topics'
// publisher loop, with its pacing) whose frames go to the stream. Frames
// written but not yet acknowledged are kept: when the stream fails or the
// receiver does not acknowledge within certStreamAckTimeout (a crashed
// entry whose connection still looks open), their certificates are
// published on the bulletin, so none is lost to a failed entry.
type certSender struct {
	*framer
	to peer.ID

	mu sync.Mutex
	// stream is opened by the framer's loop and cleared by fail; the
	// mesh's end resets it (readAcks).
	stream    network.Stream
	unacked   []sentCertFrame
	downUntil time.Time
	ackTimer  *time.Timer
}

type sentCertFrame struct {
	objs []queued
	at   time.Time
}

var (
	errCertStreamDown = errors.New("stream failed recently")
	errCertAckTimeout = errors.New("frames not acknowledged in time")
)

func (m *Mesh) certSenderFor(to peer.ID) (*certSender, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.runningLocked(); err != nil {
		return nil, err
	}
	if s, ok := m.certSenders[to]; ok {
		return s, nil
	}
	d := m.committee.Domain()
	s := &certSender{to: to}
	s.framer = &framer{m: m, kind: KindBulletin, topic: string(CertProtocol(d.ChainID, d.Epoch)), wake: make(chan struct{}, 1),
		interval: pacedInterval(m.cfg.FrameInterval, m.committee.N()), flush: s.send,
		queueFull: func(int) { m.metrics.certFrame("sent", "queue_full") }, what: "certificate stream"}
	s.ackTimer = time.AfterFunc(time.Hour, s.checkAcks)
	s.ackTimer.Stop()
	m.certSenders[to] = s
	m.wg.Add(1)
	go s.loop()
	return s, nil
}

// send writes objs as one frame, or publishes them on the bulletin when the
// stream cannot be used.
func (s *certSender) send(objs []queued) {
	if err := s.write(objs); err != nil {
		s.fallback(objs, err)
		return
	}
	s.m.metrics.certFrame("sent", "ok")
}

// write sends objs as one frame on the stream, opening it if needed. An
// error means objs were not handed to the stream; once they are, a failure
// is the stream's (fail), which takes care of them.
func (s *certSender) write(objs []queued) error {
	m := s.m
	s.mu.Lock()
	st, down := s.stream, s.downUntil
	s.mu.Unlock()
	if time.Now().Before(down) {
		return errCertStreamDown
	}
	data, err := encodeFrame(KindBulletin, FrameHeader{Publisher: m.selfID, Seq: m.seq.Add(1)}, objs)
	if err != nil {
		return err
	}
	if st == nil {
		ctx, cancel := context.WithTimeout(m.ctx, m.cfg.DialTimeout)
		st, err = m.host.h.NewStream(ctx, s.to, protocol.ID(s.topic))
		cancel()
		if err != nil {
			s.mu.Lock()
			s.downUntil = time.Now().Add(certStreamRetry)
			s.mu.Unlock()
			return fmt.Errorf("open stream: %w", err)
		}
		s.mu.Lock()
		s.stream = st
		s.mu.Unlock()
		m.wg.Add(1) // within the loop, itself tracked: the count is above zero
		go s.readAcks(st)
	}
	// Recorded before the write: the acknowledgement may come back before
	// Write returns.
	s.mu.Lock()
	if s.stream != st {
		s.mu.Unlock()
		return errCertStreamDown
	}
	s.unacked = append(s.unacked, sentCertFrame{objs: objs, at: time.Now()})
	if len(s.unacked) == 1 {
		s.ackTimer.Reset(certStreamAckTimeout)
	}
	s.mu.Unlock()
	buf := binary.AppendUvarint(make([]byte, 0, len(data)+binary.MaxVarintLen32), uint64(len(data)))
	buf = append(buf, data...)
	_ = st.SetWriteDeadline(time.Now().Add(certStreamWriteTimeout))
	if _, err := st.Write(buf); err != nil {
		s.fail(st, fmt.Errorf("write: %w", err))
	}
	return nil
}

// readAcks reads the receiver's acknowledgements on st (each an unsigned
// varint: how many more frames it has taken) until st fails.
func (s *certSender) readAcks(st network.Stream) {
	defer s.m.wg.Done()
	// Mesh.Stop waits for this goroutine before it closes the host, and a
	// receiver that has gone quiet (across a partition, or crashed with its
	// connection still open) never ends the stream: the mesh's end resets
	// it, or the stop would wait out its deadline.
	stop := context.AfterFunc(s.m.ctx, func() { _ = st.Reset() })
	defer stop()
	r := bufio.NewReader(st)
	for {
		n, err := binary.ReadUvarint(r)
		if err != nil {
			s.fail(st, fmt.Errorf("stream ended: %w", err))
			return
		}
		s.mu.Lock()
		if s.stream != st {
			s.mu.Unlock()
			return
		}
		if n == 0 || n > uint64(len(s.unacked)) {
			s.mu.Unlock()
			s.fail(st, fmt.Errorf("acknowledged %d frames of %d outstanding", n, len(s.unacked)))
			return
		}
		rest := copy(s.unacked, s.unacked[n:])
		clear(s.unacked[rest:])
		s.unacked = s.unacked[:rest]
		s.mu.Unlock()
	}
}

// checkAcks fails the stream when its oldest outstanding frame is past
// certStreamAckTimeout, and otherwise waits for that frame's deadline.
func (s *certSender) checkAcks() {
	s.mu.Lock()
	if len(s.unacked) == 0 {
		s.mu.Unlock()
		return
	}
	if left := certStreamAckTimeout - time.Since(s.unacked[0].at); left > 0 {
		s.ackTimer.Reset(left)
		s.mu.Unlock()
		return
	}
	st := s.stream
	s.mu.Unlock()
	s.fail(st, errCertAckTimeout)
}

// fail ends st, if it is still the sender's stream, and publishes the
// certificates of its unacknowledged frames on the bulletin. The stream
// is left alone for certStreamRetry.
func (s *certSender) fail(st network.Stream, err error) {
	s.mu.Lock()
	if st == nil || s.stream != st {
		s.mu.Unlock()
		return
	}
	s.stream = nil
	lost := s.unacked
	s.unacked = nil
	s.downUntil = time.Now().Add(certStreamRetry)
	s.ackTimer.Stop()
	s.mu.Unlock()
	_ = st.Reset()
	var objs []queued
	for _, f := range lost {
		objs = append(objs, f.objs...)
	}
	if len(objs) > 0 {
		s.fallback(objs, err)
	}
}

// fallback publishes on the bulletin certificates the stream could not
// take or did not acknowledge.
func (s *certSender) fallback(objs []queued, err error) {
	m := s.m
	if m.ctx.Err() != nil {
		return
	}
	m.metrics.certFrame("sent", "fallback")
	m.logger.Debug("p2p: certificate stream unavailable; certificates go to the bulletin", "peer", s.to, "certificates", len(objs), "err", err)
	f, ferr := m.framerFor(KindBulletin, m.topics.bull)
	if ferr == nil {
		ferr = f.enqueue(objs...)
	}
	if ferr != nil {
		m.logger.Warn("p2p: certificates lost to a failed stream and a full bulletin queue; re-announcement recovers them", "peer", s.to, "certificates", len(objs), "err", ferr)
	}
}

// certStrikes counts provably bad certificate frames per member.
type certStrikes struct {
	mu      sync.Mutex
	peers   map[peer.ID]*strikeRecord
	inbound map[peer.ID]int
}

type strikeRecord struct {
	first        time.Time
	n            int
	blockedUntil time.Time
}

// admit reserves one inbound stream of p, unless p is blocked or holds
// certStreamMaxInbound already; release gives it back.
func (c *certStrikes) admit(p peer.ID, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.peers[p]; r != nil && now.Before(r.blockedUntil) {
		return false
	}
	if c.inbound[p] >= certStreamMaxInbound {
		return false
	}
	c.inbound[p]++
	return true
}

func (c *certStrikes) release(p peer.ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inbound[p]--; c.inbound[p] <= 0 {
		delete(c.inbound, p)
	}
}

// strike records a provably bad frame from p and reports whether p is now
// blocked.
func (c *certStrikes) strike(p peer.ID, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, r := range c.peers {
		// Bounded by the committee: only members reach here.
		if now.Sub(r.first) > certStreamStrikeMemory && now.After(r.blockedUntil) {
			delete(c.peers, q)
		}
	}
	r := c.peers[p]
	if r == nil {
		r = &strikeRecord{first: now}
		c.peers[p] = r
	}
	r.n++
	if r.n >= certStreamStrikes {
		r.blockedUntil = now.Add(certStreamBlockTime)
		r.n, r.first = 0, now
		return true
	}
	return false
}

// handleCertStream reads a member's certificate frames until the stream
// ends or a frame is provably bad.
func (m *Mesh) handleCertStream(st network.Stream) {
	p := st.Conn().RemotePeer()
	mem, isMember := m.host.committee.member(p)
	if !isMember || !m.certStrikes.admit(p, time.Now()) {
		m.metrics.certFrame("received", "refused")
		_ = st.Reset()
		return
	}
	defer m.certStrikes.release(p)
	// Tracked by the mesh's wait group only while it runs: Stop changes
	// the state under m.mu before it waits.
	m.mu.Lock()
	if m.state != stateStarted {
		m.mu.Unlock()
		_ = st.Reset()
		return
	}
	m.wg.Add(1)
	m.mu.Unlock()
	defer m.wg.Done()
	stop := context.AfterFunc(m.ctx, func() { _ = st.Reset() })
	defer stop()
	r := bufio.NewReader(st)
	acks := &certAcker{st: st}
	defer acks.stop()
	for {
		data, err := readCertFrame(r)
		if errors.Is(err, io.EOF) {
			acks.flush()
			_ = st.Close()
			return
		}
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
			_ = st.Reset() // the stream failed: no verdict on the sender
			return
		}
		start := time.Now()
		var objs *frameObjects
		v, stage := Reject, stageDecode
		if err == nil {
			objs, v, stage, err = m.validateCertFrame(p, mem.ID, data)
		} else if errors.Is(err, ErrTooLarge) {
			stage = stageSize
		}
		if m.ctx.Err() != nil {
			return
		}
		// Counted as bulletin frames, which is what they are on the wire.
		m.metrics.validation(KindBulletin, v, stage, time.Since(start).Seconds())
		m.metrics.certFrame("received", v.String())
		switch v {
		case Accept:
			m.pipes.accepted.record(KindBulletin, objs)
			m.deliverCertFrame(p, objs)
			acks.add()
		case Ignore:
			if !errors.Is(err, errDuplicate) {
				// Not taken for a reason other than having it (a
				// validation timeout): ended without a strike, so the
				// sender publishes the frame on the bulletin instead.
				_ = st.Reset()
				return
			}
			acks.add()
		case Reject:
			blocked := m.certStrikes.strike(p, time.Now())
			m.logger.Debug("p2p: certificate frame rejected", "peer", p, "member", mem.Name, "stage", stage, "err", err, "blocked", blocked)
			_ = st.Reset()
			return
		}
	}
}

// certAcker acknowledges the frames a certificate stream's receiver has
// taken: after certAckDelay, or at once when certAckBatch are waiting, so
// that under load one small write answers many frames.
type certAcker struct {
	mu      sync.Mutex
	st      network.Stream
	n       uint64
	timer   *time.Timer
	stopped bool
}

const (
	// certAckDelay is far below certStreamAckTimeout, the sender's wait.
	certAckDelay = 50 * time.Millisecond
	certAckBatch = 64
)

func (a *certAcker) add() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n++
	switch {
	case a.n >= certAckBatch:
		a.flushLocked()
	case a.n == 1 && a.timer == nil:
		a.timer = time.AfterFunc(certAckDelay, a.flush)
	case a.n == 1:
		a.timer.Reset(certAckDelay)
	}
}

func (a *certAcker) flush() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.flushLocked()
}

// flushLocked writes the acknowledgement; a stream that cannot take it is
// reset, which ends the receiver's loop.
func (a *certAcker) flushLocked() {
	if a.n == 0 || a.stopped {
		return
	}
	_ = a.st.SetWriteDeadline(time.Now().Add(certStreamWriteTimeout))
	if _, err := a.st.Write(binary.AppendUvarint(nil, a.n)); err != nil {
		_ = a.st.Reset()
	}
	a.n = 0
}

func (a *certAcker) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopped = true
	if a.timer != nil {
		a.timer.Stop()
	}
}

// readCertFrame reads one length-prefixed frame. It returns io.EOF when
// the stream ends cleanly between frames; ErrMalformed or ErrTooLarge for
// what the sender did (a length over MaxFrameSize, a frame cut short by
// closing the stream); any other error is the stream failing (a reset, a
// lost connection), which proves nothing about the sender.
func readCertFrame(r *bufio.Reader) ([]byte, error) {
	var n uint64
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if errors.Is(err, io.EOF) {
			if i == 0 {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("%w: frame length cut short", ErrMalformed)
		}
		if err != nil {
			return nil, err
		}
		n |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			break
		}
		if i == certFrameLengthBytes-1 {
			return nil, fmt.Errorf("%w: frame length of more than %d bytes", ErrTooLarge, certFrameLengthBytes)
		}
	}
	if n > MaxFrameSize {
		return nil, fmt.Errorf("%w: certificate frame of %d bytes, limit %d", ErrTooLarge, n, MaxFrameSize)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: frame cut short", ErrMalformed)
		}
		return nil, err
	}
	return data, nil
}

// certFrameLengthBytes bounds a frame's length prefix: four varint bytes
// hold 2^28, well above MaxFrameSize.
const certFrameLengthBytes = 4

// validateCertFrame runs a certificate frame through the bulletin's
// stages, with the stream's sender as the only possible publisher and
// signer. A panic is recovered as a Reject.
func (m *Mesh) validateCertFrame(from peer.ID, sender qc.ValidatorID, data []byte) (objs *frameObjects, v Verdict, stage string, err error) {
	defer func() {
		if r := recover(); r != nil {
			objs, v, stage, err = nil, Reject, stagePanic, fmt.Errorf("validator panic: %v", r)
			m.metrics.validatorPanics.WithLabelValues(KindBulletin.String()).Inc()
			m.logger.Error("p2p: certificate frame validator panicked", "peer", from, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.ValidationTimeout)
	defer cancel()
	out, verdict, verr := m.pipes.validateCertFrame(ctx, from, sender, data)
	if verdict, stage = outcome(ctx, verdict, verr); verdict != Accept {
		return nil, verdict, stage, verr
	}
	return out.(*frameObjects), Accept, stage, nil
}

// validateCertFrame: a certificate frame from the member sender.
//   - It decodes as a bulletin frame within the size limits (Reject).
//   - It names the sender as its publisher and carries only certificates,
//     every one signed by the sender: a member sends only its own
//     (Reject).
//   - A frame whose certificates were all accepted before is ignored
//     before any signature is verified (Ignore).
//   - Every signature is verified in one batch, with membership and
//     effects (Reject on any failure).
//   - Then the caller's stateful bulletin check per certificate.
func (p *pipelines) validateCertFrame(ctx context.Context, from peer.ID, sender qc.ValidatorID, data []byte) (any, Verdict, error) {
	f, err := decodeBulletinFrame(data)
	if err != nil {
		return decodeFailure(err)
	}
	if f.header.Publisher != sender {
		return fail(Reject, stageMembership, fmt.Errorf("frame names publisher %s on the stream of %s", f.header.Publisher.Hex(), sender.Hex()))
	}
	if len(f.qcs) > 0 || len(f.pairs) > 0 {
		return fail(Reject, stageDecode, errors.New("a certificate frame carries only certificates"))
	}
	fresh := false
	for i, c := range f.certs {
		if c.Signer != sender {
			return fail(Reject, stageMembership, fmt.Errorf("certificate %d of the frame is signed by %s, not by the sender %s", i, c.Signer.Hex(), sender.Hex()))
		}
		fresh = fresh || !p.accepted.certSeen(c)
	}
	if !fresh {
		return fail(Ignore, stageDuplicate, errDuplicate)
	}
	return p.verifyBulletinFrame(ctx, from, f)
}

// deliverCertFrame hands an accepted certificate frame's new certificates
// to the bulletin handler, on the stream's goroutine.
func (m *Mesh) deliverCertFrame(from peer.ID, objs *frameObjects) {
	m.metrics.frameObjects(KindBulletin, objs.received, objs.len())
	fn := m.onBulletin.Load()
	if fn == nil {
		return
	}
	info := TopicInfo{Kind: KindBulletin}
	name := string(CertProtocol(m.committee.Domain().ChainID, m.committee.Domain().Epoch))
	for _, it := range objs.items {
		m.call(info, name, func() {
			(*fn)(m.ctx, Delivery[*BulletinItem]{Value: it, From: from, Topic: name, Publisher: objs.header.Publisher})
		})
	}
}
