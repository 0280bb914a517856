package apiserver

import (
	"context"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/allegro-mesh/allegro/internal/promreg"
)

// metrics are the API's own; they live on a registry of the server's, merged
// with the backend's gatherer on /metrics.
type metrics struct {
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	streams     *prometheus.GaugeVec
	streamDrops *prometheus.CounterVec
	submissions *prometheus.CounterVec
	panics      prometheus.Counter

	connsOpen       prometheus.Gauge
	connsRefused    *prometheus.CounterVec
	requestTimeouts *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "allegro", Subsystem: "api", Name: "requests_total",
			Help: "API requests by protocol (http, grpc), route or method, and status code.",
		}, []string{"protocol", "route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "allegro", Subsystem: "api", Name: "request_duration_seconds",
			Help:    "Latency of unary API requests (streams excluded).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"protocol", "route"}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "allegro", Subsystem: "api", Name: "streams_active",
			Help: "Open long-lived responses: grpc (SubmitFastPayStream) and sse (/api/v1/events).",
		}, []string{"kind"}),
		streamDrops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "allegro", Subsystem: "api", Name: "stream_events_dropped_total",
			Help: "Board events a lagging API stream lost (it resynchronised or told the client).",
		}, []string{"kind"}),
		submissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "allegro", Subsystem: "api", Name: "submissions_total",
			Help: "Submissions by protocol and result (certified or the reject code).",
		}, []string{"protocol", "result"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "allegro", Subsystem: "api", Name: "panics_total",
			Help: "Handler panics recovered by the API server.",
		}),
		connsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "allegro", Subsystem: "api", Name: "connections_open",
			Help: "Client connections open on the API address (gRPC and HTTP).",
		}),
		connsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "allegro", Subsystem: "api", Name: "connections_refused_total",
			Help: "Client connections closed at accept: over max_conns_per_ip (per_ip) or max_conns (total).",
		}, []string{"reason"}),
		requestTimeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "allegro", Subsystem: "api", Name: "request_read_timeouts_total",
			Help: "Requests whose body (http) or request message (grpc) did not arrive within body_read_timeout.",
		}, []string{"protocol"}),
	}
	if _, err := promreg.Register("apiserver", reg, m.requests, m.latency, m.streams, m.streamDrops, m.submissions, m.panics,
		m.connsOpen, m.connsRefused, m.requestTimeouts); err != nil {
		return nil, err
	}
	return m, nil
}

func grpcMethodName(full string) string {
	for i := len(full) - 1; i >= 0; i-- {
		if full[i] == '/' {
			return full[i+1:]
		}
	}
	return full
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	method := grpcMethodName(info.FullMethod)
	defer func() {
		if p := recover(); p != nil {
			s.metrics.panics.Inc()
			s.log.Error("panic in gRPC handler", "method", method, "panic", p, "stack", string(debug.Stack()))
			resp, err = nil, status.Error(codes.Internal, "internal error")
		}
		s.metrics.requests.WithLabelValues("grpc", method, status.Code(err).String()).Inc()
		s.metrics.latency.WithLabelValues("grpc", method).Observe(time.Since(start).Seconds())
	}()
	return handler(ctx, req)
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	method := grpcMethodName(info.FullMethod)
	defer func() {
		if p := recover(); p != nil {
			s.metrics.panics.Inc()
			s.log.Error("panic in gRPC stream handler", "method", method, "panic", p, "stack", string(debug.Stack()))
			err = status.Error(codes.Internal, "internal error")
		}
		s.metrics.requests.WithLabelValues("grpc", method, status.Code(err).String()).Inc()
	}()
	return handler(srv, ss)
}
