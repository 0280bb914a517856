// Package bulletin is the bulletin board of the validator mesh: the store of
// certificates and QCs that sidecars share, with queries for clients,
// in-process subscriptions for API streams, equivocation detection, and QC
// formation.
package bulletin

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// QCPublisher sends a QC to the mesh.
type QCPublisher interface {
	PublishQC(ctx context.Context, q *qc.QC) error
}

// Board stores certificates and QCs. It is safe for concurrent use.
type Board struct {
	cfg       Config
	committee *qc.Committee
	roster    *roster
	self      qc.ValidatorID
	log       *slog.Logger
	metrics   *metrics

	publisher QCPublisher
	ctx       context.Context
	cancel    context.CancelFunc
	timers    sync.WaitGroup
	// timersMu orders timers.Add against Stop's Wait: a WaitGroup must not
	// gain work while it is being waited on.
	timersMu sync.Mutex
	stopped  bool

	mu        sync.Mutex
	txs       *lru.Cache[qc.Hash, *txEntry]
	byAddress map[qc.Address]map[qc.Hash]struct{}
	// arrivals is an append-only log, trimmed from the front; seq numbers
	// its last entry, so arrivals[i] has seq-len(arrivals)+1+i.
	arrivals []arrival
	seq      uint64
	// created lists entries in the order they were made, for Payments
	// (newest first); trimmed from the front like arrivals, createdSeq
	// numbering its last slot.
	created    []createdTx
	createdSeq uint64
	firstSig   *firstSigs
	evidence   []qc.Equivocation
	// lateness follows how long after this node formed a QC itself the
	// first QC of the same transaction arrives from the mesh; it sets the
	// publication stagger (publishStep).
	lateness lateness

	subMu    sync.RWMutex
	subs     map[uint64]*Subscription
	nextSub  uint64
	eventSeq uint64 // under subMu (write lock in emit)
}

// arrival is one certificate of the log: its sequence number follows from
// its position, its creation time from the certificate itself.
type arrival struct {
	txHash qc.Hash
	index  uint32 // into txEntry.certs
}

// createdTx is one slot of the creation log. firstSeen tells a slot from
// a later entry for the same hash (made again after an eviction).
type createdTx struct {
	txHash    qc.Hash
	firstSeen int64
}

