package apiserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
)

// Server serves the gRPC service FastPaySidecar and the JSON HTTP API on one
// listen address. Create it with New, mount extra routes with Handle, then
// Start; Stop shuts it down gracefully.
type Server struct {
	cfg      Config
	backend  Backend
	log      *slog.Logger
	registry *prometheus.Registry
	metrics  *metrics

	grpc    *grpc.Server
	mux     *http.ServeMux
	handler http.Handler // the HTTP API with its middleware

	mu        sync.Mutex
	rootTaken bool // a route claims "/", so no JSON 404 fallback
	started   bool
	stopped   bool
	ln        net.Listener
	split     *splitListener
	http      *http.Server
	serveDone chan struct{}
	// The metrics server, when Config.MetricsListenAddr is set.
	metricsLn   net.Listener
	metricsHTTP *http.Server

	closing   chan struct{} // closed by Stop: long-lived responses end
	closeOnce sync.Once

	// fresh holds the connections handed to the HTTP server whose first
	// request has not reached a handler yet (awaitFresh).
	freshMu sync.Mutex
	fresh   map[net.Conn]struct{}
}

// freshGrace bounds how long Stop waits for the connections it has taken
// to reach their server and have their first request read: net/http drops
// a request read after its Shutdown began, closing the connection
// unanswered.
const freshGrace = time.Second

type connKey struct{}

// handedToHTTP records c, about to be handed to the HTTP server.
func (s *Server) handedToHTTP(c net.Conn) {
	s.freshMu.Lock()
	s.fresh[c] = struct{}{}
	s.freshMu.Unlock()
}

// served forgets c: its first request reached a handler, or it closed.
func (s *Server) served(c net.Conn) {
	s.freshMu.Lock()
	delete(s.fresh, c)
	s.freshMu.Unlock()
}

// trackConn is the HTTP server's ConnState hook.
func (s *Server) trackConn(c net.Conn, st http.ConnState) {
	if st == http.StateClosed || st == http.StateHijacked {
		s.served(c)
	}
}

// awaitFresh waits until the first request of every connection handed to
// the HTTP server has reached a handler (or the connection closed), or ctx
// ends.
func (s *Server) awaitFresh(ctx context.Context) {
	for {
		s.freshMu.Lock()
		n := len(s.fresh)
		s.freshMu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Millisecond):
		}
	}
}

// New builds a server for backend b. Nothing listens until Start.
func New(cfg Config, b Backend, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if b == nil {
		return nil, errors.New("apiserver: backend is nil")
	}
	if b.Board() == nil {
		return nil, errors.New("apiserver: backend has no bulletin board")
	}
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{
		cfg: cfg, backend: b, log: logger.With("component", "apiserver"),
		registry: prometheus.NewRegistry(),
		mux:      http.NewServeMux(),
		closing:  make(chan struct{}),
		fresh:    make(map[net.Conn]struct{}),
	}
	var err error
	if s.metrics, err = newMetrics(s.registry); err != nil {
		return nil, err
	}
	s.grpc = grpc.NewServer(
		grpc.MaxRecvMsgSize(int(cfg.MaxBodyBytes)),
		grpc.MaxConcurrentStreams(cfg.MaxConcurrentStreams),
		grpc.MaxHeaderListSize(uint32(cfg.MaxHeaderBytes)),
		grpc.ConnectionTimeout(cfg.HandshakeTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: cfg.IdleTimeout,
			Time:              cfg.KeepaliveTime,
			Timeout:           cfg.KeepaliveTimeout,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime: cfg.KeepaliveMinTime,
			// Wallets keep a connection to their sidecar between payments.
			PermitWithoutStream: true,
		}),
		grpc.InTapHandle(s.tapRequest),
		grpc.ForceServerCodecV2(newRequestCodec()),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
	)
	s.grpc.RegisterService(s.decodingServiceDesc(&fastpayv1.FastPaySidecar_ServiceDesc), &sidecarService{s: s})
	if cc, ok := b.(ConflictChecker); ok {
		s.grpc.RegisterService(s.decodingServiceDesc(&fastpayv1.ConflictCheck_ServiceDesc), &conflictService{cc: cc})
	}
	s.routes()
	s.handler = s.metricsMiddleware(s.recoverMiddleware(s.corsMiddleware(s.mux)))
	return s, nil
}

// Handle mounts an extra HTTP route (for example the dashboard's static
// files) with the pattern syntax of http.ServeMux. Call it before Start; like
// ServeMux it panics on a pattern conflicting with an existing route. A
// handler for "/" replaces the JSON 404 for unknown paths.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		panic("apiserver: Handle called after Start")
	}
	if p := strings.TrimSpace(pattern); p == "/" || strings.HasSuffix(p, " /") {
		s.rootTaken = true
	}
	s.mux.Handle(pattern, h)
}

