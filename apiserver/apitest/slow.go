package apitest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"
)

// Upload is how a slow upload ended.
type Upload struct {
	// Status is the server's answer (0 when it closed without one) and
	// Body its first KiB.
	Status int
	Body   string
	// Sent counts the body bytes written before the end.
	Sent int
	// Took is the time from the request headers to the end.
	Took time.Duration
}

// SlowUpload writes an HTTP/1.1 POST of path on conn announcing a body of
// size bytes, then trickles the body one byte every interval until the
// server answers or closes the connection, the body is complete or ctx
// ends. It closes conn.
func SlowUpload(ctx context.Context, conn net.Conn, path string, size int, interval time.Duration) (Upload, error) {
	defer conn.Close()
	start := time.Now()
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
		path, conn.RemoteAddr(), size)
	if _, err := io.WriteString(conn, head); err != nil {
		return Upload{}, fmt.Errorf("apitest: request headers: %w", err)
	}
	type answer struct {
		status int
		body   string
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			answered <- answer{err: err}
			return
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		answered <- answer{status: resp.StatusCode, body: string(b)}
	}()
	t := time.NewTicker(interval)
	defer t.Stop()
	sent := 0
	for {
		select {
		case a := <-answered:
			u := Upload{Status: a.status, Body: a.body, Sent: sent, Took: time.Since(start)}
			if a.err != nil && !errors.Is(a.err, io.EOF) && !errors.Is(a.err, io.ErrUnexpectedEOF) && !IsReset(a.err) {
				return u, fmt.Errorf("apitest: reading the answer: %w", a.err)
			}
			return u, nil
		case <-ctx.Done():
			return Upload{Sent: sent, Took: time.Since(start)}, ctx.Err()
		case <-t.C:
			if sent == size {
				continue
			}
			if _, err := conn.Write([]byte{'{'}); err == nil {
				sent++
			}
		}
	}
}

// IsReset reports whether err is the peer resetting the connection (a
// server refusing it at accept may do so before the dial even returns).
func IsReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// ClosedWithin reads from conn until the server closes it or d passes; it
// reports whether the server closed it.
func ClosedWithin(conn net.Conn, d time.Duration) bool {
	_ = conn.SetReadDeadline(time.Now().Add(d))
	defer conn.SetReadDeadline(time.Time{})
	buf := make([]byte, 512)
	for {
		if _, err := conn.Read(buf); err != nil {
			return !errors.Is(err, os.ErrDeadlineExceeded)
		}
	}
}
