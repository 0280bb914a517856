package p2p

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/allegro-mesh/allegro/qc"
)

// Verdict is a validator's decision on one message.
type Verdict int

// Verdicts. Reject penalises the sender through peer scoring, so use it only
// for messages no honest peer would forward (malformed, bad signature,
// below quorum, wrong sender). Ignore drops without penalty: duplicates,
// stale or not-yet-valid messages, rate limits, our own overload.
const (
	Accept Verdict = iota
	Ignore
	Reject
)

// String returns "accept", "ignore" or "reject" (the metric label).
func (v Verdict) String() string {
	switch v {
	case Accept:
		return "accept"
	case Ignore:
		return "ignore"
	case Reject:
		return "reject"
	}
	return fmt.Sprintf("verdict(%d)", int(v))
}

func (v Verdict) result() pubsub.ValidationResult {
	switch v {
	case Accept:
		return pubsub.ValidationAccept
	case Reject:
		return pubsub.ValidationReject
	}
	return pubsub.ValidationIgnore
}

// ValidateFunc is the shape of every topic's validation pipeline: it
// returns the decoded object (stored in msg.ValidatorData on Accept), the
// verdict and, unless accepted, the reason. One wrapper runs every
// pipeline, adding panic recovery, the timeout, metrics and rejection logs;
// callers plug their stateful checks in with the Register*Validator methods
// of Mesh and receive typed, already verified objects.
type ValidateFunc func(ctx context.Context, from peer.ID, msg *pubsub.Message) (decoded any, v Verdict, err error)

// TxStateFunc is the caller's stateful check of a tx-topic message. The
// sender is a committee member, the request decoded and its tx_hash
// computed; the chain id matches the committee.
type TxStateFunc func(ctx context.Context, from peer.ID, tx *TxMessage) (Verdict, error)

// BulletinStateFunc is the caller's stateful check of a bulletin item. The
// sender is a committee member; a certificate's signer is a member and its
// signature and effects verify; a QC passed Committee.VerifyQC.
type BulletinStateFunc func(ctx context.Context, from peer.ID, item *BulletinItem) (Verdict, error)

// QCStateFunc is the caller's stateful check of a QC-topic message. The QC
// passed Committee.VerifyQC and belongs to the topic's shard; the sender
// may be anyone.
type QCStateFunc func(ctx context.Context, from peer.ID, q *qc.QC) (Verdict, error)

// Stateful funcs must honour ctx (it carries ValidationTimeout) and be safe
// for concurrent use: up to ValidationConcurrency messages are validated at
// once. They are not called for this node's own publishes.

// Soft marks err as soft: whatever verdict accompanies it, the message is
// ignored rather than rejected (go-header's convention for "not invalid,
// just not useful now").
func Soft(err error) error {
	if err == nil {
		return nil
	}
	return &softError{err}
}

// IsSoft reports whether err was marked with Soft.
func IsSoft(err error) bool {
	var s *softError
	return errors.As(err, &s)
}

type softError struct{ err error }

func (e *softError) Error() string { return e.err.Error() }
func (e *softError) Unwrap() error { return e.err }

// errDuplicate: an equal object was accepted on the topic before.
var errDuplicate = errors.New("object already accepted")

// stageError records which pipeline stage produced a verdict, for the
// metric label and the log.
type stageError struct {
	stage string
	err   error
}

func (e *stageError) Error() string { return e.stage + ": " + e.err.Error() }
func (e *stageError) Unwrap() error { return e.err }

func fail(v Verdict, stage string, err error) (any, Verdict, error) {
	return nil, v, &stageError{stage: stage, err: err}
}

// decodeFailure classifies a stage-1 error.
func decodeFailure(err error) (any, Verdict, error) {
	if errors.Is(err, ErrTooLarge) {
		return fail(Reject, stageSize, err)
	}
	return fail(Reject, stageDecode, err)
}

// verifyFailure classifies an error of the qc package's checks.
func verifyFailure(err error) (any, Verdict, error) {
	if errors.Is(err, qc.ErrUnknownSigner) {
		return fail(Reject, stageMembership, err)
	}
	return fail(Reject, stageVerify, err)
}

// pipelines holds the per-topic validation stages of one Mesh.
type pipelines struct {
	committee *qc.Committee
	// verifier remembers verified signatures: a QC's certificates were
	// usually verified one by one on the bulletin already.
	verifier *qc.Verifier
	members  committeeIndex
	self     peer.ID
	topics   *topicSet
	accepted *acceptedObjects

	txFn       atomic.Pointer[TxStateFunc]
	bulletinFn atomic.Pointer[BulletinStateFunc]
	qcFn       atomic.Pointer[QCStateFunc]
}

