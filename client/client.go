package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// Defaults of Config's zero fields.
const (
	DefaultTimeout      = 10 * time.Second
	DefaultRetries      = 2
	DefaultPollInterval = 500 * time.Millisecond
)

// Errors of Pay and FanOut; match them with errors.Is. A reject is a
// *RejectError (errors.As).
var (
	// ErrUnverifiedQC: a sidecar sent a QC that does not verify against the
	// committee or is not for the submitted transaction and its effects. The
	// QC is never returned.
	ErrUnverifiedQC = errors.New("QC does not verify")
	// ErrNoQC: the sidecar ended the stream without sending a QC.
	ErrNoQC = errors.New("stream ended without a QC")
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("client is closed")
)

// Config configures a Client.
type Config struct {
	// Endpoints are sidecar gRPC addresses (host:port). Pay submits to the
	// first; the others are fallbacks, tried in order when an attempt fails
	// with a transport error, a timeout, an unverifiable QC or a
	// TEMPORARY_UNAVAILABLE reject.
	Endpoints []string
	// Committee verifies every certificate and QC received. Required.
	Committee *qc.Committee
	// CommitteeOf, on a network whose committee changes with epochs
	// (committee.Resolver.Func), returns the committee of another epoch: a
	// QC is verified against the committee of the epoch it carries, and a
	// certificate that is not Committee's against the next epoch's (the
	// payment crossed a boundary). Nil: Committee only.
	CommitteeOf func(epoch uint64) *qc.Committee
	// Timeout bounds one attempt: from submission to a verified QC
	// (default 10 s). WaitSettled and Status use it per HTTP request.
	Timeout time.Duration
	// Retries is the number of further attempts after the first (default 2,
	// so three attempts in all; negative: no retry). Attempt k goes to
	// Endpoints[k mod len(Endpoints)].
	Retries int
	// Logger receives warnings about misbehaving sidecars (default:
	// discarded).
	Logger *slog.Logger
	// DialOptions replace the default gRPC dial options (plaintext
	// transport).
	DialOptions []grpc.DialOption
	// HTTPClient is used by Status and WaitSettled (default: a client without
	// a global timeout; each request is bounded by Timeout).
	HTTPClient *http.Client
	// PollInterval is how often WaitSettled polls (default 500 ms).
	PollInterval time.Duration
}

func (cfg Config) withDefaults() Config {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	switch {
	case cfg.Retries == 0:
		cfg.Retries = DefaultRetries
	case cfg.Retries < 0:
		cfg.Retries = 0
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DialOptions == nil {
		cfg.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	return cfg
}

func (cfg Config) validate() error {
	if len(cfg.Endpoints) == 0 {
		return errors.New("client config: no endpoints")
	}
	for _, ep := range cfg.Endpoints {
		if _, _, err := net.SplitHostPort(ep); err != nil {
			return fmt.Errorf("client config: endpoint %q is not host:port: %v", ep, err)
		}
	}
	if cfg.Committee == nil {
		return errors.New("client config: a committee is required to verify QCs")
	}
	return nil
}

// Client submits payments to sidecars. It is safe for concurrent use; it
// keeps one gRPC connection per endpoint until Close.
type Client struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	closed bool
}

// New validates cfg and returns a client. Connections are made lazily.
func New(cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.Endpoints = append([]string(nil), cfg.Endpoints...)
	return &Client{cfg: cfg, log: cfg.Logger, conns: make(map[string]*grpc.ClientConn)}, nil
}

// Committee returns the committee QCs are verified against.
func (c *Client) Committee() *qc.Committee { return c.cfg.Committee }

// Close closes every connection. Calls in flight fail.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var errs []error
	for ep, conn := range c.conns {
		errs = append(errs, conn.Close())
		delete(c.conns, ep)
	}
	return errors.Join(errs...)
}

