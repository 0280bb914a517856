package apiserver

import (
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
	// MaxBodyBytes bounds a JSON request body (413 above it) and a gRPC
	// request message. Default 1 MiB.
	MaxBodyBytes int64 `toml:"max_body_bytes"`
	// StreamTimeout caps the lifetime of one long-lived response: a
	// SubmitFastPayStream call or a server-sent events connection. It also
	// bounds the timeout_ms of submit-raw-tx?wait=qc. Default 2 minutes.
	StreamTimeout time.Duration `toml:"stream_timeout"`
	// ReadHeaderTimeout bounds reading a request's headers. Default 10 s.
	ReadHeaderTimeout time.Duration `toml:"read_header_timeout"`
	// IdleTimeout closes keep-alive connections idle this long. Default 2 min.
	IdleTimeout time.Duration `toml:"idle_timeout"`
	// AllowedOrigins lists the origins allowed by CORS; "*" allows any
	// origin (the default, for the development dashboard). Empty: no CORS
	// headers at all (same-origin only).
	AllowedOrigins []string `toml:"allowed_origins"`
	// HeartbeatInterval is the period of the comment lines written on idle
	// server-sent event streams so proxies keep them open. Default 15 s.
	HeartbeatInterval time.Duration `toml:"heartbeat_interval"`
	// HTTP2JSON also serves the JSON API over cleartext HTTP/2 with prior
	// knowledge, by passing gRPC through net/http's HTTP/2 server. Off by
	// default: cleartext HTTP/2 connections then go to gRPC's own
	// transport, which costs ~10% less CPU per streamed payment, and the JSON
	// API is served over HTTP/1.1 (what browsers and curl use without TLS).
	HTTP2JSON bool `toml:"http2_json"`
	// DefaultWaitTimeout is how long submit-raw-tx?wait=qc waits for the QC
	// when the request gives no timeout_ms. Default 5 s.
	DefaultWaitTimeout time.Duration `toml:"default_wait_timeout"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		ListenAddr:         "127.0.0.1:7070",
		MaxBodyBytes:       1 << 20,
		StreamTimeout:      2 * time.Minute,
		ReadHeaderTimeout:  10 * time.Second,
		IdleTimeout:        2 * time.Minute,
		AllowedOrigins:     []string{"*"},
		HeartbeatInterval:  15 * time.Second,
		DefaultWaitTimeout: 5 * time.Second,
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if c.ListenAddr == "" {
		return fmt.Errorf("apiserver config: ListenAddr is empty")
	}
	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		return fmt.Errorf("apiserver config: ListenAddr %q is not host:port: %v", c.ListenAddr, err)
	}
	if c.MaxBodyBytes <= 0 {
		return fmt.Errorf("apiserver config: MaxBodyBytes must be positive, got %d", c.MaxBodyBytes)
	}
	if c.MaxBodyBytes > 1<<30 {
		return fmt.Errorf("apiserver config: MaxBodyBytes must be at most 1 GiB, got %d", c.MaxBodyBytes)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"StreamTimeout", c.StreamTimeout},
		{"ReadHeaderTimeout", c.ReadHeaderTimeout},
		{"IdleTimeout", c.IdleTimeout},
		{"HeartbeatInterval", c.HeartbeatInterval},
		{"DefaultWaitTimeout", c.DefaultWaitTimeout},
	} {
		if d.v <= 0 {
			return fmt.Errorf("apiserver config: %s must be positive, got %s", d.name, d.v)
		}
	}
	if c.DefaultWaitTimeout > c.StreamTimeout {
		return fmt.Errorf("apiserver config: DefaultWaitTimeout (%s) must not exceed StreamTimeout (%s)", c.DefaultWaitTimeout, c.StreamTimeout)
	}
	for i, o := range c.AllowedOrigins {
		if o == "" {
			return fmt.Errorf("apiserver config: AllowedOrigins[%d] is empty", i)
		}
	}
	return nil
}
