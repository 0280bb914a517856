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

// frameObjects is what a frame hands on once accepted (msg.ValidatorData):
// the objects new to this node, verified and passed by the stateful checks,
// in frame order. A local publish carries all of its objects.
type frameObjects struct {
	header FrameHeader
	local  bool
	txs    []*TxMessage    // tx frames
	items  []*BulletinItem // bulletin frames; an equivocation pair is two certificates
	qcs    []*qc.QC        // QC frames
	// received is the number of objects the frame carried.
	received int
}

func (o *frameObjects) len() int { return len(o.txs) + len(o.items) + len(o.qcs) }

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
	// selfMember is whether this node is a committee member (a validator)
	// rather than a light client.
	selfMember bool
	// outsiderDups and memberDups budget the QC frames with nothing new
	// that a peer sends (dupbudget.go): outsiders' everywhere, members'
	// at light clients.
	outsiderDups, memberDups *duplicateBudget

	txFn       atomic.Pointer[TxStateFunc]
	txRepeatFn atomic.Pointer[TxRepeatHandler]
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

// requirePublisher: only committee members publish frames, so a frame
// naming anyone else is provably not an honest member's.
func (p *pipelines) requirePublisher(h FrameHeader) error {
	if !p.committee.Contains(h.Publisher) {
		return fmt.Errorf("frame publisher %s is not a committee member", h.Publisher.Hex())
	}
	return nil
}

// objectVerdict runs a caller's stateful func on one object of a frame:
// Soft errors and unknown verdicts become Ignore (like pubsub, an unknown
// result must not penalise a peer), and so does Accept with an error.
func objectVerdict(fn func() (Verdict, error)) (Verdict, error) {
	v, err := fn()
	switch {
	case v == Accept && err == nil:
		return Accept, nil
	case IsSoft(err), v != Accept && v != Ignore && v != Reject:
		v = Ignore
	case v == Accept:
		v = Ignore
	}
	if err == nil {
		err = errors.New("stateful validator said " + v.String())
	}
	return v, err
}

// frameOutcome decides a frame once its objects have been through the
// stateful checks: Accept when anything new was accepted, otherwise
// Ignore with the first object's reason.
func frameOutcome(out *frameObjects, firstIgnore error) (any, Verdict, error) {
	if out.len() > 0 {
		return out, Accept, nil
	}
	if firstIgnore == nil {
		firstIgnore = errDuplicate
	}
	return nil, Ignore, &stageError{stage: stageState, err: firstIgnore}
}

// keepNew runs the caller's stateful check (check; nil: none) on each
// object of a frame in order and returns the objects to deliver: those the
// check accepted that neither repeat an earlier object of the frame nor were
// accepted before (seen). A Reject from the check rejects the whole frame
// (rejectErr); firstIgnore is the first object's reason to be left out.
// name says which object an error is about.
func keepNew[T any, K comparable](objs []T, check func(T) (Verdict, error), name func(int, T) string, key func(T) K, seen func(T) bool) (kept []T, firstIgnore, rejectErr error) {
	inFrame := make(map[K]struct{}, len(objs))
	for i, o := range objs {
		if check != nil {
			v, err := objectVerdict(func() (Verdict, error) { return check(o) })
			if v == Reject {
				return nil, nil, fmt.Errorf("%s: %w", name(i, o), err)
			}
			if v == Ignore {
				if firstIgnore == nil {
					firstIgnore = fmt.Errorf("%s: %w", name(i, o), err)
				}
				continue
			}
		}
		k := key(o)
		if _, dup := inFrame[k]; dup || seen(o) {
			continue
		}
		inFrame[k] = struct{}{}
		kept = append(kept, o)
	}
	return kept, firstIgnore, nil
}

