package apiserver

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/apiserver/apitest"
)

const (
	methodSubmit       = "/tempo.fastpay.v1.FastPaySidecar/SubmitFastPay"
	methodSubmitStream = "/tempo.fastpay.v1.FastPaySidecar/SubmitFastPayStream"
	methodBulletin     = "/tempo.fastpay.v1.FastPaySidecar/GetBulletinBoard"
)

// secondLoopback is a client address other than 127.0.0.1 (Linux routes all
// of 127/8 to the loopback interface); tests needing two client addresses
// skip where it cannot be bound.
const secondLoopback = "127.0.0.2"

// dialFrom dials s from local. A connection the server reset while the
// dial was completing comes back as a closed connection.
func dialFrom(t *testing.T, s *Server, local string) net.Conn {
	t.Helper()
	c, err := apitest.Dial(testCtx(t), s.Addr().String(), local)
	if apitest.IsReset(err) {
		a, b := net.Pipe()
		b.Close()
		return a
	}
	if err != nil {
		if local == secondLoopback {
			t.Skipf("cannot dial from %s: %v", local, err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestClientKey(t *testing.T) {
	for _, c := range []struct{ addr, want string }{
		{"192.0.2.7:1234", "192.0.2.7/32"},
		{"[::ffff:192.0.2.7]:1234", "192.0.2.7/32"},
		{"[2001:db8::1]:1", "2001:db8::/64"},
		{"[2001:db8::ffff:1]:2", "2001:db8::/64"},
		{"[2001:db8:0:1::1]:3", "2001:db8:0:1::/64"},
	} {
		ap := netip.MustParseAddrPort(c.addr)
		got := clientKey(net.TCPAddrFromAddrPort(ap))
		if got.String() != c.want {
			t.Errorf("%s: key %s, want %s", c.addr, got, c.want)
		}
	}
}

// TestConnectionLimits: connections beyond MaxConnsPerIP from one address,
// or beyond MaxConns in all, are closed on accept; closing one frees its
// slot; the refusals are counted.
func TestConnectionLimits(t *testing.T) {
	f := newFake(t, 4)
	s := startServer(t, f, func(c *Config) {
		c.MaxConnsPerIP, c.MaxConns = 3, 5
		c.HandshakeTimeout = time.Minute // silent connections stay open
	})
	const settle = 300 * time.Millisecond

	var first []net.Conn
	for range 3 {
		first = append(first, dialFrom(t, s, "127.0.0.1"))
	}
	for i, c := range first {
		if apitest.ClosedWithin(c, settle) {
			t.Fatalf("connection %d of 3 from 127.0.0.1 was closed", i)
		}
	}
	if !apitest.ClosedWithin(dialFrom(t, s, "127.0.0.1"), 5*time.Second) {
		t.Fatal("a 4th connection from 127.0.0.1 stayed open (MaxConnsPerIP 3)")
	}

	// Another address has its own allowance, up to MaxConns in all.
	for i := range 2 {
		if apitest.ClosedWithin(dialFrom(t, s, secondLoopback), settle) {
			t.Fatalf("connection %d from %s was closed", i, secondLoopback)
		}
	}
	if !apitest.ClosedWithin(dialFrom(t, s, secondLoopback), 5*time.Second) {
		t.Fatal("a 6th connection stayed open (MaxConns 5)")
	}

	// Closing a connection frees its slot once the server has seen it go.
	first[0].Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if !apitest.ClosedWithin(dialFrom(t, s, "127.0.0.1"), settle) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slot of a closed connection was never freed")
		}
	}

	text := metricsText(t, s)
	for _, want := range []string{
		`allegro_api_connections_refused_total{reason="per_ip"}`,
		`allegro_api_connections_refused_total{reason="total"}`,
		`allegro_api_connections_open`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// metricsText gathers the server's own registry.
func metricsText(t *testing.T, s *Server) string {
	t.Helper()
	mfs, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			b.WriteString(mf.GetName())
			if len(m.GetLabel()) > 0 {
				b.WriteString("{")
				for i, l := range m.GetLabel() {
					if i > 0 {
						b.WriteString(",")
					}
					fmt.Fprintf(&b, "%s=%q", l.GetName(), l.GetValue())
				}
				b.WriteString("}")
			}
			switch {
			case m.GetCounter() != nil:
				fmt.Fprintf(&b, " %g\n", m.GetCounter().GetValue())
			case m.GetGauge() != nil:
				fmt.Fprintf(&b, " %g\n", m.GetGauge().GetValue())
			default:
				b.WriteString("\n")
			}
		}
	}
	return b.String()
}

// TestGRPCStreamLimitAndRequestTimeout: on one connection, streams beyond
// MaxConcurrentStreams are refused; streams that send headers and never
// their request message, or only part of it, end after BodyReadTimeout
// (DeadlineExceeded on gRPC's transport, Unavailable through net/http's);
// a call whose request arrived is not cut off by it.
func TestGRPCStreamLimitAndRequestTimeout(t *testing.T) {
	for _, http2JSON := range []bool{false, true} {
		t.Run(fmt.Sprintf("HTTP2JSON=%v", http2JSON), func(t *testing.T) { testStreamLimitAndRequestTimeout(t, http2JSON) })
	}
}

func testStreamLimitAndRequestTimeout(t *testing.T, http2JSON bool) {
	f := newFake(t, 4)
	const timeout = 300 * time.Millisecond
	s := startServer(t, f, func(c *Config) { c.MaxConcurrentStreams, c.BodyReadTimeout, c.HTTP2JSON = 4, timeout, http2JSON })
	ctx := testCtx(t)
	cutOff := apitest.GRPCDeadlineExceeded
	if http2JSON {
		cutOff = "14" // Unavailable
	}

	h2, err := apitest.NewH2Conn(dialFrom(t, s, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	opened := time.Now()
	var ids []uint32
	for range 10 {
		id, err := h2.OpenGRPC(methodSubmit)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := h2.WaitFor(ctx, func() bool { return len(h2.Ends()) == len(ids) }); err != nil {
		t.Fatalf("streams ended: %v of %d", h2.Ends(), len(ids))
	}
	if got := h2.MaxConcurrentStreams(); got != 4 {
		t.Errorf("announced SETTINGS_MAX_CONCURRENT_STREAMS %d, want 4", got)
	}
	var refused, timedOut int
	for _, id := range ids {
		e, _ := h2.End(id)
		switch {
		// RFC 9113 §5.1.2: a stream over the limit is reset with
		// REFUSED_STREAM or PROTOCOL_ERROR (net/http's once the client
		// acknowledged the limit).
		case e.RST && (e.Code == http2.ErrCodeRefusedStream || e.Code == http2.ErrCodeProtocol):
			refused++
		case e.GRPCStatus == cutOff:
			timedOut++
			if took := e.At.Sub(opened); took < timeout {
				t.Errorf("stream %d timed out after %s, before BodyReadTimeout %s", id, took, timeout)
			}
		default:
			t.Errorf("stream %d ended %+v", id, e)
		}
	}
	if refused != 6 || timedOut != 4 {
		t.Fatalf("%d refused, %d timed out; want 6 and 4", refused, timedOut)
	}

	// A partial request message is cut off the same way.
	id, err := h2.OpenGRPC(methodSubmitStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := h2.SendPartialMessage(id, 100, []byte{0x0a, 0x05}); err != nil {
		t.Fatal(err)
	}
	if err := h2.WaitFor(ctx, func() bool { _, ok := h2.End(id); return ok }); err != nil {
		t.Fatal("partial message never timed out")
	}
	if e, _ := h2.End(id); e.GRPCStatus != cutOff {
		t.Fatalf("partial message: %+v", e)
	}

	// A stream whose request arrived lives past BodyReadTimeout: the QC
	// comes three timeouts later.
	req := testRequest(0, 10)
	h, e := mustEffects(t, req)
	stream, err := grpcClient(t, s).SubmitFastPayStream(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil { // ACCEPTED
		t.Fatal(err)
	}
	signed := time.AfterFunc(3*timeout, func() {
		for i := 1; i < 4; i++ {
			f.board.AddCertificate(f.sign(i, h, e))
		}
	})
	defer signed.Stop()
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("stream ended before its QC: %v", err)
		}
		if ev.GetQc() != nil {
			break
		}
	}
	if got := metricsText(t, s); !strings.Contains(got, `allegro_api_request_read_timeouts_total{protocol="grpc"} 5`) {
		t.Errorf("metrics: want 5 gRPC read timeouts:\n%s", got)
	}
}

// rawCodec sends a request's bytes as they are.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { *(v.(*[]byte)) = data; return nil }
func (rawCodec) Name() string                       { return "proto" }

var _ encoding.Codec = rawCodec{}

// TestGRPCUndecodableRequest: a request that is not the message it claims
// to be gets InvalidArgument (not Internal), over gRPC's transport and over
// net/http's.
func TestGRPCUndecodableRequest(t *testing.T) {
	garbage := []byte{0x0a, 0x05, 0x01} // field 1, 5 bytes announced, 1 sent
	for _, http2JSON := range []bool{false, true} {
		t.Run(fmt.Sprintf("HTTP2JSON=%v", http2JSON), func(t *testing.T) {
			f := newFake(t, 4)
			s := startServer(t, f, func(c *Config) { c.HTTP2JSON = http2JSON })
			conn, err := grpc.NewClient(s.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx := testCtx(t)
			for _, method := range []string{methodSubmit, methodBulletin} {
				var out []byte
				err := conn.Invoke(ctx, method, garbage, &out, grpc.ForceCodec(rawCodec{}))
				if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "tempo.fastpay.v1.") {
					t.Errorf("%s: %v, want InvalidArgument naming the message", method, err)
				}
			}
			stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, methodSubmitStream, grpc.ForceCodec(rawCodec{}))
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.SendMsg(garbage); err != nil {
				t.Fatal(err)
			}
			if err := stream.CloseSend(); err != nil {
				t.Fatal(err)
			}
			var out []byte
			if err := stream.RecvMsg(&out); status.Code(err) != codes.InvalidArgument {
				t.Errorf("stream: %v, want InvalidArgument", err)
			}
			if _, submits := f.last(); submits != 0 {
				t.Errorf("undecodable requests reached the backend %d times", submits)
			}
			// Well-formed calls still work, and the rejects are counted.
			if _, err := fastpayv1.NewFastPaySidecarClient(conn).SubmitFastPay(ctx, testRequest(0, 10)); err != nil {
				t.Fatal(err)
			}
			text := metricsText(t, s)
			for _, want := range []string{
				`allegro_api_requests_total{code="InvalidArgument",protocol="grpc",route="SubmitFastPay"} 1`,
				`allegro_api_requests_total{code="InvalidArgument",protocol="grpc",route="SubmitFastPayStream"} 1`,
				`allegro_api_requests_total{code="OK",protocol="grpc",route="SubmitFastPay"} 1`,
			} {
				if !strings.Contains(text, want) {
					t.Errorf("metrics lack %s", want)
				}
			}
		})
	}
}

// TestHTTPBodyTimeout: a body trickling in is cut off with 408 after
// BodyReadTimeout; the deadline ends with the body, so a ?wait=qc answer
// and an event stream outlive it.
func TestHTTPBodyTimeout(t *testing.T) {
	f := newFake(t, 4)
	const timeout = 300 * time.Millisecond
	s := startServer(t, f, func(c *Config) { c.BodyReadTimeout, c.HeartbeatInterval = timeout, 50*time.Millisecond })
	ctx := testCtx(t)

	var wg sync.WaitGroup
	uploads := make([]apitest.Upload, 3)
	errs := make([]error, len(uploads))
	for i := range uploads {
		conn := dialFrom(t, s, "")
		wg.Add(1)
		go func() {
			defer wg.Done()
			uploads[i], errs[i] = apitest.SlowUpload(ctx, conn, "/api/v1/submit-raw-tx", 1000, 50*time.Millisecond)
		}()
	}
	wg.Wait()
	for i, u := range uploads {
		if errs[i] != nil || u.Status != http.StatusRequestTimeout || !strings.Contains(u.Body, "BODY_TIMEOUT") {
			t.Errorf("slow upload %d: %+v %v", i, u, errs[i])
		}
		if u.Took < timeout || u.Took > timeout+5*time.Second || u.Sent >= 1000 {
			t.Errorf("slow upload %d ended after %s with %d bytes sent", i, u.Took, u.Sent)
		}
	}

	// An event stream runs past the timeout (GET: no body, no deadline).
	events := openSSE(t, baseURL(s)+"/api/v1/events")
	streamStart := time.Now()
	for time.Since(streamStart) < 3*timeout {
		nextEvent(t, events, false)
	}

	// A submission waiting for its QC answers three timeouts later.
	req := testRequest(7, 10)
	h, e := mustEffects(t, req)
	signed := time.AfterFunc(3*timeout, func() {
		for i := 1; i < 4; i++ {
			f.board.AddCertificate(f.sign(i, h, e))
		}
	})
	defer signed.Stop()
	start := time.Now()
	code, _, b := do(t, "POST", baseURL(s)+"/api/v1/submit-raw-tx?wait=qc&timeout_ms=10000", submitBody(7, 10))
	if resp := decodeAs[SubmitResponse](t, b); code != http.StatusOK || resp.QC == nil {
		t.Fatalf("wait=qc past the body deadline: %d %s", code, b)
	}
	if took := time.Since(start); took < 3*timeout {
		t.Fatalf("the QC came after %s, before the certificates were added", took)
	}
	if got := metricsText(t, s); !strings.Contains(got, `allegro_api_request_read_timeouts_total{protocol="http"} 3`) {
		t.Errorf("metrics: want 3 HTTP read timeouts")
	}
}

// A request context says DeadlineExceeded when its timer ended it, Canceled
// when its stream did, and is not ended by a disarmed timer.
func TestRequestCtx(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: Config{BodyReadTimeout: time.Hour}, metrics: m, registry: reg}
	parent, cancel := context.WithCancel(context.Background())
	ctx, _ := s.tapRequest(parent, nil)
	handlerCtx := context.WithValue(ctx, struct{}{}, 1) // what the handlers see
	cancel()
	<-ctx.Done()
	if ctx.Err() != context.Canceled || requestTimedOut(handlerCtx) {
		t.Fatalf("cancelled with the stream: %v", ctx.Err())
	}
	if err := decodeRequest(handlerCtx, time.Hour, func(any) error { return status.FromContextError(ctx.Err()).Err() }, &fastpayv1.SubmitFastPayRequest{}); status.Code(err) != codes.Canceled {
		t.Fatalf("a stream cancelled by the client: %v", err)
	}

	s.cfg.BodyReadTimeout = time.Millisecond
	ctx, _ = s.tapRequest(context.Background(), nil)
	handlerCtx = context.WithValue(ctx, struct{}{}, 1)
	<-handlerCtx.Done()
	if ctx.Err() != context.DeadlineExceeded || handlerCtx.Err() != context.DeadlineExceeded || !requestTimedOut(handlerCtx) {
		t.Fatalf("timer fired: %v %v", ctx.Err(), handlerCtx.Err())
	}
	if err := decodeRequest(handlerCtx, time.Millisecond, func(any) error { return status.FromContextError(ctx.Err()).Err() }, &fastpayv1.SubmitFastPayRequest{}); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a receive cut off by the timer: %v", err)
	}
	if got := metricsText(t, s); !strings.Contains(got, `allegro_api_request_read_timeouts_total{protocol="grpc"} 1`) {
		t.Errorf("want one timeout counted (the stream-cancelled one is not):\n%s", got)
	}

	s.cfg.BodyReadTimeout = 50 * time.Millisecond
	ctx, _ = s.tapRequest(context.Background(), nil)
	requestArrived(context.WithValue(ctx, struct{}{}, 1)) // found through derived contexts
	select {
	case <-ctx.Done():
		t.Fatal("a disarmed timer cancelled the stream")
	case <-time.After(200 * time.Millisecond):
	}
}
