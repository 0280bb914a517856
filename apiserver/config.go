package apiserver

import (
	"context"
	"fmt"
	"net"
	"time"
)

// Config configures the API server. Every field has a documented default
// (DefaultConfig); Validate names the first invalid field.
type Config struct {
	// ListenAddr is the one TCP address serving both gRPC (HTTP/2 cleartext)
	// and the JSON HTTP API (HTTP/1.1 and HTTP/2 cleartext). Default
	// "127.0.0.1:7070"; use port 0 to let the OS choose (see Server.Addr).
	ListenAddr string `toml:"listen_addr"`
	// Listen, when set, opens the API's listener on ListenAddr instead of
	// a TCP socket (in-process simulations use an in-memory listener, which
	// a virtual-time test bubble can wait on; a socket's accept cannot be).
	// The metrics address, if any, still listens on TCP.
	Listen func(ctx context.Context, network, address string) (net.Listener, error) `toml:"-"`
	// MetricsListenAddr, when set, is a separate TCP address serving
	// Prometheus metrics at /metrics (plain HTTP, nothing else), and the
	// client API address then no longer serves /metrics: operators set it
	// to keep metrics off a client-facing port and scrape them on an
	// internal one. Default empty: /metrics is served on ListenAddr.
	MetricsListenAddr string `toml:"metrics_listen_addr"`
	// MaxBodyBytes bounds a JSON request body (413 above it) and a gRPC
	// request message. Default 1 MiB.
	MaxBodyBytes int64 `toml:"max_body_bytes"`
	// StreamTimeout caps the lifetime of one long-lived response: a
	// SubmitFastPayStream call or a server-sent events connection. It also
	// bounds the timeout_ms of submit-raw-tx?wait=qc. Default 2 minutes.
	StreamTimeout time.Duration `toml:"stream_timeout"`
	// ReadHeaderTimeout bounds reading an HTTP request's headers. Default
	// 10 s.
	ReadHeaderTimeout time.Duration `toml:"read_header_timeout"`
	// BodyReadTimeout bounds reading a request's body once its headers are
	// in: an HTTP body (408 after it) or a gRPC request message (the call
	// ends with DeadlineExceeded; Unavailable with HTTP2JSON, where gRPC
	// reads it through net/http). It ends uploads trickling in a byte at a
	// time and gRPC streams that send headers and never a message. It does
	// not limit responses: server-sent events and streamed payments live
	// until StreamTimeout. Default 10 s.
	BodyReadTimeout time.Duration `toml:"body_read_timeout"`
	// HandshakeTimeout bounds a new connection's first bytes, which decide
	// whether it is gRPC or HTTP, and gRPC's HTTP/2 handshake (the client
	// preface and settings). Default 10 s.
	HandshakeTimeout time.Duration `toml:"handshake_timeout"`
	// IdleTimeout closes connections without a request in flight for this
	// long: HTTP keep-alive connections and gRPC connections without an
	// open call. Default 2 min.
	IdleTimeout time.Duration `toml:"idle_timeout"`
	// MaxConns bounds the open client connections, all addresses together;
	// further connections are closed as soon as they are accepted.
	// Default 4096.
	MaxConns int `toml:"max_conns"`
	// MaxConnsPerIP bounds the open connections from one client address
	// (for IPv6 one /64, what a single host usually holds); further ones are
	// closed as soon as they are accepted. Every client behind one NAT or
	// reverse proxy shares it (raise it there), and so do all local
	// clients on 127.0.0.1: a wallet or load generator opens one gRPC
	// connection per sidecar and a few HTTP ones, the docker e2e runner
	// about validators+10 through the bridge gateway. Default 128.
	MaxConnsPerIP int `toml:"max_conns_per_ip"`
	// MaxConcurrentStreams bounds the calls open at once on one HTTP/2
	// connection (gRPC, and the JSON API with HTTP2JSON). A client asking
	// for more is told the limit in the connection's settings; streams over
	// it are refused (REFUSED_STREAM). gRPC clients queue calls over the
	// limit instead of failing them. Default 128.
	MaxConcurrentStreams uint32 `toml:"max_concurrent_streams"`
	// MaxHeaderBytes bounds a request's headers, HTTP and gRPC. Default
	// 64 KiB.
	MaxHeaderBytes int `toml:"max_header_bytes"`
	// KeepaliveTime is how long a gRPC or HTTP/2 connection may be silent
	// before the server pings it; KeepaliveTimeout is how long it then
	// waits for the answer before closing it, which ends connections to
	// clients that vanished without closing them. Defaults 1 min and 20 s.
	KeepaliveTime    time.Duration `toml:"keepalive_time"`
	KeepaliveTimeout time.Duration `toml:"keepalive_timeout"`
	// KeepaliveMinTime is the shortest interval at which a gRPC client may
	// ping; a client pinging faster is disconnected (GOAWAY
	// too_many_pings). Pings are allowed on connections without an open
	// call. Default 10 s.
	KeepaliveMinTime time.Duration `toml:"keepalive_min_time"`
	// ReadyMaxHeadAge is the oldest chain head /readyz accepts: older, the
	// sidecar's chain view is stale and it is not ready. Tempo makes a
	// block about every 0.5 s, the dev chain every 1 s by default. Default
	// 30 s.
	ReadyMaxHeadAge time.Duration `toml:"ready_max_head_age"`
	// AllowedOrigins lists the origins allowed by CORS; "*" allows any
	// origin (the default, for the development dashboard). Empty: no CORS
	// headers at all (same-origin only).
	AllowedOrigins []string `toml:"allowed_origins"`
	// HeartbeatInterval is the period of the comment lines written on idle
	// server-sent event streams so proxies keep them open. Default 15 s.
	HeartbeatInterval time.Duration `toml:"heartbeat_interval"`
	// HTTP2JSON also serves the JSON API over cleartext HTTP/2 with prior
	// knowledge, by passing gRPC through net/http's HTTP/2 server. Off by
	// default: cleartext HTTP/2 connections then go to gRPC's own transport,
	// which costs less CPU per streamed payment (see docs/benchmarks.md),
	// and the JSON API is served over HTTP/1.1 (what browsers and curl use
	// without TLS).
	HTTP2JSON bool `toml:"http2_json"`
	// DefaultWaitTimeout is how long submit-raw-tx?wait=qc waits for the QC
	// when the request gives no timeout_ms. Default 5 s.
	DefaultWaitTimeout time.Duration `toml:"default_wait_timeout"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		ListenAddr:           "127.0.0.1:7070",
		MaxBodyBytes:         1 << 20,
		StreamTimeout:        2 * time.Minute,
		ReadHeaderTimeout:    10 * time.Second,
		BodyReadTimeout:      10 * time.Second,
		HandshakeTimeout:     10 * time.Second,
		IdleTimeout:          2 * time.Minute,
		MaxConns:             4096,
		MaxConnsPerIP:        128,
		MaxConcurrentStreams: 128,
		MaxHeaderBytes:       64 << 10,
		KeepaliveTime:        time.Minute,
		KeepaliveTimeout:     20 * time.Second,
		KeepaliveMinTime:     10 * time.Second,
		ReadyMaxHeadAge:      30 * time.Second,
		AllowedOrigins:       []string{"*"},
		HeartbeatInterval:    15 * time.Second,
		DefaultWaitTimeout:   5 * time.Second,
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if c.ListenAddr == "" {
		return fmt.Errorf("[api] listen_addr is empty")
	}
	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		return fmt.Errorf("[api] listen_addr %q is not host:port: %v", c.ListenAddr, err)
	}
	if c.MetricsListenAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListenAddr); err != nil {
			return fmt.Errorf("[api] metrics_listen_addr %q is not host:port: %v", c.MetricsListenAddr, err)
		}
		if _, port, _ := net.SplitHostPort(c.MetricsListenAddr); c.MetricsListenAddr == c.ListenAddr && port != "0" {
			return fmt.Errorf("[api] metrics_listen_addr %q is listen_addr: leave it empty to serve /metrics on the API address", c.MetricsListenAddr)
		}
	}
	if c.MaxBodyBytes <= 0 {
		return fmt.Errorf("[api] max_body_bytes must be positive, got %d", c.MaxBodyBytes)
	}
	if c.MaxBodyBytes > 1<<30 {
		return fmt.Errorf("[api] max_body_bytes must be at most 1 GiB, got %d", c.MaxBodyBytes)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"stream_timeout", c.StreamTimeout},
		{"read_header_timeout", c.ReadHeaderTimeout},
		{"body_read_timeout", c.BodyReadTimeout},
		{"handshake_timeout", c.HandshakeTimeout},
		{"idle_timeout", c.IdleTimeout},
		{"keepalive_time", c.KeepaliveTime},
		{"keepalive_timeout", c.KeepaliveTimeout},
		{"keepalive_min_time", c.KeepaliveMinTime},
		{"ready_max_head_age", c.ReadyMaxHeadAge},
		{"heartbeat_interval", c.HeartbeatInterval},
		{"default_wait_timeout", c.DefaultWaitTimeout},
	} {
		if d.v <= 0 {
			return fmt.Errorf("[api] %s must be positive, got %s", d.name, d.v)
		}
	}
	if c.KeepaliveTime < time.Second {
		// gRPC raises a shorter interval to 1 s; refuse it rather than
		// run with another value than the one configured.
		return fmt.Errorf("[api] keepalive_time must be at least 1s, got %s", c.KeepaliveTime)
	}
	if c.MaxConns <= 0 {
		return fmt.Errorf("[api] max_conns must be positive, got %d", c.MaxConns)
	}
	if c.MaxConnsPerIP <= 0 || c.MaxConnsPerIP > c.MaxConns {
		return fmt.Errorf("[api] max_conns_per_ip must be between 1 and max_conns (%d), got %d", c.MaxConns, c.MaxConnsPerIP)
	}
	if c.MaxConcurrentStreams == 0 || c.MaxConcurrentStreams > 1<<20 {
		return fmt.Errorf("[api] max_concurrent_streams must be between 1 and %d, got %d", 1<<20, c.MaxConcurrentStreams)
	}
	if c.MaxHeaderBytes < 4<<10 || c.MaxHeaderBytes > 16<<20 {
		return fmt.Errorf("[api] max_header_bytes must be between 4 KiB and 16 MiB, got %d", c.MaxHeaderBytes)
	}
	if c.DefaultWaitTimeout > c.StreamTimeout {
		return fmt.Errorf("[api] default_wait_timeout (%s) must not exceed stream_timeout (%s)", c.DefaultWaitTimeout, c.StreamTimeout)
	}
	for i, o := range c.AllowedOrigins {
		if o == "" {
			return fmt.Errorf("[api] allowed_origins[%d] is empty", i)
		}
	}
	return nil
}