// validateTx: tx frames, the validators' private mempool.
//   - Only committee members may send on it and publish frames (Reject).
//   - The frame is at most MaxFrameSize bytes and MaxFrameObjects
//     requests, each carrying a transaction that hashes (Reject).
//   - Every transaction is for the committee's chain: the topic names the
//     chain, so an honest validator never publishes another chain's tx
//     (Reject).
//   - A frame whose transactions were all accepted before is ignored
//     without further work (Ignore). Repeats are reported to the
//     TxRepeatHandler, here or once the frame passes the next stage.
//   - The caller's stateful check runs on every transaction of the frame,
//     repeats included: the frame is forwarded whole, so everything in it
//     must verify. A Reject for any rejects the frame; transactions it
//     ignores, and repeats, are not delivered.
func (p *pipelines) validateTx(ctx context.Context, from peer.ID, msg *pubsub.Message) (any, Verdict, error) {
	if err := p.requireMember(from); err != nil {
		return fail(Reject, stageMembership, err)
	}
	f, err := decodeTxFrame(msg.GetData())
	if err != nil {
		return decodeFailure(err)
	}
	if err := p.requirePublisher(f.header); err != nil {
		return fail(Reject, stageMembership, err)
	}
	chain := p.committee.Domain().ChainID
	var repeats []qc.Hash
	for i, tx := range f.txs {
		if got := tx.Request.GetTx().GetChainId().GetValue(); got != chain {
			return fail(Reject, stageDomain, fmt.Errorf("tx %d of the frame is for chain %d on the topic of chain %d", i, got, chain))
		}
		if p.accepted.txSeen(tx.TxHash) {
			repeats = append(repeats, tx.TxHash)
		}
	}
	if len(repeats) == len(f.txs) {
		p.reportRepeats(f.header.Publisher, repeats)
		return fail(Ignore, stageDuplicate, errDuplicate)
	}
	var check func(*TxMessage) (Verdict, error)
	if fn := p.txFn.Load(); fn != nil {
		check = func(tx *TxMessage) (Verdict, error) { return (*fn)(ctx, from, tx) }
	}
	txs, firstIgnore, err := keepNew(f.txs, check,
		func(i int, tx *TxMessage) string { return fmt.Sprintf("tx %d of the frame (%s)", i, tx.TxHash) },
		func(tx *TxMessage) qc.Hash { return tx.TxHash },
		func(tx *TxMessage) bool { return p.accepted.txSeen(tx.TxHash) })
	if err != nil {
		return fail(Reject, stageState, err)
	}
	p.reportRepeats(f.header.Publisher, repeats)
	return frameOutcome(&frameObjects{header: f.header, received: len(f.txs), txs: txs}, firstIgnore)
}

// reportRepeats tells the caller's TxRepeatHandler which transactions of a
// frame were accepted before.
func (p *pipelines) reportRepeats(publisher qc.ValidatorID, txs []qc.Hash) {
	if len(txs) == 0 {
		return
	}
	if fn := p.txRepeatFn.Load(); fn != nil {
		(*fn)(publisher, txs)
	}
}

