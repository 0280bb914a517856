package apiserver

import (
	"context"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/proto"
)

// How a gRPC request message is received. gRPC-go decodes it with the codec
// inside its own receive path and reports any decoding failure as Internal,
// a server fault; a request that is not the message it claims to be is the
// client's, InvalidArgument. So the codec hands the handlers the raw bytes
// (rawRequest) and the registered service decodes them itself
// (decodingServiceDesc). The same place ends the wait for the message:
// the stream's context is cancelled BodyReadTimeout after its headers unless
// the message has arrived by then (requestCtx).

// rawRequest receives a request message's bytes, undecoded.
type rawRequest struct{ b []byte }

// requestCodec is gRPC's protobuf codec, except that it copies the bytes of
// a message received into a *rawRequest.
type requestCodec struct{ encoding.CodecV2 }

func newRequestCodec() requestCodec {
	return requestCodec{encoding.GetCodecV2(grpcproto.Name)}
}

func (c requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*rawRequest); ok {
		// gRPC frees data when Unmarshal returns: copy.
		r.b = data.Materialize()
		return nil
	}
	return c.CodecV2.Unmarshal(data, v)
}

func (requestCodec) Name() string { return grpcproto.Name }

// requestCtx is a gRPC stream's context: a child of the one gRPC made,
// cancelled when its timer fires before the request message arrived, and
// then saying DeadlineExceeded. gRPC writes the status of a failed receive
// from this context's Err, so such a stream ends DeadlineExceeded. Contexts
// derived from it would say Canceled, but none exist while the timer runs:
// gRPC derives only value contexts before the handler has its request, and
// the timer stops then. Done and the cancelCtx behind Value are the inner
// context's, so deriving from it costs what deriving from any context does.
type requestCtx struct {
	context.Context
	timer    *time.Timer
	timedOut atomic.Bool
}

type requestCtxKey struct{}

func newRequestCtx(parent context.Context, timeout time.Duration, onTimeout func()) *requestCtx {
	ctx, cancel := context.WithCancel(parent)
	rc := &requestCtx{Context: ctx}
	rc.timer = time.AfterFunc(timeout, func() {
		if ctx.Err() != nil {
			return // the stream ended first
		}
		rc.timedOut.Store(true)
		// Counted before the cancellation, so whoever sees the stream
		// cancelled sees the timeout counted.
		onTimeout()
		cancel()
	})
	return rc
}

func (rc *requestCtx) Err() error {
	err := rc.Context.Err()
	if err != nil && rc.timedOut.Load() {
		return context.DeadlineExceeded
	}
	return err
}

func (rc *requestCtx) Value(key any) any {
	if key == (requestCtxKey{}) {
		return rc
	}
	return rc.Context.Value(key)
}

// tapRequest arms the request timer of a new gRPC stream. gRPC's transport
// runs it (grpc.InTapHandle) on its reader when a stream's headers arrive,
// after the MaxConcurrentStreams check, so a refused stream costs no timer;
// the context is a child of the stream's, which gRPC cancels when the
// stream ends, so nothing outlives the stream but its timer (stopped once
// the message is in, else firing into an ended context).
func (s *Server) tapRequest(ctx context.Context, _ *tap.Info) (context.Context, error) {
	return newRequestCtx(ctx, s.cfg.BodyReadTimeout, func() {
		s.metrics.requestTimeouts.WithLabelValues("grpc").Inc()
	}), nil
}

// requestArrived disarms ctx's request timer, if it has one.
func requestArrived(ctx context.Context) {
	if rc, ok := ctx.Value(requestCtxKey{}).(*requestCtx); ok {
		rc.timer.Stop()
	}
}

// requestTimedOut reports whether ctx's request timer fired.
func requestTimedOut(ctx context.Context) bool {
	rc, ok := ctx.Value(requestCtxKey{}).(*requestCtx)
	return ok && rc.timedOut.Load()
}

// decodeRequest receives the request message with recv, stops the request
// timer and decodes the message into v. (A failed receive has had its status
// sent by gRPC already; the error returned here is what the handler and the
// metrics see.)
func decodeRequest(ctx context.Context, timeout time.Duration, recv func(any) error, v any) error {
	var raw rawRequest
	if err := recv(&raw); err != nil {
		if requestTimedOut(ctx) {
			return status.Errorf(codes.DeadlineExceeded, "request message not received within %s of the call's headers", timeout)
		}
		return err
	}
	requestArrived(ctx)
	m, ok := v.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "request type %T is not a protobuf message", v)
	}
	if err := proto.Unmarshal(raw.b, m); err != nil {
		return status.Errorf(codes.InvalidArgument, "request is not a valid %s: %v", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return nil
}

// decodingServiceDesc returns a copy of sd whose handlers receive their
// request through decodeRequest. Unary calls that fail there never reach the
// interceptor, so they are counted here.
func (s *Server) decodingServiceDesc(sd *grpc.ServiceDesc) *grpc.ServiceDesc {
	out := *sd
	out.Methods = make([]grpc.MethodDesc, len(sd.Methods))
	for i, md := range sd.Methods {
		h, name := md.Handler, md.MethodName
		md.Handler = func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			return h(srv, ctx, func(v any) error {
				err := decodeRequest(ctx, s.cfg.BodyReadTimeout, dec, v)
				if err != nil {
					s.metrics.requests.WithLabelValues("grpc", name, status.Code(err).String()).Inc()
				}
				return err
			}, ic)
		}
		out.Methods[i] = md
	}
	out.Streams = make([]grpc.StreamDesc, len(sd.Streams))
	for i, st := range sd.Streams {
		h := st.Handler
		st.Handler = func(srv any, stream grpc.ServerStream) error {
			return h(srv, &decodingStream{ServerStream: stream, timeout: s.cfg.BodyReadTimeout})
		}
		out.Streams[i] = st
	}
	return &out
}

// decodingStream receives a server stream's request through decodeRequest.
type decodingStream struct {
	grpc.ServerStream
	timeout time.Duration
}

func (d *decodingStream) RecvMsg(m any) error {
	return decodeRequest(d.Context(), d.timeout, d.ServerStream.RecvMsg, m)
}