// sidecar returns a gRPC client of endpoint ep.
func (c *Client) sidecar(ep string) (fastpayv1.FastPaySidecarClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	conn, ok := c.conns[ep]
	if !ok {
		var err error
		if conn, err = grpc.NewClient(ep, c.cfg.DialOptions...); err != nil {
			return nil, fmt.Errorf("dial %s: %w", ep, err)
		}
		c.conns[ep] = conn
	}
	return fastpayv1.NewFastPaySidecarClient(conn), nil
}

// RejectError is a sidecar's reject of a payment (SPEC §4's codes).
type RejectError struct {
	Code     fastpayv1.RejectCode
	Message  string
	Endpoint string // the sidecar that rejected
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("rejected by %s: %s: %s", e.Endpoint, e.Code, e.Message)
}

// Temporary reports whether the reject is TEMPORARY_UNAVAILABLE (the sidecar
// could not decide, for example because its chain node is unreachable); Pay
// retries those.
func (e *RejectError) Temporary() bool {
	return e.Code == fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE
}

// EventKind says what an Event reports.
type EventKind int

// Event kinds, in the order a payment normally produces them.
const (
	// EventAccepted: the entry sidecar validated and signed the payment
	// (lifecycle stage ACCEPTED).
	EventAccepted EventKind = iota + 1
	// EventCertificate: a verified certificate from one validator.
	EventCertificate
	// EventQC: the verified QC; Pay returns right after it.
	EventQC
	// EventStage: another lifecycle stage (CERTIFIED and, when the stream is
	// read further, the settlement stages).
	EventStage
	// EventRetry: an attempt failed (Err says why); the next one follows.
	EventRetry
)

func (k EventKind) String() string {
	switch k {
	case EventAccepted:
		return "accepted"
	case EventCertificate:
		return "certificate"
	case EventQC:
		return "qc"
	case EventStage:
		return "stage"
	case EventRetry:
		return "retry"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is one step of a payment, reported to Pay's callback.
type Event struct {
	Kind     EventKind
	TxHash   qc.Hash
	Endpoint string // the sidecar of this attempt
	Attempt  int    // 1 for the first attempt
	// Elapsed is the time since Pay (or FanOut) was called.
	Elapsed time.Duration
	// Cert is the verified certificate (EventCertificate) and SignerName its
	// signer's name in the committee.
	Cert       *qc.Certificate
	SignerName string
	// Certs counts the distinct verified certificates received so far
	// (EventCertificate, EventQC).
	Certs int
	// QC is the verified QC (EventQC).
	QC *qc.QC
	// Stage and BlockHeight are the lifecycle stage (EventAccepted,
	// EventStage).
	Stage       fastpayv1.TxLifecycleUpdate_Stage
	BlockHeight uint64
	// Err is why the attempt failed (EventRetry).
	Err error
}

// Result is a certified payment.
type Result struct {
	TxHash qc.Hash
	// QC has been verified against the committee, for TxHash and the
	// effects of the submitted transaction.
	QC *qc.QC
	// Certs are the verified certificates received, in arrival order (at
	// least a quorum).
	Certs []qc.Certificate
	// TimeToQC is the time from the call to the verified QC.
	TimeToQC time.Duration
	// Entry is the sidecar that delivered the QC ("" for FanOut).
	Entry string
	// Attempts is the number of attempts made (1 without retries).
	Attempts int
}

// expectation is what every certificate and QC for one request must match.
type expectation struct {
	txHash      qc.Hash
	effects     qc.Effects
	effectsHash qc.Hash
}

func expect(req *fastpayv1.SubmitFastPayRequest) (expectation, error) {
	txHash, effects, err := Expected(req)
	if err != nil {
		return expectation{}, err
	}
	return expectation{txHash: txHash, effects: effects, effectsHash: effects.Hash()}, nil
}

func (x expectation) checkCert(committee *qc.Committee, committeeOf func(uint64) *qc.Committee, cert *qc.Certificate) error {
	if cert.TxHash != x.txHash {
		return fmt.Errorf("certificate for tx %s, submitted %s", cert.TxHash, x.txHash)
	}
	if cert.EffectsHash != x.effectsHash {
		return fmt.Errorf("certificate attests effects %s, the transaction's are %s", cert.EffectsHash, x.effectsHash)
	}
	err := committee.VerifyCertificate(cert)
	if err != nil && committeeOf != nil {
		if next := committeeOf(committee.Domain().Epoch + 1); next != nil && next.VerifyCertificate(cert) == nil {
			return nil
		}
	}
	return err
}

// committeeFor returns the committee a QC of epoch e is verified against.
func committeeFor(committee *qc.Committee, committeeOf func(uint64) *qc.Committee, e uint64) *qc.Committee {
	if e == 0 || e == committee.Domain().Epoch || committeeOf == nil {
		return committee
	}
	if c := committeeOf(e); c != nil {
		return c
	}
	return committee
}

// verifyQC converts and verifies a wire QC: it must verify against the
// committee and be for the submitted transaction and its effects.
func (x expectation) verifyQC(committee *qc.Committee, committeeOf func(uint64) *qc.Committee, w *fastpayv1.QuorumCertificate) (*qc.QC, error) {
	q, err := w.ToQC()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnverifiedQC, err)
	}
	if q.TxHash != x.txHash {
		return nil, fmt.Errorf("%w: QC for tx %s, submitted %s", ErrUnverifiedQC, q.TxHash, x.txHash)
	}
	if q.EffectsHash != x.effectsHash {
		return nil, fmt.Errorf("%w: QC attests effects %s, the transaction's are %s", ErrUnverifiedQC, q.EffectsHash, x.effectsHash)
	}
	err = committeeFor(committee, committeeOf, q.Epoch).VerifyQC(q)
	if err != nil && q.Epoch == 0 && committeeOf != nil {
		// Not carrying its epoch: perhaps the next one's.
		if next := committeeOf(committee.Domain().Epoch + 1); next != nil && next.VerifyQC(q) == nil {
			err = nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnverifiedQC, err)
	}
	return q, nil
}

