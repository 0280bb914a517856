package apiserver

import (
	"context"
	"errors"
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
// the message has arrived by then (requestTimer).

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

// errRequestTimeout cancels a stream whose request message did not arrive
// within BodyReadTimeout.
var errRequestTimeout = errors.New("request message not received in time")

// requestTimer is a stream's context until its request message arrives: it
// is cancelled with errRequestTimeout when the timer fires first, and reports
// that as DeadlineExceeded, which gRPC sends to the client.
type requestTimer struct {
	context.Context // from context.WithCancelCause
	timer           *time.Timer
}

type requestTimerKey struct{}

func (r *requestTimer) Err() error {
	if err := r.Context.Err(); err != nil {
		if errors.Is(context.Cause(r.Context), errRequestTimeout) {
			return context.DeadlineExceeded
		}
		return err
	}
	return nil
}

func (r *requestTimer) Value(key any) any {
	if key == (requestTimerKey{}) {
		return r
	}
	return r.Context.Value(key)
}

// tapRequest arms the request timer of a new gRPC stream (grpc.InTapHandle:
// it runs on the transport's reader when the stream's headers arrive, after
// the MaxConcurrentStreams check, so a refused stream costs no timer).
// The timer's context is a child of the stream's, which gRPC cancels when
// the stream ends, so nothing outlives the stream but a stopped timer.
func (s *Server) tapRequest(ctx context.Context, _ *tap.Info) (context.Context, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	rt := &requestTimer{Context: ctx}
	rt.timer = time.AfterFunc(s.cfg.BodyReadTimeout, func() {
		s.metrics.requestTimeouts.WithLabelValues("grpc").Inc()
		cancel(errRequestTimeout)
	})
	return rt, nil
}

// requestArrived disarms ctx's request timer, if it has one.
func requestArrived(ctx context.Context) {
	if rt, ok := ctx.Value(requestTimerKey{}).(*requestTimer); ok {
		rt.timer.Stop()
	}
}

// decodeRequest receives the request message with recv, stops the request
// timer and decodes the message into v.
func decodeRequest(ctx context.Context, recv func(any) error, v any) error {
	var raw rawRequest
	if err := recv(&raw); err != nil {
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
				err := decodeRequest(ctx, dec, v)
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
			return h(srv, &decodingStream{ServerStream: stream})
		}
		out.Streams[i] = st
	}
	return &out
}

// decodingStream receives a server stream's request through decodeRequest.
type decodingStream struct{ grpc.ServerStream }

func (d *decodingStream) RecvMsg(m any) error {
	return decodeRequest(d.Context(), d.ServerStream.RecvMsg, m)
}
