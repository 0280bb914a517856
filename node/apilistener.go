package node

import (
	"context"
	"errors"
	"net"
	"sync"
)

// apiListener keeps the API's listening socket across the nodes of
// successive epochs. Each epoch's node (and the waiting API between
// committees) serves the API from its own server, stopped at the boundary;
// were the socket closed with it, a client connecting during the swap
// would be refused, and a port chosen by the system (":0") would change at
// every boundary. Instead one socket stays open for the Runner's life: a
// connection that arrives while no server accepts waits in its backlog
// for the next server.
type apiListener struct {
	open func(ctx context.Context, network, address string) (net.Listener, error)

	mu    sync.Mutex
	ln    net.Listener // nil until the first server listens
	conns chan accepted
	done  chan struct{}
	wg    sync.WaitGroup
}

type accepted struct {
	conn net.Conn
	err  error
}

// newAPIListener opens the socket with open (nil: net.ListenConfig's) when
// the first server listens.
func newAPIListener(open func(ctx context.Context, network, address string) (net.Listener, error)) *apiListener {
	if open == nil {
		var lc net.ListenConfig
		open = lc.Listen
	}
	return &apiListener{open: open}
}

// listen is the servers' apiserver.Config.Listen: the first call opens the
// socket, every call returns a listener of its own whose Close leaves the
// socket open.
func (a *apiListener) listen(ctx context.Context, network, address string) (net.Listener, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ln == nil {
		ln, err := a.open(ctx, network, address)
		if err != nil {
			return nil, err
		}
		a.ln, a.conns, a.done = ln, make(chan accepted), make(chan struct{})
		a.wg.Add(1)
		go a.acceptLoop()
	}
	return &servedListener{addr: a.ln.Addr(), conns: a.conns, socketClosed: a.done, closed: make(chan struct{})}, nil
}

// acceptLoop hands each connection to whichever server accepts next. It
// accepts one connection ahead at most: the rest wait in the backlog.
func (a *apiListener) acceptLoop() {
	defer a.wg.Done()
	for {
		c, err := a.ln.Accept()
		select {
		case a.conns <- accepted{c, err}:
		case <-a.done:
			if c != nil {
				_ = c.Close()
			}
			return
		}
		if errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

// close closes the socket; servers still accepting see net.ErrClosed.
func (a *apiListener) close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ln == nil {
		return nil
	}
	close(a.done)
	err := a.ln.Close()
	a.wg.Wait()
	a.ln = nil
	return err
}

// servedListener is one server's view of the shared socket.
type servedListener struct {
	addr         net.Addr
	conns        <-chan accepted
	socketClosed <-chan struct{}
	once         sync.Once
	closed       chan struct{}
}

func (l *servedListener) Accept() (net.Conn, error) {
	select {
	case <-l.closed:
		return nil, net.ErrClosed
	default:
	}
	select {
	case r := <-l.conns:
		return r.conn, r.err
	case <-l.closed:
		return nil, net.ErrClosed
	case <-l.socketClosed:
		return nil, net.ErrClosed
	}
}

// Close stops this server's accepting; the socket stays open.
func (l *servedListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *servedListener) Addr() net.Addr { return l.addr }