// New returns an empty board for committee. self is this node's validator id
// (zero for a node outside the committee, which never publishes QCs); pub is
// where the QCs it forms are published (nil: nowhere).
func New(cfg Config, committee *qc.Committee, self qc.ValidatorID, pub QCPublisher, reg prometheus.Registerer, logger *slog.Logger) (*Board, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	b := &Board{
		cfg: cfg, committee: committee, roster: newRoster(committee), self: self, publisher: pub, log: logger,
		byAddress: make(map[qc.Address]map[qc.Hash]struct{}),
		subs:      make(map[uint64]*Subscription),
	}
	var err error
	if b.metrics, err = newMetrics(reg); err != nil {
		return nil, err
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	if b.txs, err = lru.NewWithEvict(cfg.MaxTxs, b.onEvict); err != nil {
		return nil, err
	}
	b.firstSig = newFirstSigs(cfg.EvidenceWindow)
	return b, nil
}

// Start is a no-op kept for the component lifecycle.
func (b *Board) Start(context.Context) error { return nil }

// Stop cancels pending QC publications and waits for them. Certificates
// may still arrive while it runs (the mesh stops after the board); they
// schedule nothing.
func (b *Board) Stop(context.Context) error {
	b.timersMu.Lock()
	b.stopped = true
	b.timersMu.Unlock()
	b.cancel()
	b.timers.Wait()
	return nil
}

// onEvict unindexes an evicted transaction; called with b.mu held.
func (b *Board) onEvict(h qc.Hash, e *txEntry) {
	for _, a := range []qc.Address{e.sender(), e.recipient()} {
		if set := b.byAddress[a]; set != nil {
			delete(set, h)
			if len(set) == 0 {
				delete(b.byAddress, a)
			}
		}
	}
}

// entry returns h's entry, made if new. effects (with its hash), when
// known, becomes the entry's first variant and indexes its addresses.
func (b *Board) entry(h qc.Hash, effectsHash qc.Hash, effects *qc.Effects) *txEntry {
	e, ok := b.txs.Get(h)
	if !ok {
		e = &txEntry{txHash: h, firstSeen: nanos(time.Now())}
		b.txs.Add(h, e)
		b.appendCreated(h, e.firstSeen)
	}
	if effects != nil && !e.hasEffects {
		e.variant(effectsHash, effects)
		for _, a := range []qc.Address{e.effects.Sender, e.effects.Recipient} {
			set := b.byAddress[a]
			if set == nil {
				set = make(map[qc.Hash]struct{})
				b.byAddress[a] = set
			}
			set[h] = struct{}{}
		}
	}
	return e
}

// AddResult says what AddCertificate did.
type AddResult struct {
	// Added is false for a certificate already held.
	Added bool
	// Evidence is set when the certificate proves its signer equivocated.
	Evidence *qc.Equivocation
	// Formed is set when this certificate completed a quorum and the board
	// formed the transaction's QC.
	Formed *qc.QC
}

// AddCertificate stores a certificate the caller verified against the
// committee. It detects equivocation and forms the QC when the certificate
// completes a quorum for its (tx hash, effects hash); a formed QC is emitted
// at once and published to the mesh after this node's stagger delay.
func (b *Board) AddCertificate(cert qc.Certificate) AddResult {
	var res AddResult
	var events []Event
	b.mu.Lock()
	e := b.entry(cert.TxHash, cert.EffectsHash, &cert.Effects)
	if e.hasCert(b.roster, cert.Signer, cert.EffectsHash) {
		b.mu.Unlock()
		b.metrics.certs.WithLabelValues("duplicate").Inc()
		return res
	}
	res.Added = true
	e.certs = append(e.certs, e.record(b.roster, &cert))
	b.appendArrival(cert.TxHash, len(e.certs)-1)
	now := uint64(time.Now().UnixMilli())
	evCert := cert // the event's own copy: the board keeps only the record
	events = append(events, Event{Kind: EventCertificate, TxHash: cert.TxHash, UnixMillis: now, Cert: &evCert, Sender: e.sender(), Recipient: e.recipient()})

	if first, seen := b.firstSig.peekOrAdd(cert); seen && (first.TxHash != cert.TxHash || first.EffectsHash != cert.EffectsHash) {
		ev := qc.Equivocation{First: first, Second: cert}
		if len(b.evidence) >= b.cfg.MaxEvidence {
			b.evidence = b.evidence[1:]
		}
		b.evidence = append(b.evidence, ev)
		res.Evidence = &ev
		events = append(events, Event{Kind: EventEquivocation, TxHash: cert.TxHash, UnixMillis: now, Evidence: &ev, Sender: e.sender(), Recipient: e.recipient()})
		b.log.Warn("equivocation: a validator signed two transactions for one nonce",
			"signer", cert.Signer.Hex(), "key", cert.Effects.ContentionKey().String(), "first_tx", first.TxHash, "second_tx", cert.TxHash)
	}

	var toQC time.Duration
	if e.qc == nil {
		if e.assemblers == nil {
			e.assemblers = make(map[qc.Hash]*qc.Assembler, 1)
		}
		a := e.assemblers[cert.EffectsHash]
		if a == nil {
			a = qc.NewAssembler(b.committee, cert.TxHash, cert.EffectsHash)
			e.assemblers[cert.EffectsHash] = a
		}
		if _, err := a.AddVerified(cert); err != nil {
			b.log.Debug("certificate not counted towards a QC", "tx", cert.TxHash, "signer", cert.Signer.Hex(), "err", err)
		} else if a.Ready() {
			if q, err := a.Build(); err == nil {
				res.Formed = q
				toQC = b.setQCLocked(e, q, false)
				events = append(events, b.qcEvents(e, q, now)...)
			}
		}
	}
	b.mu.Unlock()

	b.metrics.certs.WithLabelValues("added").Inc()
	if res.Evidence != nil {
		b.metrics.evidence.Inc()
	}
	if res.Formed != nil {
		b.metrics.qcs.WithLabelValues("formed").Inc()
		b.metrics.timeToQC.WithLabelValues("formed").Observe(toQC.Seconds())
		b.schedulePublish(res.Formed)
	}
	b.emit(events)
	return res
}

// AddQC stores a QC the caller verified (from the mesh, or a parent QC).
// It returns false when the transaction already had a QC.
func (b *Board) AddQC(q *qc.QC) bool {
	b.mu.Lock()
	effects := q.Effects()
	e := b.entry(q.TxHash, q.EffectsHash, &effects)
	if e.qc != nil {
		if !e.qcFromMesh {
			// Formed here first: how much later the mesh's copy came.
			b.lateness.observe(time.Duration(max(nanos(time.Now())-e.qcAt, 0)))
			e.qcFromMesh = true
		}
		b.mu.Unlock()
		b.metrics.qcs.WithLabelValues("duplicate").Inc()
		return false
	}
	toQC := b.setQCLocked(e, q, true)
	events := b.qcEvents(e, q, uint64(time.Now().UnixMilli()))
	b.mu.Unlock()
	b.metrics.qcs.WithLabelValues("received").Inc()
	b.metrics.timeToQC.WithLabelValues("received").Observe(toQC.Seconds())
	b.emit(events)
	return true
}

// setQCLocked stores q and returns how long after the transaction was first
// seen here it came.
func (b *Board) setQCLocked(e *txEntry, q *qc.QC, fromMesh bool) time.Duration {
	e.qc, e.qcFromMesh, e.qcAt = e.compactQC(b.roster, q), fromMesh, nanos(time.Now())
	e.assemblers = nil
	if e.stage < fastpayv1.TxLifecycleUpdate_CERTIFIED {
		e.stage = fastpayv1.TxLifecycleUpdate_CERTIFIED
		e.setStageAt(e.stage, e.qcAt)
	}
	return time.Duration(max(e.qcAt-e.firstSeen, 0))
}

func (b *Board) qcEvents(e *txEntry, q *qc.QC, now uint64) []Event {
	return []Event{
		{Kind: EventQC, TxHash: q.TxHash, UnixMillis: now, QC: q, Sender: e.sender(), Recipient: e.recipient()},
		{Kind: EventLifecycle, TxHash: q.TxHash, UnixMillis: now, Stage: fastpayv1.TxLifecycleUpdate_CERTIFIED, Sender: e.sender(), Recipient: e.recipient()},
	}
}

// publishStep is the delay between two ranks' turns to publish a QC: the
// configured least step, or more when the mesh's QCs have lately come
// later than that, so that a node's turn comes only after the QC of the
// nodes ranked before it would normally have arrived.
func (b *Board) publishStep() time.Duration {
	if b.cfg.PublishStep == 0 {
		return 0
	}
	b.mu.Lock()
	step := b.lateness.bound()
	b.mu.Unlock()
	step = min(max(step, b.cfg.PublishStep), b.cfg.PublishStepMax)
	b.metrics.publishStep.Set(step.Seconds())
	return step
}

// publishRank orders committee members for one transaction, rotating by the
// tx hash so the duty of publishing first is spread over validators.
func (b *Board) publishRank(txHash qc.Hash) int {
	members := b.committee.Members()
	n := len(members)
	for i, m := range members {
		if m.ID == b.self {
			return (i + n - int(txHash[0])%n) % n
		}
	}
	return -1
}

func (b *Board) schedulePublish(q *qc.QC) {
	if b.publisher == nil {
		return
	}
	rank := b.publishRank(q.TxHash)
	if rank < 0 {
		return
	}
	delay := time.Duration(rank) * b.publishStep()
	publish := func() {
		b.mu.Lock()
		e, ok := b.txs.Peek(q.TxHash)
		skip := ok && e.qcFromMesh
		b.mu.Unlock()
		if skip {
			b.metrics.qcs.WithLabelValues("publish_skipped").Inc()
			return
		}
		if err := b.publisher.PublishQC(b.ctx, q); err != nil {
			if b.ctx.Err() == nil {
				b.log.Warn("publish QC", "tx", q.TxHash, "err", err)
			}
			return
		}
		b.metrics.qcs.WithLabelValues("published").Inc()
	}
	b.timersMu.Lock()
	if b.stopped {
		b.timersMu.Unlock()
		return
	}
	b.timers.Add(1)
	b.timersMu.Unlock()
	go func() {
		defer b.timers.Done()
		if delay > 0 {
			t := time.NewTimer(delay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-b.ctx.Done():
				return
			}
		}
		publish()
	}()
}

// SetStage records a lifecycle stage reached by a transaction (settlement
// stages come from the chain). Stages only move forward.
func (b *Board) SetStage(txHash qc.Hash, stage Stage, height uint64) {
	b.mu.Lock()
	e := b.entry(txHash, qc.Hash{}, nil)
	if stage <= e.stage && stage != fastpayv1.TxLifecycleUpdate_ACCEPTED {
		b.mu.Unlock()
		return
	}
	if stage > e.stage {
		e.stage = stage
	}
	if height > 0 {
		e.height = height
	}
	e.setStageAt(stage, nanos(time.Now()))
	ev := Event{Kind: EventLifecycle, TxHash: txHash, UnixMillis: uint64(time.Now().UnixMilli()), Stage: stage, BlockHeight: height, Sender: e.sender(), Recipient: e.recipient()}
	b.mu.Unlock()
	b.emit([]Event{ev})
}

// ReportSettlementFailure records and emits a settlement failure of a
// certified payment; the last reason is kept with the transaction.
func (b *Board) ReportSettlementFailure(txHash qc.Hash, reason string) {
	b.mu.Lock()
	e := b.entry(txHash, qc.Hash{}, nil)
	e.failure = truncateReason(reason)
	ev := Event{Kind: EventSettlementFailure, TxHash: txHash, UnixMillis: uint64(time.Now().UnixMilli()), Reason: reason, Sender: e.sender(), Recipient: e.recipient()}
	b.mu.Unlock()
	b.emit([]Event{ev})
}

// maxReasonLen bounds the settlement failure reason kept per transaction.
const maxReasonLen = 256

func truncateReason(s string) string {
	if len(s) <= maxReasonLen {
		return s
	}
	return s[:maxReasonLen]
}

// appendCreated logs a new entry; the log keeps twice MaxTxs slots, so an
// entry the cache still holds is normally still listed.
func (b *Board) appendCreated(h qc.Hash, firstSeen int64) {
	b.createdSeq++
	limit := 2 * b.cfg.MaxTxs
	switch {
	case len(b.created) >= limit:
		drop := max(limit/4, 1)
		b.created = append(b.created[:0], b.created[drop:]...)
	case len(b.created) == cap(b.created):
		grown := make([]createdTx, len(b.created), min(limit, max(256, 2*cap(b.created))))
		copy(grown, b.created)
		b.created = grown
	}
	b.created = append(b.created, createdTx{txHash: h, firstSeen: firstSeen})
}

func (b *Board) appendArrival(h qc.Hash, index int) {
	b.seq++
	switch {
	case len(b.arrivals) >= b.cfg.MaxLog:
		// Drop the oldest quarter at once so trimming is amortised.
		drop := b.cfg.MaxLog / 4
		if drop == 0 {
			drop = 1
		}
		b.arrivals = append(b.arrivals[:0], b.arrivals[drop:]...)
	case len(b.arrivals) == cap(b.arrivals):
		// Grow by doubling up to MaxLog, not past it as append would.
		grown := make([]arrival, len(b.arrivals), min(b.cfg.MaxLog, max(256, 2*cap(b.arrivals))))
		copy(grown, b.arrivals)
		b.arrivals = grown
	}
	b.arrivals = append(b.arrivals, arrival{txHash: h, index: uint32(index)})
}

// Subscribe delivers every future event for which filter returns true (nil:
// all). Close the subscription when done.
func (b *Board) Subscribe(filter func(*Event) bool) *Subscription {
	return b.subscribe(b.cfg.SubscriberBuffer, filter)
}

// SubscribeTx delivers the future events of one transaction for which
// filter returns true (nil: all). Its buffer holds a transaction's whole
// life (a certificate per member, the QC, the stages), not the board-wide
// SubscriberBuffer: one per API stream, so at saturation a large buffer
// per stream is allocated, zeroed and scanned by the GC for nothing.
func (b *Board) SubscribeTx(txHash qc.Hash, filter func(*Event) bool) *Subscription {
	return b.subscribe(min(b.cfg.SubscriberBuffer, b.committee.N()+16), func(ev *Event) bool {
		return ev.TxHash == txHash && (filter == nil || filter(ev))
	})
}

func (b *Board) subscribe(buffer int, filter func(*Event) bool) *Subscription {
	b.subMu.Lock()
	defer b.subMu.Unlock()
	b.nextSub++
	s := &Subscription{ch: make(chan Event, buffer), filter: filter, board: b, id: b.nextSub}
	b.subs[s.id] = s
	return s
}

// emit numbers events and delivers them. The write lock orders events
// across concurrent emitters, so every subscriber sees increasing Seq.
func (b *Board) emit(events []Event) {
	b.subMu.Lock()
	defer b.subMu.Unlock()
	for i := range events {
		ev := &events[i]
		b.eventSeq++
		ev.Seq = b.eventSeq
		for _, s := range b.subs {
			if s.filter != nil && !s.filter(ev) {
				continue
			}
			select {
			case s.ch <- *ev:
			default:
				s.dropped.Add(1)
				b.metrics.subscriberDrops.Inc()
			}
		}
	}
}

// TxStatus is what the board knows of one transaction.
type TxStatus struct {
	TxHash    qc.Hash
	Sender    qc.Address
	Recipient qc.Address
	// Effects is the first effects summary certified for the transaction;
	// HasEffects is false while only a stage is known of it.
	Effects     qc.Effects
	HasEffects  bool
	Certs       []qc.Certificate
	Quorum      int
	QC          *qc.QC
	Stage       Stage
	BlockHeight uint64
	FirstSeen   time.Time
	QCAt        time.Time
	StageAt     map[Stage]time.Time
	// SettlementFailure is the last settlement failure reported ("" for
	// none).
	SettlementFailure string
}

// Status returns what the board knows of txHash.
func (b *Board) Status(txHash qc.Hash) (TxStatus, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.txs.Peek(txHash)
	if !ok {
		return TxStatus{}, false
	}
	return b.statusLocked(e), true
}

func (b *Board) statusLocked(e *txEntry) TxStatus {
	st := TxStatus{
		TxHash: e.txHash, Sender: e.sender(), Recipient: e.recipient(), Effects: e.effects, HasEffects: e.hasEffects,
		Certs: make([]qc.Certificate, len(e.certs)), Quorum: b.committee.Quorum(), QC: e.qcOf(b.roster), Stage: e.stage,
		BlockHeight: e.height, FirstSeen: timeOf(e.firstSeen), QCAt: timeOf(e.qcAt), StageAt: e.stageTimes(),
		SettlementFailure: e.failure,
	}
	for i := range e.certs {
		st.Certs[i] = e.cert(b.roster, i)
	}
	return st
}

// PaymentsQuery pages through the payments the board holds, newest first.
type PaymentsQuery struct {
	Limit  int    // 0 or above MaxPageSize: MaxPageSize
	Cursor string // from a previous PaymentsPage: older payments
}

// PaymentsPage is one page of payments.
type PaymentsPage struct {
	// Payments are newest first (by when this board first heard of each).
	Payments   []TxStatus
	NextCursor string // empty when there is nothing older
}

// Payments lists the transactions the board still holds whose effects it
// knows (a certificate or a QC arrived), newest first. A transaction the
// board evicted is not listed, and the cursor stays valid across
// evictions and new arrivals.
func (b *Board) Payments(q PaymentsQuery) (PaymentsPage, error) {
	limit := q.Limit
	if limit <= 0 || limit > b.cfg.MaxPageSize {
		limit = b.cfg.MaxPageSize
	}
	var before uint64 // list slots numbered below; 0: from the newest
	if q.Cursor != "" {
		v, err := strconv.ParseUint(q.Cursor, 36, 64)
		if err != nil || v == 0 {
			return PaymentsPage{}, ErrBadCursor
		}
		before = v
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var page PaymentsPage
	firstSeq := b.createdSeq + 1 - uint64(len(b.created))
	end := len(b.created) // slots [0, end) are candidates
	if before != 0 {
		if before > b.createdSeq+1 {
			return PaymentsPage{}, ErrBadCursor
		}
		if before <= firstSeq {
			return page, nil // older than the log keeps
		}
		end = int(before - firstSeq)
	}
	for i := end - 1; i >= 0; i-- {
		c := b.created[i]
		e, ok := b.txs.Peek(c.txHash)
		if !ok || e.firstSeen != c.firstSeen || !e.hasEffects {
			continue // evicted, made again later, or no payment known
		}
		if len(page.Payments) == limit {
			page.NextCursor = strconv.FormatUint(firstSeq+uint64(i)+1, 36)
			break
		}
		page.Payments = append(page.Payments, b.statusLocked(e))
	}
	return page, nil
}

// CertificateCount returns how many certificates the board holds for
// txHash (0 when it knows none).
func (b *Board) CertificateCount(txHash qc.Hash) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.txs.Peek(txHash); ok {
		return len(e.certs)
	}
	return 0
}

// QC returns the QC of txHash, if known.
func (b *Board) QC(txHash qc.Hash) (*qc.QC, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.txs.Peek(txHash); ok && e.qc != nil {
		return e.qcOf(b.roster), true
	}
	return nil, false
}

// Evidence returns the equivocation evidence found, oldest first.
func (b *Board) Evidence() []qc.Equivocation {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.evidence)
}