// validateBulletin: bulletin frames among validators.
//   - Only committee members may send on it and publish frames (Reject).
//   - The frame is well formed and within the size limits (Reject).
//   - Every certificate is signed by the frame's publisher; another
//     signer's certificates travel only inside QCs and equivocation pairs,
//     which must be two certificates of one signer conflicting for one
//     contention key (Reject).
//   - A frame whose objects were all accepted before is ignored before any
//     signature is verified (Ignore).
//   - Otherwise every signature in the frame is verified, together in one
//     batch, with membership, effects and QC shape (Reject on any failure:
//     one bad signature rejects the frame).
//   - Then the caller's stateful check per object (Reject rejects the
//     frame; ignored objects and repeats are not delivered).
func (p *pipelines) validateBulletin(ctx context.Context, from peer.ID, msg *pubsub.Message) (any, Verdict, error) {
	if err := p.requireMember(from); err != nil {
		return fail(Reject, stageMembership, err)
	}
	f, err := decodeBulletinFrame(msg.GetData())
	if err != nil {
		return decodeFailure(err)
	}
	if err := p.requirePublisher(f.header); err != nil {
		return fail(Reject, stageMembership, err)
	}
	fresh := false
	for i, c := range f.certs {
		if c.Signer != f.header.Publisher {
			return fail(Reject, stageMembership, fmt.Errorf("certificate %d of the frame is signed by %s, not by the publisher %s", i, c.Signer.Hex(), f.header.Publisher.Hex()))
		}
		fresh = fresh || !p.accepted.certSeen(c)
	}
	for i, e := range f.pairs {
		if err := e.CheckShape(); err != nil {
			return fail(Reject, stageVerify, fmt.Errorf("equivocation pair %d of the frame: %w", i, err))
		}
		fresh = fresh || !p.accepted.certSeen(&e.First) || !p.accepted.certSeen(&e.Second)
	}
	for _, q := range f.qcs {
		fresh = fresh || !p.accepted.qcSeen(KindBulletin, q.TxHash)
	}
	if !fresh {
		return fail(Ignore, stageDuplicate, errDuplicate)
	}
	return p.verifyBulletinFrame(ctx, from, f)
}

// verifyBulletinFrame runs the stages of a bulletin frame that follow the
// duplicate check (also for certificate stream frames): every signature in
// one batch, then the caller's stateful check per object.
func (p *pipelines) verifyBulletinFrame(ctx context.Context, from peer.ID, f *bulletinFrame) (any, Verdict, error) {
	batch := p.verifier.NewBatch()
	for i, c := range f.certs {
		if err := batch.AddCertificate(c); err != nil {
			return verifyFailure(fmt.Errorf("certificate %d of the frame: %w", i, err))
		}
	}
	for i, e := range f.pairs {
		for _, c := range []*qc.Certificate{&e.First, &e.Second} {
			if err := batch.AddCertificate(c); err != nil {
				return verifyFailure(fmt.Errorf("equivocation pair %d of the frame: %w", i, err))
			}
		}
	}
	for i, q := range f.qcs {
		if err := batch.AddQC(q); err != nil {
			return verifyFailure(fmt.Errorf("qc %d of the frame: %w", i, err))
		}
	}
	if err := batch.Verify(); err != nil {
		return verifyFailure(err)
	}

	items := make([]*BulletinItem, 0, len(f.certs)+len(f.qcs)+2*len(f.pairs))
	for _, c := range f.certs {
		items = append(items, &BulletinItem{Cert: c})
	}
	for _, e := range f.pairs {
		items = append(items, &BulletinItem{Cert: &e.First}, &BulletinItem{Cert: &e.Second})
	}
	for _, q := range f.qcs {
		items = append(items, &BulletinItem{QC: q})
	}
	var check func(*BulletinItem) (Verdict, error)
	if fn := p.bulletinFn.Load(); fn != nil {
		check = func(it *BulletinItem) (Verdict, error) { return (*fn)(ctx, from, it) }
	}
	kept, firstIgnore, err := keepNew(items, check,
		func(i int, _ *BulletinItem) string { return fmt.Sprintf("object %d of the frame", i) },
		bulletinKeyOf,
		func(it *BulletinItem) bool {
			if it.Cert != nil {
				return p.accepted.certSeen(it.Cert)
			}
			return p.accepted.qcSeen(KindBulletin, it.QC.TxHash)
		})
	if err != nil {
		return fail(Reject, stageState, err)
	}
	return frameOutcome(&frameObjects{header: f.header, received: len(items), items: kept}, firstIgnore)
}

// bulletinKey identifies a bulletin object within a frame: a certificate by
// (signer, tx, effects), a QC by its transaction.
type bulletinKey struct {
	cert certObject
	qc   qc.Hash
}

func bulletinKeyOf(it *BulletinItem) bulletinKey {
	if it.Cert != nil {
		return bulletinKey{cert: certObjectOf(it.Cert)}
	}
	return bulletinKey{qc: it.QC.TxHash}
}

