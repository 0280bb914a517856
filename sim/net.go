package sim

import (
	"context"
	"net"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// idleListener is an API listener that accepts nothing and blocks on a
// channel until closed. Validators in a simulation are driven in process,
// and a TCP accept would keep a synctest bubble from ever being idle, so
// virtual time would never advance.
type idleListener struct {
	addr   net.Addr
	once   sync.Once
	closed chan struct{}
}

func listenIdle(_ context.Context, _, address string) (net.Listener, error) {
	addr, err := net.ResolveTCPAddr("tcp", address)
	if err != nil {
		return nil, err
	}
	return &idleListener{addr: addr, closed: make(chan struct{})}, nil
}

func (l *idleListener) Accept() (net.Conn, error) {
	<-l.closed
	return nil, net.ErrClosed
}

func (l *idleListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *idleListener) Addr() net.Addr { return l.addr }

// countingHost counts the bytes written to every stream its host opens or
// accepts: libp2p stream payload, as the bench package's ByteCounter counts
// on real transports (a mock network reports none).
type countingHost struct {
	host.Host
	sent *atomic.Int64
}

func (h countingHost) NewStream(ctx context.Context, p peerID, pids ...protocol.ID) (network.Stream, error) {
	s, err := h.Host.NewStream(ctx, p, pids...)
	if err != nil {
		return nil, err
	}
	return countingStream{Stream: s, sent: h.sent}, nil
}

func (h countingHost) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	h.Host.SetStreamHandler(pid, h.wrap(handler))
}

func (h countingHost) SetStreamHandlerMatch(pid protocol.ID, match func(protocol.ID) bool, handler network.StreamHandler) {
	h.Host.SetStreamHandlerMatch(pid, match, h.wrap(handler))
}

func (h countingHost) wrap(handler network.StreamHandler) network.StreamHandler {
	return func(s network.Stream) { handler(countingStream{Stream: s, sent: h.sent}) }
}

type countingStream struct {
	network.Stream
	sent *atomic.Int64
}

func (s countingStream) Write(b []byte) (int, error) {
	n, err := s.Stream.Write(b)
	s.sent.Add(int64(n))
	return n, err
}