func (c *Client) signerName(id qc.ValidatorID) string {
	if m, ok := c.cfg.Committee.Member(id); ok {
		return m.Name
	}
	return id.String()
}

// Pay submits req to one sidecar with SubmitFastPayStream and returns when
// the sidecar delivers a QC that verifies against the committee. onEvent
// (may be nil) is called synchronously, in order, for every step: accepted,
// each verified certificate with the time since the call, the QC, lifecycle
// stages and retries; it must not block for long.
//
// Certificates that do not verify, or are for another transaction or other
// effects, are skipped (and logged). A QC that does not verify fails the
// attempt with ErrUnverifiedQC: it is never returned.
//
// A reject is returned as a *RejectError without retrying, except
// TEMPORARY_UNAVAILABLE. Transport failures, an attempt exceeding
// Config.Timeout, a stream ending without a QC, an unverifiable QC and
// TEMPORARY_UNAVAILABLE are retried up to Config.Retries times on the next
// endpoints, with the SAME request: the same signed transaction and the
// same client_request_id, which sidecars answer idempotently, so a retry can
// never create a second payment. The error after the last attempt wraps the
// last failure.
func (c *Client) Pay(ctx context.Context, req *fastpayv1.SubmitFastPayRequest, onEvent func(Event)) (*Result, error) {
	x, err := expect(req)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	emit := func(ev Event) {
		if onEvent != nil {
			ev.TxHash = x.txHash
			ev.Elapsed = time.Since(start)
			onEvent(ev)
		}
	}
	attempts := 1 + c.cfg.Retries
	n := len(c.cfg.Endpoints)
	var lastErr error
	for a := range attempts {
		ep := c.cfg.Endpoints[a%n]
		if a > 0 {
			// Back off before going back to an endpoint already tried, or
			// after a sidecar said it is temporarily unable to decide.
			var rej *RejectError
			if a >= n || errors.As(lastErr, &rej) {
				if err := wait(ctx, backoff(a/n)); err != nil {
					return nil, err
				}
			}
		}
		res, err := c.payOnce(ctx, ep, a+1, req, x, start, emit)
		if err == nil {
			return res, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("payment %s: %w (last attempt: %v)", x.txHash, ctx.Err(), err)
		}
		var rej *RejectError
		if errors.As(err, &rej) && !rej.Temporary() {
			return nil, rej
		}
		c.log.Warn("payment attempt failed", "tx", x.txHash, "endpoint", ep, "attempt", a+1, "err", err)
		lastErr = err
		if a+1 < attempts {
			emit(Event{Kind: EventRetry, Endpoint: ep, Attempt: a + 1, Err: err})
		}
	}
	return nil, fmt.Errorf("payment %s: %d attempts failed, the last: %w", x.txHash, attempts, lastErr)
}

