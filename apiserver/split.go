package apiserver

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// http2PrefacePrefix starts every HTTP/2 connection without TLS (the
// preface "PRI * HTTP/2.0…"); an HTTP/1 request starts with its method, and
// no method begins with "PRI".
const http2PrefacePrefix = "PRI"

// splitListener shares one listening socket between the gRPC server and the
// HTTP server. Each accepted connection goes to one of them by its first
// bytes: gRPC clients speak HTTP/2 with prior knowledge (the connection
// preface), browsers and JSON clients speak HTTP/1.1. gRPC then runs on its
// own HTTP/2 transport, which costs less CPU per streamed payment than
// net/http's handler bridge (grpc.Server.ServeHTTP; see
// docs/benchmarks.md). HTTP/2 without TLS is therefore gRPC only on this
// port.
type splitListener struct {
	base        net.Listener
	grpc, http  *chanListener
	peekTimeout time.Duration
	log         *slog.Logger
	wg          sync.WaitGroup // connections being routed
	ran         chan struct{}  // closed when run returns
	// toHTTP is called with each connection about to go to the HTTP
	// half, and undo when the HTTP half was closed before taking it.
	toHTTP, undo func(net.Conn)
}

func newSplitListener(base net.Listener, peekTimeout time.Duration, log *slog.Logger, toHTTP, undo func(net.Conn)) *splitListener {
	return &splitListener{
		base: base, peekTimeout: peekTimeout, log: log, toHTTP: toHTTP, undo: undo,
		grpc: newChanListener(base.Addr()),
		http: newChanListener(base.Addr()),
		ran:  make(chan struct{}),
	}
}

// run accepts until the base listener is closed. The halves stay open
// until Close: connections being routed still reach their server.
func (s *splitListener) run() {
	defer close(s.ran)
	var delay time.Duration
	for {
		conn, err := s.base.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as net/http
			// does, up to a second.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("API accept failed; retrying", "err", err, "in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.route(conn)
		}()
	}
}

// route reads the connection's first bytes (bounded by peekTimeout) and
// hands it, bytes included, to the server that speaks its protocol.
func (s *splitListener) route(conn net.Conn) {
	r := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(s.peekTimeout))
	head, err := r.Peek(len(http2PrefacePrefix))
	_ = conn.SetReadDeadline(time.Time{})
	if err != nil {
		conn.Close() // silent or gone before saying anything
		return
	}
	pc := &peekedConn{Conn: conn, r: r}
	if string(head) == http2PrefacePrefix {
		s.grpc.deliver(pc)
		return
	}
	if s.toHTTP != nil {
		s.toHTTP(pc)
	}
	if !s.http.deliver(pc) && s.undo != nil {
		s.undo(pc)
	}
}

// stopAccepting closes the base listener and waits (until ctx ends) for
// the connections already taken from it to reach their server. The socket
// under the base may outlive this server (node's apiListener shares it
// between the servers of successive epochs): a connection taken at the
// moment of a stop must then be served, not closed with the server.
func (s *splitListener) stopAccepting(ctx context.Context) {
	_ = s.base.Close()
	select {
	case <-s.ran: // no more routes start: waiting on wg is now safe
	case <-ctx.Done():
		return
	}
	routed := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(routed)
	}()
	select {
	case <-routed:
	case <-ctx.Done():
	}
}

// Close stops accepting and closes both halves; connections already
// handed over are the servers'.
func (s *splitListener) Close() error {
	err := s.base.Close()
	s.grpc.Close()
	s.http.Close()
	return err
}

// peekedConn replays the bytes read to classify the connection.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// chanListener is a net.Listener fed by splitListener.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// deliver hands c to the listener's server, or closes it and reports
// false when the listener is closed.
func (l *chanListener) deliver(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		c.Close()
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