// Query selects certificates. At most one of TxHash and Address is set.
type Query struct {
	TxHash          *qc.Hash
	Address         *qc.Address // sender or recipient
	SinceUnixMillis uint64      // certificates created at or after
	Limit           int         // 0 or above MaxPageSize: MaxPageSize
	Cursor          string      // from a previous Page
}

// Page is one query result.
type Page struct {
	Certs []qc.Certificate
	// QCs of the transactions of Certs (TxHash and Address queries).
	QCs        []*qc.QC
	NextCursor string // empty when there is nothing more
}

// ErrBadCursor is returned for a cursor this board did not issue.
var ErrBadCursor = errors.New("bulletin: invalid cursor")

// Query returns certificates in arrival order, after Cursor.
func (b *Board) Query(q Query) (Page, error) {
	limit := q.Limit
	if limit <= 0 || limit > b.cfg.MaxPageSize {
		limit = b.cfg.MaxPageSize
	}
	var after uint64
	if q.Cursor != "" {
		v, err := strconv.ParseUint(q.Cursor, 36, 64)
		if err != nil {
			return Page{}, ErrBadCursor
		}
		after = v
	}
	b.mu.Lock()
	defer b.mu.Unlock()

	var page Page
	seenQC := map[qc.Hash]bool{}
	addQC := func(e *txEntry) {
		if e.qc != nil && !seenQC[e.txHash] {
			seenQC[e.txHash] = true
			page.QCs = append(page.QCs, e.qcOf(b.roster))
		}
	}
	if q.TxHash != nil {
		// One transaction: its certificates, position-indexed cursor.
		e, ok := b.txs.Peek(*q.TxHash)
		if !ok {
			return page, nil
		}
		for i := after; i < uint64(len(e.certs)); i++ {
			if e.certs[i].created < q.SinceUnixMillis {
				continue
			}
			if len(page.Certs) == limit {
				page.NextCursor = strconv.FormatUint(i, 36)
				break
			}
			page.Certs = append(page.Certs, e.cert(b.roster, int(i)))
		}
		addQC(e)
		return page, nil
	}
	var wanted map[qc.Hash]struct{}
	if q.Address != nil {
		wanted = b.byAddress[*q.Address]
		if len(wanted) == 0 {
			return page, nil
		}
	}
	firstSeq := b.seq + 1 - uint64(len(b.arrivals))
	start := 0
	if after >= firstSeq {
		start = int(min(after+1-firstSeq, uint64(len(b.arrivals))))
	}
	var lastSeq uint64
	for i, a := range b.arrivals[start:] {
		if wanted != nil {
			if _, ok := wanted[a.txHash]; !ok {
				continue
			}
		}
		e, ok := b.txs.Peek(a.txHash)
		if !ok || int(a.index) >= len(e.certs) {
			continue // evicted
		}
		if e.certs[a.index].created < q.SinceUnixMillis {
			continue
		}
		if len(page.Certs) == limit {
			page.NextCursor = strconv.FormatUint(lastSeq, 36)
			break
		}
		page.Certs = append(page.Certs, e.cert(b.roster, int(a.index)))
		lastSeq = firstSeq + uint64(start+i)
		if wanted != nil {
			addQC(e)
		}
	}
	return page, nil
}
