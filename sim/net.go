package sim

import (
	"context"
	"net"
	"sync"
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