// backoff is the delay before a retry in round r (r ≥ 0): 100 ms doubling,
// at most 2 s.
func backoff(r int) time.Duration {
	d := 100 * time.Millisecond
	for range min(r, 5) {
		d *= 2
	}
	return min(d, 2*time.Second)
}

func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// payOnce is one attempt on endpoint ep.
func (c *Client) payOnce(ctx context.Context, ep string, attempt int, req *fastpayv1.SubmitFastPayRequest, x expectation, start time.Time, emit func(Event)) (*Result, error) {
	sc, err := c.sidecar(ep)
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	stream, err := sc.SubmitFastPayStream(actx, req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ep, err)
	}
	committee := c.cfg.Committee
	seen := make(map[qc.ValidatorID]bool)
	var certs []qc.Certificate
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return nil, fmt.Errorf("%s: %w", ep, ErrNoQC)
		}
		if err != nil {
			if errors.Is(actx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
				return nil, fmt.Errorf("%s: no QC within %s: %w", ep, c.cfg.Timeout, err)
			}
			return nil, fmt.Errorf("%s: %w", ep, err)
		}
		switch e := ev.Event.(type) {
		case *fastpayv1.SubmitFastPayEvent_Reject:
			return nil, &RejectError{Code: e.Reject.GetCode(), Message: e.Reject.GetMessage(), Endpoint: ep}
		case *fastpayv1.SubmitFastPayEvent_Lifecycle:
			kind := EventStage
			if e.Lifecycle.GetStage() == fastpayv1.TxLifecycleUpdate_ACCEPTED {
				kind = EventAccepted
			}
			emit(Event{Kind: kind, Endpoint: ep, Attempt: attempt, Stage: e.Lifecycle.GetStage(), BlockHeight: e.Lifecycle.GetBlockHeight()})
		case *fastpayv1.SubmitFastPayEvent_Cert:
			cert, err := e.Cert.ToCertificate()
			if err == nil {
				err = x.checkCert(committee, c.cfg.CommitteeOf, &cert)
			}
			if err != nil {
				c.log.Warn("sidecar sent a certificate that does not verify; ignored", "endpoint", ep, "tx", x.txHash, "err", err)
				continue
			}
			if seen[cert.Signer] {
				continue
			}
			seen[cert.Signer] = true
			certs = append(certs, cert)
			emit(Event{Kind: EventCertificate, Endpoint: ep, Attempt: attempt, Cert: &cert,
				SignerName: c.signerName(cert.Signer), Certs: len(certs)})
		case *fastpayv1.SubmitFastPayEvent_Qc:
			q, err := x.verifyQC(committee, c.cfg.CommitteeOf, e.Qc)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", ep, err)
			}
			// The QC's certificates are verified too.
			for _, qcert := range q.Certs {
				if !seen[qcert.Signer] {
					seen[qcert.Signer] = true
					certs = append(certs, qcert)
				}
			}
			took := time.Since(start)
			emit(Event{Kind: EventQC, Endpoint: ep, Attempt: attempt, QC: q, Certs: len(certs)})
			return &Result{TxHash: x.txHash, QC: q, Certs: certs, TimeToQC: took, Entry: ep, Attempts: attempt}, nil
		}
	}
}