// pipeline returns the ValidateFunc of a topic kind.
func (p *pipelines) pipeline(k TopicKind) ValidateFunc {
	switch k {
	case KindTx:
		return p.validateTx
	case KindBulletin:
		return p.validateBulletin
	default:
		return p.validateQC
	}
}

// requireMember enforces the validators-only topics: the peer filter keeps
// outsiders out of the mesh, but a peer can still push a message to us
// directly (a raw publish), so the validator checks the forwarding peer.
func (p *pipelines) requireMember(from peer.ID) error {
	if from == p.self {
		return nil
	}
	if _, ok := p.members.member(from); !ok {
		return fmt.Errorf("peer %s is not a committee member", from)
	}
	return nil
}

// validateTx: the tx topic is the validators' private mempool.
//   - Only committee members may send on it (Reject).
//   - The payload is a SubmitFastPayRequest of at most 256 KiB whose tx
//     hashes (Reject).
//   - The tx is for the committee's chain: the topic names the chain, so an
//     honest validator never forwards another chain's tx (Reject).
//   - Then the caller's stateful check.
func (p *pipelines) validateTx(ctx context.Context, from peer.ID, msg *pubsub.Message) (any, Verdict, error) {
	if err := p.requireMember(from); err != nil {
		return fail(Reject, stageMembership, err)
	}
	tx, err := decodeTxMessage(msg.GetData())
	if err != nil {
		return decodeFailure(err)
	}
	if got, want := tx.Request.GetTx().GetChainId().GetValue(), p.committee.Domain().ChainID; got != want {
		return fail(Reject, stageDomain, fmt.Errorf("tx for chain %d on the topic of chain %d", got, want))
	}
	if fn := p.txFn.Load(); fn != nil {
		return callState(tx, func() (Verdict, error) { return (*fn)(ctx, from, tx) })
	}
	return tx, Accept, nil
}

// validateBulletin: certificates and QCs among validators.
//   - Only committee members may send on it (Reject).
//   - The payload is a BulletinMessage of at most 64 KiB with one item
//     (Reject).
//   - An equal object was accepted before (Ignore, unverified; dedup.go).
//   - A certificate's signer is a committee member and its effects and
//     signature verify in the committee's domain (Reject).
//   - A QC passes Committee.VerifyQC: quorum, distinct member signers,
//     signatures, qc_hash (Reject).
//   - Then the caller's stateful check.
func (p *pipelines) validateBulletin(ctx context.Context, from peer.ID, msg *pubsub.Message) (any, Verdict, error) {
	if err := p.requireMember(from); err != nil {
		return fail(Reject, stageMembership, err)
	}
	it, err := decodeBulletinItem(msg.GetData())
	if err != nil {
		return decodeFailure(err)
	}
	if p.accepted.seen(KindBulletin, it) {
		return fail(Ignore, stageDuplicate, errDuplicate)
	}
	if it.Cert != nil {
		err = p.verifier.VerifyCertificate(it.Cert)
	} else {
		err = p.verifier.VerifyQC(it.QC)
	}
	if err != nil {
		return verifyFailure(err)
	}
	if fn := p.bulletinFn.Load(); fn != nil {
		return callState(it, func() (Verdict, error) { return (*fn)(ctx, from, it) })
	}
	return it, Accept, nil
}

// validateQC: QC shards, open to light clients.
//   - The payload is a QuorumCertificate of at most 64 KiB (Reject).
//   - It is on its recipient's shard: a light client trusts that its shard
//     carries every QC for its addresses (Reject).
//   - A QC of the same transaction was accepted before (Ignore, unverified).
//   - It passes Committee.VerifyQC (Reject).
//   - Then the caller's stateful check.
func (p *pipelines) validateQC(ctx context.Context, from peer.ID, msg *pubsub.Message) (any, Verdict, error) {
	q, err := decodeQCMessage(msg.GetData())
	if err != nil {
		return decodeFailure(err)
	}
	t, _ := p.topics.lookup(msg.GetTopic())
	if want := QCShard(q.Effects().Recipient, p.topics.shards); want != t.Shard {
		return fail(Reject, stageDomain, fmt.Errorf("qc for recipient %s belongs to shard %d, got it on shard %d", q.Effects().Recipient, want, t.Shard))
	}
	if p.accepted.seen(KindQC, q) {
		return fail(Ignore, stageDuplicate, errDuplicate)
	}
	if err := p.verifier.VerifyQC(q); err != nil {
		return verifyFailure(err)
	}
	if fn := p.qcFn.Load(); fn != nil {
		return callState(q, func() (Verdict, error) { return (*fn)(ctx, from, q) })
	}
	return q, Accept, nil
}

