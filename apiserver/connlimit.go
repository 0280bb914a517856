package apiserver

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Reasons a connection is refused at accept (the label of
// allegro_api_connections_refused_total).
const (
	refusedPerIP = "per_ip"
	refusedTotal = "total"
)

// refuseLogInterval spaces the warnings about refused connections: a flood
// must not turn into a flood of log lines.
const refuseLogInterval = 10 * time.Second

// limitListener closes, as soon as they are accepted, connections beyond
// maxTotal open ones or beyond perIP open ones from one client address.
// Every later cost of a connection (the protocol split, a server's
// goroutines and buffers, its streams) is therefore bounded by these counts
// times the per-connection bounds.
type limitListener struct {
	net.Listener
	perIP, maxTotal int
	metrics         *metrics
	log             *slog.Logger

	mu       sync.Mutex
	open     map[netip.Prefix]int
	total    int
	lastWarn time.Time
	refused  int // since the last warning
}

func newLimitListener(ln net.Listener, perIP, maxTotal int, m *metrics, log *slog.Logger) *limitListener {
	return &limitListener{Listener: ln, perIP: perIP, maxTotal: maxTotal, metrics: m, log: log, open: make(map[netip.Prefix]int)}
}

// clientKey is the address a connection's limit is counted against: the
// IPv4 address, or the /64 of an IPv6 address (one host usually holds a
// whole /64, so counting single IPv6 addresses would bound nothing).
func clientKey(addr net.Addr) netip.Prefix {
	var ip netip.Addr
	if ta, ok := addr.(*net.TCPAddr); ok {
		ip, _ = netip.AddrFromSlice(ta.IP)
	} else if ap, err := netip.ParseAddrPort(addr.String()); err == nil {
		ip = ap.Addr()
	}
	ip = ip.Unmap()
	switch {
	case ip.Is4():
		return netip.PrefixFrom(ip, 32)
	case ip.Is6():
		p, _ := ip.Prefix(64)
		return p
	}
	return netip.Prefix{} // unknown address family: one shared bucket
}

// Accept returns the next connection within the limits; the others are
// reset and closed on the spot.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := clientKey(c.RemoteAddr())
		if reason := l.acquire(key); reason != "" {
			l.refuse(c, key, reason)
			continue
		}
		l.metrics.connsOpen.Inc()
		return &limitedConn{Conn: c, release: func() { l.release(key) }}, nil
	}
}

// acquire counts a connection from key; it returns why it is refused, ""
// when it is within the limits.
func (l *limitListener) acquire(key netip.Prefix) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.maxTotal {
		return refusedTotal
	}
	if l.open[key] >= l.perIP {
		return refusedPerIP
	}
	l.total++
	l.open[key]++
	return ""
}

func (l *limitListener) release(key netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.open[key]--; l.open[key] <= 0 {
		delete(l.open, key)
	}
	l.metrics.connsOpen.Dec()
}

func (l *limitListener) refuse(c net.Conn, key netip.Prefix, reason string) {
	// A reset rather than an orderly close: the server keeps no TIME_WAIT
	// state for connections it never served.
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
	l.metrics.connsRefused.WithLabelValues(reason).Inc()
	l.mu.Lock()
	l.refused++
	now := time.Now()
	if now.Sub(l.lastWarn) < refuseLogInterval {
		l.mu.Unlock()
		return
	}
	n := l.refused
	l.lastWarn, l.refused = now, 0
	l.mu.Unlock()
	l.log.Warn("API connections refused: too many open", "client", key.String(), "reason", reason,
		"refused_since_last_warning", n, "max_conns_per_ip", l.perIP, "max_conns", l.maxTotal)
}

// limitedConn releases its slot when closed (once, however often Close is
// called).
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