// Registry returns the registry of the API's own metrics (merged with the
// backend's gatherer on /metrics).
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// ErrListen reports that Start could not listen on Config.ListenAddr.
var ErrListen = errors.New("apiserver: cannot listen")

// Start listens on Config.ListenAddr and serves in the background.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.stopped {
		return errors.New("apiserver: already started or stopped")
	}
	var lc net.ListenConfig
	listen := lc.Listen
	if s.cfg.Listen != nil {
		listen = s.cfg.Listen
	}
	ln, err := listen(ctx, "tcp", s.cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrListen, err)
	}
	if s.cfg.MetricsListenAddr != "" {
		mln, err := lc.Listen(ctx, "tcp", s.cfg.MetricsListenAddr)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("apiserver: metrics listen on %s: %w", s.cfg.MetricsListenAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET "+routeMetrics, s.metricsHandler())
		s.metricsLn = mln
		s.metricsHTTP = &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
			IdleTimeout:       s.cfg.IdleTimeout,
			MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
	}
	limited := newLimitListener(ln, s.cfg.MaxConnsPerIP, s.cfg.MaxConns, s.metrics, s.log)
	if !s.rootTaken {
		s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusNotFound, "NOT_FOUND", "no route for "+r.URL.Path)
		})
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	// No WriteTimeout: it would end server-sent events and ?wait=qc
	// answers, whose lifetime StreamTimeout bounds instead. No ReadTimeout
	// either: a body gets BodyReadTimeout from when its headers are in
	// (boundBodyRead), not from the request's first byte.
	s.http = &http.Server{
		Handler:           http.HandlerFunc(s.serveRoot),
		Protocols:         &protocols,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: int(s.cfg.MaxConcurrentStreams),
			SendPingTimeout:      s.cfg.KeepaliveTime,
			PingTimeout:          s.cfg.KeepaliveTimeout,
		},
		ErrorLog:  slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		ConnState: s.trackConn,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
	s.ln, s.started, s.serveDone = ln, true, make(chan struct{})
	srv, done := s.http, s.serveDone
	var serving sync.WaitGroup
	var httpLn net.Listener = limited
	if !s.cfg.HTTP2JSON {
		split := newSplitListener(limited, s.cfg.HandshakeTimeout, s.log, s.handedToHTTP, s.served)
		s.split, httpLn = split, split.http
		serving.Add(2)
		go func() {
			defer serving.Done()
			split.run()
		}()
		go func() {
			defer serving.Done()
			if err := s.grpc.Serve(split.grpc); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				s.log.Error("gRPC server stopped", "err", err)
			}
		}()
	}
	serving.Add(1)
	go func() {
		defer serving.Done()
		if err := srv.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("API server stopped", "err", err)
		}
	}()
	if msrv, mln := s.metricsHTTP, s.metricsLn; msrv != nil {
		serving.Add(1)
		go func() {
			defer serving.Done()
			if err := msrv.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("metrics server stopped", "err", err)
			}
		}()
		s.log.Info("metrics listening", "addr", mln.Addr().String())
	}
	go func() {
		serving.Wait()
		close(done)
	}()
	s.log.Info("API listening (gRPC and HTTP)", "addr", ln.Addr().String())
	return nil
}

// Addr returns the bound address, or nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// MetricsAddr returns the bound address of the metrics server, or nil
// before Start and when Config.MetricsListenAddr is empty (/metrics is then
// on Addr).
func (s *Server) MetricsAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.metricsLn == nil {
		return nil
	}
	return s.metricsLn.Addr()
}

// Stop ends open streams, then waits for in-flight requests until ctx ends,
// after which it closes the remaining connections.
// Calling it again does nothing.
func (s *Server) Stop(ctx context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closing)
		s.mu.Lock()
		srv, done, split, msrv := s.http, s.serveDone, s.split, s.metricsHTTP
		s.stopped = true
		s.mu.Unlock()
		// Take no more connections, and let those already taken reach
		// their server and have their first request read before it shuts
		// down: they are then answered rather than closed unanswered,
		// which matters when the socket outlives this server (node's
		// apiListener, across epochs) and clients keep connecting. The
		// halves stay open until both servers have shut down, so each
		// sees its own shutdown rather than its listener vanishing.
		// Both waits together are bounded by freshGrace, so clients that
		// connect and stay silent cannot hold a stop (an epoch's swap)
		// for longer.
		graceCtx, cancel := context.WithTimeout(ctx, freshGrace)
		if split != nil {
			split.stopAccepting(graceCtx)
		}
		s.awaitFresh(graceCtx)
		cancel()
		if msrv != nil {
			if merr := msrv.Shutdown(ctx); merr != nil {
				_ = msrv.Close()
			}
		}
		if srv != nil {
			if err = srv.Shutdown(ctx); err != nil {
				_ = srv.Close()
			}
		}
		s.grpc.Stop()
		if split != nil {
			split.Close()
		}
		if done != nil {
			<-done
		}
	})
	return err
}

