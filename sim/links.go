package sim

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// The mock network delays a write of 256 bytes or more by holding it until
// the previous one has arrived, so a link carries about two messages per
// one-way latency: a stop-and-wait link. A TCP or QUIC connection pipelines
// them, and a burst of frames arrives all together one latency later. So
// the simulation keeps the mock links at no latency and delays writes
// itself: every write arrives one latency (of the link when it was made)
// after it, in order, with up to streamWindow bytes in flight per stream,
// as a transport's flow-control window allows. Past the window the writer
// waits, as it would for a window update.

// streamWindow bounds the bytes in flight on one stream.
const streamWindow = 1 << 20

// errStreamClosed is returned by a write after Close or CloseWrite.
var errStreamClosed = errors.New("sim: write on a closed stream")

// latencyHost wraps a host of the mock network: every stream it opens or
// accepts is a delayStream, and the bytes written are counted (libp2p
// stream payload, as the bench package's ByteCounter counts on real
// transports; a mock network reports none).
type latencyHost struct {
	host.Host
	nw   *simNet
	self int
}

func (h latencyHost) NewStream(ctx context.Context, p peerID, pids ...protocol.ID) (network.Stream, error) {
	s, err := h.Host.NewStream(ctx, p, pids...)
	if err != nil {
		return nil, err
	}
	return h.nw.delayed(h.self, s), nil
}

func (h latencyHost) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	h.Host.SetStreamHandler(pid, h.wrap(handler))
}

func (h latencyHost) SetStreamHandlerMatch(pid protocol.ID, match func(protocol.ID) bool, handler network.StreamHandler) {
	h.Host.SetStreamHandlerMatch(pid, match, h.wrap(handler))
}

func (h latencyHost) wrap(handler network.StreamHandler) network.StreamHandler {
	return func(s network.Stream) { handler(h.nw.delayed(h.self, s)) }
}

// delayed wraps s, a stream of validator self's host, and registers it
// for resetStreams.
func (nw *simNet) delayed(self int, s network.Stream) *delayStream {
	to := nw.index[s.Conn().RemotePeer()]
	ds := &delayStream{Stream: s, nw: nw, from: self, to: to, wake: make(chan struct{}, 1)}
	nw.streamsMu.Lock()
	nw.streams = append(nw.streams, ds)
	nw.streamsMu.Unlock()
	return ds
}

// resetStreams resets every stream the hosts opened or accepted, until no
// new one appears (bounded: ten rounds a second of virtual time apart). A
// mock connection accepts a new stream even after it was closed, and
// nothing then resets it: a node that was stopping, or a peer it had just
// redialled, can open one at the moment the connections are closed, and
// its goroutines would outlive the synctest bubble.
func (nw *simNet) resetStreams() {
	for range 10 {
		nw.streamsMu.Lock()
		streams := nw.streams
		nw.streams = nil
		nw.streamsMu.Unlock()
		if len(streams) == 0 {
			return
		}
		for _, s := range streams {
			_ = s.Reset()
		}
		time.Sleep(time.Second)
	}
}

// delayStream delays the writes of one stream by its link's latency. One
// goroutine per stream (started by the first write) writes them to the
// mock stream when due; it ends when the stream is closed or reset, or
// when the simulation stops.
type delayStream struct {
	network.Stream
	nw       *simNet
	from, to int

	mu       sync.Mutex
	queue    []delayedWrite
	inFlight int
	pumping  bool
	closing  bool  // Close or CloseWrite called: no more writes
	err      error // the mock stream failed: every later write fails
	space    chan struct{}
	wake     chan struct{}
	resetNow atomic.Bool
}

type delayedWrite struct {
	data []byte
	due  time.Time
	// end, on the last entry, is what the writer asked for after its
	// writes: a Close or a CloseWrite, done once they have arrived.
	end func() error
}

func (s *delayStream) Write(b []byte) (int, error) {
	due := time.Now().Add(s.nw.latency(s.from, s.to))
	data := make([]byte, len(b))
	copy(data, b)
	s.mu.Lock()
	for s.err == nil && !s.closing && s.inFlight > 0 && s.inFlight+len(data) > streamWindow {
		if s.space == nil {
			s.space = make(chan struct{})
		}
		space := s.space
		s.mu.Unlock()
		select {
		case <-space:
		case <-s.nw.done:
			return 0, network.ErrReset
		}
		s.mu.Lock()
	}
	if err := s.writeErrLocked(); err != nil {
		s.mu.Unlock()
		return 0, err
	}
	s.queue = append(s.queue, delayedWrite{data: data, due: due})
	s.inFlight += len(data)
	s.startLocked()
	s.mu.Unlock()
	s.nw.sent.Add(int64(len(b)))
	return len(b), nil
}

func (s *delayStream) writeErrLocked() error {
	switch {
	case s.err != nil:
		return s.err
	case s.resetNow.Load():
		return network.ErrReset
	case s.closing:
		return errStreamClosed
	}
	return nil
}

// startLocked wakes the stream's goroutine, starting it if needed.
func (s *delayStream) startLocked() {
	if !s.pumping {
		s.pumping = true
		go s.pump()
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// pump writes queued writes to the mock stream when due, in order.
func (s *delayStream) pump() {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			s.mu.Unlock()
			select {
			case <-s.wake:
				continue
			case <-s.nw.done:
				return
			}
		}
		w := s.queue[0]
		s.mu.Unlock()
		if d := time.Until(w.due); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-s.nw.done:
				return
			}
		}
		var err error
		if s.resetNow.Load() {
			err = network.ErrReset
		} else if len(w.data) > 0 {
			_, err = s.Stream.Write(w.data)
		}
		s.mu.Lock()
		// The end is read again here: a Close may have been queued on
		// this write while it was being delivered.
		end := s.queue[0].end
		s.queue[0] = delayedWrite{}
		s.queue = s.queue[1:]
		s.inFlight -= len(w.data)
		if s.space != nil {
			close(s.space)
			s.space = nil
		}
		if err == nil && end == nil {
			s.mu.Unlock()
			continue
		}
		if err != nil && s.err == nil {
			s.err = err
		}
		s.queue, s.inFlight, s.pumping = nil, 0, false
		s.mu.Unlock()
		if end != nil {
			_ = end()
		}
		return
	}
}

// finish runs end (a Close or CloseWrite of the mock stream) once the
// writes made so far have arrived: at once when none is waiting.
func (s *delayStream) finish(end func() error) error {
	s.mu.Lock()
	s.closing = true
	if s.err != nil || len(s.queue) == 0 {
		s.mu.Unlock()
		return end()
	}
	last := &s.queue[len(s.queue)-1]
	if prev := last.end; prev != nil {
		last.end = func() error { return errors.Join(prev(), end()) }
	} else {
		last.end = end
	}
	s.mu.Unlock()
	return nil
}

func (s *delayStream) Close() error { return s.finish(s.Stream.Close) }

func (s *delayStream) CloseWrite() error { return s.finish(s.Stream.CloseWrite) }

func (s *delayStream) Reset() error {
	s.resetNow.Store(true)
	return s.Stream.Reset()
}

func (s *delayStream) ResetWithError(code network.StreamErrorCode) error {
	s.resetNow.Store(true)
	return s.Stream.ResetWithError(code)
}