// validateQC: QC frames on the shards, open to light clients.
//   - The frame is well formed and within the size limits, and its
//     publisher is a committee member; the forwarding peer may be anyone
//     (Reject).
//   - Every QC is on its recipient's shard: a light client trusts that its
//     shard carries every QC for its addresses (Reject).
//   - A frame whose QCs were all accepted before is ignored unverified
//     (Ignore).
//   - Every QC passes the committee's checks, all signatures in one batch
//     (Reject).
//   - Then the caller's stateful check per QC.
func (p *pipelines) validateQC(ctx context.Context, from peer.ID, msg *pubsub.Message) (any, Verdict, error) {
	f, err := decodeQCFrame(msg.GetData())
	if err != nil {
		return decodeFailure(err)
	}
	if err := p.requirePublisher(f.header); err != nil {
		return fail(Reject, stageMembership, err)
	}
	t, _ := p.topics.lookup(msg.GetTopic())
	fresh := false
	for i, q := range f.qcs {
		if want := QCShard(q.Effects().Recipient, p.topics.shards); want != t.Shard {
			return fail(Reject, stageDomain, fmt.Errorf("qc %d of the frame, for recipient %s, belongs to shard %d, got it on shard %d", i, q.Effects().Recipient, want, t.Shard))
		}
		fresh = fresh || !p.accepted.qcSeen(KindQC, q.TxHash)
	}
	if !fresh {
		if b := p.budgetFor(from); b != nil && !b.allow(from, time.Now()) {
			return fail(Reject, stageFlood, errors.New("frames with nothing new from this peer, past its budget"))
		}
		return fail(Ignore, stageDuplicate, errDuplicate)
	}
	batch := p.verifier.NewBatch()
	for i, q := range f.qcs {
		if err := batch.AddQC(q); err != nil {
			return verifyFailure(fmt.Errorf("qc %d of the frame: %w", i, err))
		}
	}
	if err := batch.Verify(); err != nil {
		return verifyFailure(err)
	}
	var check func(*qc.QC) (Verdict, error)
	if fn := p.qcFn.Load(); fn != nil {
		check = func(q *qc.QC) (Verdict, error) { return (*fn)(ctx, from, q) }
	}
	qcs, firstIgnore, err := keepNew(f.qcs, check,
		func(i int, q *qc.QC) string { return fmt.Sprintf("qc %d of the frame (%s)", i, q.TxHash) },
		func(q *qc.QC) qc.Hash { return q.TxHash },
		func(q *qc.QC) bool { return p.accepted.qcSeen(KindQC, q.TxHash) })
	if err != nil {
		return fail(Reject, stageState, err)
	}
	return frameOutcome(&frameObjects{header: f.header, received: len(f.qcs), qcs: qcs}, firstIgnore)
}

// isLocalFrame reports whether data is the object list a local publish
// passes through pubsub.WithValidatorData.
func isLocalFrame(data any) bool {
	v, ok := data.(*frameObjects)
	return ok && v != nil && v.local
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
		if from == m.self && isLocalFrame(msg.ValidatorData) {
			m.pipes.accepted.record(k, msg.ValidatorData.(*frameObjects))
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
		v, stage = outcome(ctx, v, err)
		if v == Accept {
			objs := decoded.(*frameObjects)
			msg.ValidatorData = objs
			m.pipes.accepted.record(k, objs)
			m.metrics.frameObjects(k, objs.received, objs.len())
		}
		return v.result()
	}
}

// outcome names the pipeline stage that reached v (stageOK for Accept) and
// turns a verdict reached after ctx's deadline into Ignore: out of time is
// our slowness, not the sender's fault.
func outcome(ctx context.Context, v Verdict, err error) (Verdict, string) {
	if v == Accept {
		return Accept, stageOK
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return Ignore, stageTimeout
	}
	var se *stageError
	if errors.As(err, &se) {
		return v, se.stage
	}
	return v, stageState
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