// serveRoot serves the HTTP API; gRPC arriving through net/http (HTTP/2
// reaching the HTTP server some other way than the split listener) still
// works through the handler bridge.
//
// A gRPC call through net/http gets its request message's time bound from
// the body deadline, not from the request timer (tapRequest): net/http's
// gRPC transport takes the end of the request's context for the client
// leaving and drops the call without a status. A late message then ends
// the call Unavailable (the body read failed) rather than DeadlineExceeded.
func (s *Server) serveRoot(w http.ResponseWriter, r *http.Request) {
	if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
		s.served(c)
	}
	if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		s.boundBodyRead(w, r, "grpc")
		s.grpc.ServeHTTP(w, r)
		return
	}
	s.boundBodyRead(w, r, "http")
	s.handler.ServeHTTP(w, r)
}

// boundBodyRead gives r's body BodyReadTimeout to arrive: the connection's
// (HTTP/2: the stream's) read deadline is set now and cleared when the body
// has been read to its end, so that the rest of the exchange (a response
// streamed for minutes) has none. (net/http clears it too when it starts
// watching an HTTP/1 connection for the client leaving; this does not rely
// on that.) A body never read to its end keeps the deadline, which then
// also bounds the server draining it after the handler.
func (s *Server) boundBodyRead(w http.ResponseWriter, r *http.Request, protocol string) {
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(s.cfg.BodyReadTimeout)); err != nil {
		return // a writer without deadlines (not net/http's): nothing to bound
	}
	r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc, timeouts: s.metrics.requestTimeouts.WithLabelValues(protocol)}
}

// deadlineBody clears the read deadline once its body has been read to its
// end, and counts a read cut off by the deadline.
type deadlineBody struct {
	io.ReadCloser
	rc       *http.ResponseController
	timeouts prometheus.Counter
	done     bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !b.done {
		b.done = true
		if errors.Is(err, io.EOF) {
			_ = b.rc.SetReadDeadline(time.Time{})
		} else if errors.Is(err, os.ErrDeadlineExceeded) {
			b.timeouts.Inc()
		}
	}
	return n, err
}

// statusWriter records the status code; Unwrap lets http.ResponseController
// reach the connection (flush, deadlines).
type statusWriter struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.code, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.code, w.wroteHeader = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		if !w.wroteHeader {
			w.code, w.wroteHeader = http.StatusOK, true
		}
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) recoverMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw, ok := w.(*statusWriter)
		if !ok {
			sw = &statusWriter{ResponseWriter: w}
		}
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if p == http.ErrAbortHandler { //nolint:errorlint // sentinel panic value
				panic(p)
			}
			s.metrics.panics.Inc()
			s.log.Error("panic in HTTP handler", "method", r.Method, "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
			if !sw.wroteHeader {
				writeError(sw, http.StatusInternalServerError, "INTERNAL", "internal error")
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

func (s *Server) metricsMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			code := sw.code
			if !sw.wroteHeader {
				code = http.StatusOK
			}
			s.metrics.requests.WithLabelValues("http", route, strconv.Itoa(code)).Inc()
			if route != routeEvents {
				s.metrics.latency.WithLabelValues("http", route).Observe(time.Since(start).Seconds())
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

func (s *Server) corsMiddleware(next http.Handler) http.Handler {
	anyOrigin := slices.Contains(s.cfg.AllowedOrigins, "*")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		allowed := origin != "" && (anyOrigin || slices.Contains(s.cfg.AllowedOrigins, origin))
		if allowed {
			h := w.Header()
			if anyOrigin {
				h.Set("Access-Control-Allow-Origin", "*")
			} else {
				h.Set("Access-Control-Allow-Origin", origin)
				h.Add("Vary", "Origin")
			}
			h.Set("Access-Control-Expose-Headers", "Content-Type, Retry-After")
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			if !allowed {
				writeError(w, http.StatusForbidden, "CORS_ORIGIN_NOT_ALLOWED", "origin "+origin+" is not allowed")
				return
			}
			h := w.Header()
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
				h.Set("Access-Control-Allow-Headers", req)
			} else {
				h.Set("Access-Control-Allow-Headers", "Content-Type")
			}
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}