// callState runs a caller's stateful func: Soft errors and unknown verdicts
// become Ignore (like pubsub, an unknown result must not penalise a peer).
func callState(decoded any, fn func() (Verdict, error)) (any, Verdict, error) {
	v, err := fn()
	switch {
	case v == Accept && err == nil:
		return decoded, Accept, nil
	case IsSoft(err), v != Accept && v != Ignore && v != Reject:
		v = Ignore
	case v == Accept:
		// An error with Accept is contradictory; do not relay a message the
		// caller had doubts about, and do not penalise the sender either.
		v = Ignore
	}
	if err == nil {
		err = errors.New("stateful validator said " + v.String())
	}
	return nil, v, &stageError{stage: stageState, err: err}
}

// isLocalObject reports whether data is the object type a local publish of
// kind k passes through pubsub.WithValidatorData.
func isLocalObject(k TopicKind, data any) bool {
	switch k {
	case KindTx:
		v, ok := data.(*TxMessage)
		return ok && v != nil
	case KindBulletin:
		v, ok := data.(*BulletinItem)
		return ok && v != nil && (v.Cert != nil) != (v.QC != nil)
	case KindQC:
		v, ok := data.(*qc.QC)
		return ok && v != nil
	}
	return false
}

// wrap turns a pipeline into a pubsub validator: it recovers panics (Reject,
// counted, logged with the stack), applies ValidationTimeout, records the
// verdict and latency, logs rejections (rate-limited) and stores the decoded
// object in msg.ValidatorData on Accept.
//
// Local publishes (ReceivedFrom is this node) that carry their object in
// ValidatorData are accepted without decoding or verifying again: the
// publisher built or already verified the object.
func (m *Mesh) wrap(k TopicKind, fn ValidateFunc) pubsub.ValidatorEx {
	return func(ctx context.Context, from peer.ID, msg *pubsub.Message) (res pubsub.ValidationResult) {
		start := time.Now()
		if from == m.self && isLocalObject(k, msg.ValidatorData) {
			m.pipes.accepted.accept(k, msg.ValidatorData)
			m.metrics.validation(k, Accept, stageLocal, time.Since(start).Seconds())
			return pubsub.ValidationAccept
		}
		ctx, cancel := context.WithTimeout(ctx, m.cfg.ValidationTimeout)
		defer cancel()

		v, stage := Reject, stagePanic
		var err error
		defer func() {
			if r := recover(); r != nil {
				v, stage = Reject, stagePanic
				err = fmt.Errorf("validator panic: %v", r)
				m.metrics.validatorPanics.WithLabelValues(k.String()).Inc()
				if ok, suppressed := m.panicLogs.allow(time.Now()); ok {
					m.logger.Error("p2p: validator panicked", "topic", k.String(), "peer", from, "panic", fmt.Sprint(r), "suppressed", suppressed, "stack", string(debug.Stack()))
				}
			}
			m.metrics.validation(k, v, stage, time.Since(start).Seconds())
			if v == Reject && stage != stagePanic {
				m.logReject(k, from, msg, stage, err)
			}
			res = v.result()
		}()

		var decoded any
		decoded, v, err = fn(ctx, from, msg)
		stage = stageOK
		if v != Accept {
			stage = stageState
			var se *stageError
			if errors.As(err, &se) {
				stage = se.stage
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				// Out of time: our slowness, not the sender's fault.
				v, stage = Ignore, stageTimeout
			}
		}
		if v == Accept {
			msg.ValidatorData = decoded
			m.pipes.accepted.accept(k, decoded)
		}
		return v.result()
	}
}

// logReject logs a rejection at debug level, at most RejectLogsPerSecond
// per second; the next logged line reports how many were suppressed.
func (m *Mesh) logReject(k TopicKind, from peer.ID, msg *pubsub.Message, stage string, err error) {
	if !m.logger.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	ok, suppressed := m.rejectLogs.allow(time.Now())
	if !ok {
		return
	}
	attrs := []any{"topic", msg.GetTopic(), "peer", from, "stage", stage, "id", hex.EncodeToString([]byte(msg.ID)), "err", err}
	if mem, isMember := m.host.committee.member(from); isMember {
		attrs = append(attrs, "member", mem.Name)
	}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	m.logger.Debug("p2p: message rejected", attrs...)
}

// logLimiter allows at most perSecond events per one-second window and
// counts the rest, so a flood of bad messages cannot flood the log.
type logLimiter struct {
	perSecond  int
	mu         sync.Mutex
	window     time.Time
	n          int
	suppressed int
}

// allow reports whether to log now and, if so, how many events were
// suppressed since the last allowed one.
func (l *logLimiter) allow(now time.Time) (bool, int) {
	if l.perSecond <= 0 {
		return false, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.window) >= time.Second {
		l.window, l.n = now, 0
	}
	if l.n >= l.perSecond {
		l.suppressed++
		return false, 0
	}
	l.n++
	s := l.suppressed
	l.suppressed = 0
	return true, s
}
