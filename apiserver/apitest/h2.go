// Package apitest holds clients that misbehave on purpose against the API
// server: raw HTTP/2 connections opening gRPC streams that never send their
// request, and HTTP uploads that trickle in. Tests use them to check the
// server's limits; nothing here is linked into the binary.
package apitest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Dial opens a TCP connection to addr from local (an IP address such as
// "127.0.0.2"; empty: any).
func Dial(ctx context.Context, addr, local string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		ip := net.ParseIP(local)
		if ip == nil {
			return nil, fmt.Errorf("apitest: local address %q is not an IP", local)
		}
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	return d.DialContext(ctx, "tcp", addr)
}

// StreamEnd is how the server ended one stream.
type StreamEnd struct {
	// RST is set when the server reset the stream, with Code.
	RST  bool
	Code http2.ErrCode
	// GRPCStatus is the grpc-status of the trailers ("" without them).
	GRPCStatus string
	At         time.Time
}

// H2Conn is a cleartext HTTP/2 connection driven frame by frame. It ignores
// the server's SETTINGS_MAX_CONCURRENT_STREAMS (as a hostile client would)
// and records how the server ends each stream. Safe for concurrent use.
type H2Conn struct {
	conn      net.Conn
	authority string

	wmu    sync.Mutex // the framer's writes and the header encoder
	fr     *http2.Framer
	hbuf   bytes.Buffer
	henc   *hpack.Encoder
	nextID uint32

	mu       sync.Mutex
	ends     map[uint32]StreamEnd
	maxConc  uint32 // the server's SETTINGS_MAX_CONCURRENT_STREAMS (0: not seen)
	closed   bool
	closeErr error
	changed  chan struct{} // closed and replaced on every change
	done     chan struct{} // the reader stopped
}

// NewH2Conn speaks the HTTP/2 connection preface on conn and starts reading
// the server's frames.
func NewH2Conn(conn net.Conn) (*H2Conn, error) {
	c := &H2Conn{conn: conn, authority: conn.RemoteAddr().String(), nextID: 1,
		ends: make(map[uint32]StreamEnd), changed: make(chan struct{}), done: make(chan struct{})}
	c.fr = http2.NewFramer(conn, conn)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.henc = hpack.NewEncoder(&c.hbuf)
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		return nil, fmt.Errorf("apitest: preface: %w", err)
	}
	if err := c.fr.WriteSettings(); err != nil {
		return nil, fmt.Errorf("apitest: settings: %w", err)
	}
	go c.read()
	return c, nil
}

// Close closes the connection.
func (c *H2Conn) Close() error { return c.conn.Close() }

// OpenGRPC opens a stream calling the gRPC method (e.g.
// "/tempo.fastpay.v1.FastPaySidecar/SubmitFastPay") with headers only: no
// request message, stream left open. It returns the stream id.
func (c *H2Conn) OpenGRPC(method string) (uint32, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.hbuf.Reset()
	for _, f := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", method}, {":authority", c.authority},
		{"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		if err := c.henc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
			return 0, err
		}
	}
	id := c.nextID
	c.nextID += 2
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true})
	if err != nil {
		return 0, fmt.Errorf("apitest: headers of stream %d: %w", id, err)
	}
	return id, nil
}

// SendPartialMessage sends, on stream id, the 5-byte gRPC message prefix
// announcing length bytes followed by the first part of them; the stream
// stays open.
func (c *H2Conn) SendPartialMessage(id uint32, length int, part []byte) error {
	msg := make([]byte, 5, 5+len(part))
	binary.BigEndian.PutUint32(msg[1:], uint32(length))
	msg = append(msg, part...)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.fr.WriteData(id, false, msg)
}

// End returns how stream id ended, if it did.
func (c *H2Conn) End(id uint32) (StreamEnd, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.ends[id]
	return e, ok
}

// Ends returns how every ended stream ended.
func (c *H2Conn) Ends() map[uint32]StreamEnd {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[uint32]StreamEnd, len(c.ends))
	for k, v := range c.ends {
		out[k] = v
	}
	return out
}

// MaxConcurrentStreams is the limit the server announced (0 before its
// settings arrived or without a limit).
func (c *H2Conn) MaxConcurrentStreams() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.maxConc
}

// Closed reports whether the connection has ended, and the read error.
func (c *H2Conn) Closed() (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed, c.closeErr
}

// WaitFor waits until cond holds (checked after each frame) or ctx ends.
func (c *H2Conn) WaitFor(ctx context.Context, cond func() bool) error {
	for {
		c.mu.Lock()
		ch := c.changed
		c.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (c *H2Conn) update(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f()
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *H2Conn) read() {
	defer close(c.done)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.update(func() { c.closed, c.closeErr = true, err })
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			if v, ok := f.Value(http2.SettingMaxConcurrentStreams); ok {
				c.update(func() { c.maxConc = v })
			}
			c.wmu.Lock()
			_ = c.fr.WriteSettingsAck()
			c.wmu.Unlock()
		case *http2.PingFrame:
			if !f.IsAck() {
				c.wmu.Lock()
				_ = c.fr.WritePing(true, f.Data)
				c.wmu.Unlock()
			}
		case *http2.RSTStreamFrame:
			c.update(func() {
				if _, ok := c.ends[f.StreamID]; !ok {
					c.ends[f.StreamID] = StreamEnd{RST: true, Code: f.ErrCode, At: time.Now()}
				}
			})
		case *http2.MetaHeadersFrame:
			if !f.StreamEnded() {
				continue // response headers; the trailers end the stream
			}
			st := f.PseudoValue("status")
			if v := grpcStatus(f); v != "" {
				st = v
			} else if st != "" {
				st = "http " + st
			}
			c.update(func() { c.ends[f.StreamID] = StreamEnd{GRPCStatus: st, At: time.Now()} })
		case *http2.DataFrame:
			// Give the window back so responses never stall on flow control.
			if n := len(f.Data()); n > 0 {
				c.wmu.Lock()
				_ = c.fr.WriteWindowUpdate(0, uint32(n))
				c.wmu.Unlock()
			}
		}
	}
}

func grpcStatus(f *http2.MetaHeadersFrame) string {
	for _, hf := range f.RegularFields() {
		if hf.Name == "grpc-status" {
			return hf.Value
		}
	}
	return ""
}

// GRPCDeadlineExceeded is the grpc-status of DeadlineExceeded.
const GRPCDeadlineExceeded = "4"
