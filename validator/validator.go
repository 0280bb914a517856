package validator

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"math/big"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum/common"
	lru "github.com/hashicorp/golang-lru/v2"
	"google.golang.org/protobuf/proto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/epoch"
	"github.com/allegro-mesh/allegro/internal/recent"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
)

// senderStripes is the number of locks serialising decisions per sender:
// two payments of one sender never race on its nonce or funds, while
// different senders proceed in parallel.
const senderStripes = 256

// Validator applies the rules of SPEC §4 and signs certificates. It is safe
// for concurrent use.
type Validator struct {
	cfg       Config
	signer    *qc.Signer
	committee *qc.Committee
	chain     tempo.ChainReader
	store     *Store
	log       *slog.Logger
	metrics   *Metrics
	now       func() time.Time
	fees      tempo.FeeModel

	seed    maphash.Seed
	senders [senderStripes]sync.Mutex

	mu    sync.Mutex
	guard map[qc.ContentionKey]guardEntry
	// debits indexes the guard by account: the keys whose amount an
	// account sends or whose fee it pays.
	debits      map[qc.Address]map[qc.ContentionKey]struct{}
	cursors     map[cursorSlot]uint64
	credits     *lru.Cache[qc.Hash, credit] // by tx hash
	byRecipient map[qc.Address]map[qc.Hash]struct{}
	// ledger sums the guard's debits and the credits per account, asset
	// and lane, for the funds check.
	ledger     *pendingLedger
	creditByQC map[qc.Hash]qc.Hash // qc hash → tx hash of pending credits
	// The same QCs seen from the paying side, for the conflict check:
	// their contention keys, and the payments each sender has certified.
	certifiedKeys map[qc.ContentionKey]qc.Hash
	bySender      map[qc.Address]map[qc.Hash]struct{}
	pruneHeight   uint64 // newest block pruning has used

	ownCerts *lru.Cache[qc.ContentionKey, qc.Certificate]
	// knownQCs holds the qc_hash of the latest valid QCs learned
	// (Config.MaxQCHashes), so that a parent named by any of a
	// transaction's QCs (different signer subsets have different hashes)
	// is recognised and a QC seen again is not verified again; KnowsQC
	// also recognises the QC of every pending credit. Whole QCs are not kept: with n members a QC holds
	// 2f+1 certificates, and nothing here reads them back. Bounded by
	// insertion (recent.Set), a few times smaller than an LRU of the same
	// size.
	knownQCs   *recent.Set[qc.Hash]
	requestIDs *lru.Cache[requestKey, qc.Hash]

	// stopMu orders signing against CloseEpoch: a signature holds it for
	// reading from its last check to its guard entry, so once the epoch is
	// stopped every signature of the epoch is in the guard.
	stopMu       sync.RWMutex
	epochStopped bool
	// pruneMu keeps Prune from deleting the records of keys CloseEpoch has
	// taken from the guard and is still reading.
	pruneMu sync.Mutex

	// handover is set while entering this epoch from the previous one
	// (SPEC §5a): it gates signing and holds the keys and debits the
	// previous committee's closes listed.
	handover atomic.Pointer[epoch.Handover]
	// earlierCredits are stored credits whose QC is not of this epoch's
	// committee: EnterEpoch verifies them against the previous one.
	earlierCredits []*qc.QC
	// epochEnd is the first block of the next epoch (0: none): a member
	// signs in its epoch only while the head is below it (SPEC §5a).
	epochEnd atomic.Uint64
}

// guardEntry is an unsettled contention key this validator signed: the
// equivocation guard, the sender's pending debit and the payer's reserved
// maximum fee (nil for a decision recorded before fees were reserved).
type guardEntry struct {
	txHash  qc.Hash
	effects qc.Effects
	fee     *feeDebit
}

// credit is a pending credit to a recipient from a QC.
type credit struct {
	qcHash  qc.Hash
	effects qc.Effects
}

type requestKey struct {
	sender qc.Address
	id     string
}

// New restores the validator's state from store and returns it ready to
// validate. chain supplies balances, nonces and the head.
func New(cfg Config, signer *qc.Signer, committee *qc.Committee, chain tempo.ChainReader, store *Store, metrics *Metrics, logger *slog.Logger) (*Validator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if signer.Domain() != committee.Domain() {
		return nil, fmt.Errorf("signer domain %+v differs from committee domain %+v", signer.Domain(), committee.Domain())
	}
	if !committee.Contains(signer.ID()) {
		return nil, fmt.Errorf("validator %s (%s) is not in the committee", signer.Name(), signer.ID().Hex())
	}
	if logger == nil {
		logger = slog.Default()
	}
	if metrics == nil {
		metrics, _ = NewMetrics(nil) // nothing to register: cannot fail
	}
	v := &Validator{
		cfg: cfg, signer: signer, committee: committee, chain: chain, store: store,
		log: logger, metrics: metrics, now: cfg.Now, seed: maphash.MakeSeed(),
		guard:       make(map[qc.ContentionKey]guardEntry),
		debits:      make(map[qc.Address]map[qc.ContentionKey]struct{}),
		cursors:     make(map[cursorSlot]uint64),
		byRecipient: make(map[qc.Address]map[qc.Hash]struct{}),
		ledger:      newPendingLedger(),
		creditByQC:  make(map[qc.Hash]qc.Hash),

		certifiedKeys: make(map[qc.ContentionKey]qc.Hash),
		bySender:      make(map[qc.Address]map[qc.Hash]struct{}),
	}
	if v.now == nil {
		v.now = time.Now
	}
	v.fees = cfg.Fees
	if v.fees == nil {
		v.fees = tempo.TempoFees{}
	}
	var err error
	v.credits, err = lru.NewWithEvict(cfg.MaxCredits, func(h qc.Hash, c credit) { v.unindexCredit(h, c) })
	if err != nil {
		return nil, err
	}
	if v.ownCerts, err = lru.New[qc.ContentionKey, qc.Certificate](cfg.MaxCertificates); err != nil {
		return nil, err
	}
	if v.knownQCs, err = recent.NewSet[qc.Hash](cfg.MaxQCHashes); err != nil {
		return nil, err
	}
	if v.requestIDs, err = lru.New[requestKey, qc.Hash](cfg.MaxRequestIDs); err != nil {
		return nil, err
	}
	if err := v.restore(); err != nil {
		return nil, err
	}
	return v, nil
}

func (v *Validator) restore() error {
	st, err := v.store.load()
	if err != nil {
		return fmt.Errorf("restore validator state: %w", err)
	}
	v.cursors = st.cursors
	for _, cert := range st.signed {
		if cert.Signer != v.signer.ID() {
			// An imported history of another validator: its guards are not
			// this key's decisions, and this key's own may be missing.
			return fmt.Errorf("restore validator state: the store holds a certificate signed by %s, not by this validator's key %s: it is another validator's signing history", cert.Signer.Hex(), v.signer.ID().Hex())
		}
		k := cert.Effects.ContentionKey()
		v.addGuard(k, guardEntry{txHash: cert.TxHash, effects: cert.Effects, fee: st.fees[k]})
		slot := cursorSlot{k.Sender, k.NonceKey}
		if last, ok := v.cursors[slot]; !ok || last < k.NonceSeq {
			// A guard written without its cursor cannot happen (one batch),
			// but the guard is the authority if it ever does.
			v.cursors[slot] = k.NonceSeq
		}
	}
	for _, q := range st.credits {
		if err := v.committee.VerifyQC(q); err != nil {
			// Perhaps the previous epoch's: EnterEpoch verifies it then.
			v.earlierCredits = append(v.earlierCredits, q)
			continue
		}
		v.addCredit(q)
	}
	if v.epochStopped, _, err = v.store.EpochClose(v.signer.Domain().Epoch); err != nil {
		return fmt.Errorf("restore validator state: %w", err)
	}
	v.log.Info("validator state restored", "epoch_stopped", v.epochStopped, "unsettled_signatures", len(st.signed), "nonce_cursors", len(st.cursors), "credits", len(st.credits))
	return nil
}

// Committee returns the committee the validator belongs to.
func (v *Validator) Committee() *qc.Committee { return v.committee }

// Signer returns the validator's signer.
func (v *Validator) Signer() *qc.Signer { return v.signer }

// Decode runs stage 1 (the package function Decode) with this validator's
// domain and limits.
func (v *Validator) Decode(req *fastpayv1.SubmitFastPayRequest) (*Payment, error) {
	return Decode(req, v.committee.Domain(), v.cfg.MaxParentQCs)
}

// Submit validates req (SPEC §4 steps 1–7) and returns this validator's
// certificate. A failure is a *Reject carrying the wire reject code.
func (v *Validator) Submit(ctx context.Context, req *fastpayv1.SubmitFastPayRequest) (qc.Certificate, error) {
	start := time.Now()
	p, err := v.Decode(req)
	if err != nil {
		v.metrics.observe(err, start)
		return qc.Certificate{}, err
	}
	cert, err := v.SubmitDecoded(ctx, p)
	v.metrics.observe(err, start)
	return cert, err
}

// SubmitDecoded runs steps 2–7 on a payment that passed Decode.
func (v *Validator) SubmitDecoded(ctx context.Context, p *Payment) (qc.Certificate, error) {
	return v.SubmitAndAnnounce(ctx, p, nil)
}

// SubmitAndAnnounce is SubmitDecoded that calls announce (when not nil)
// once the payment has passed every rule, just before the signing decision
// is persisted: the entry sidecar shares the transaction with the other
// validators then, so their validation overlaps its own durable write
// instead of following it. announce runs under the sender's lock and must
// not block for long; it is not called when the payment is refused or was
// signed before (the caller gets the stored certificate). A failed write
// after announce only means this validator does not sign: others decide
// for themselves.
func (v *Validator) SubmitAndAnnounce(ctx context.Context, p *Payment, announce func()) (qc.Certificate, error) {
	sender := p.Effects.Sender
	if v.Stopped() {
		// What it signed before the stop it still hands out.
		if tx, ok := v.SignedTx(p.Effects.ContentionKey()); ok && tx == p.TxHash {
			if cert, err := v.ownCertificate(p.Effects.ContentionKey()); !errors.Is(err, errEarlierEpoch) {
				return cert, err
			}
		}
		return qc.Certificate{}, v.stoppedReject()
	}
	if p.ClientRequestID != "" {
		rk := requestKey{sender, p.ClientRequestID}
		if prev, ok, _ := v.requestIDs.PeekOrAdd(rk, p.TxHash); ok && prev != p.TxHash {
			return qc.Certificate{}, reject(codeInvalidFormat, nil, "client_request_id %q was already used by %s for tx %s", p.ClientRequestID, common.Address(sender), prev)
		}
	}

	// Parent QCs are verified before taking the sender lock (pure CPU work);
	// their verdict is reported at step 5.
	parentErr := v.ingestParentQCs(p.Request.GetParentQcs())

	view, err := v.chain.Latest(ctx)
	if err != nil {
		return qc.Certificate{}, reject(fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE, err, "chain state")
	}
	if end := v.epochEnd.Load(); end > 0 && view.Head().Number >= end {
		return qc.Certificate{}, reject(fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE, ErrEpochStopped,
			"epoch %d ended at block %d (head %d); retry with the next epoch's committee", v.signer.Domain().Epoch, end, view.Head().Number)
	}
	// Step 2: expiry.
	if err := v.checkExpiry(p, view.Head()); err != nil {
		return qc.Certificate{}, err
	}

	// The fee payer's balance is decided on too: hold its lock as well.
	payer := sender
	if fp := p.Tx.FeePayer; fp != nil {
		payer = qc.Address(*fp)
	}
	defer v.lockAccounts(sender, payer)()

	// Pruning may have dropped entries settled at a block newer than view;
	// the balance must be read at least that new.
	if view, err = v.viewNotOlderThanPruning(ctx, view); err != nil {
		return qc.Certificate{}, err
	}

	// Step 3: the equivocation guard.
	key := p.Effects.ContentionKey()
	v.mu.Lock()
	entry, signed := v.guard[key]
	certifiedTx, certified := v.certifiedKeys[key]
	v.mu.Unlock()
	resign := false
	if signed {
		if entry.txHash != p.TxHash {
			return qc.Certificate{}, reject(fastpayv1.RejectCode_EQUIVOCATION, nil,
				"this validator already signed tx %s for sender %s nonce_key %x nonce_seq %d", entry.txHash, common.Address(sender), key.NonceKey[:], key.NonceSeq)
		}
		cert, err := v.ownCertificate(key)
		if !errors.Is(err, errEarlierEpoch) {
			return cert, err
		}
		// Signed in an earlier epoch and still unsettled: the same
		// transaction is signed again in this one, as the handover allows.
		resign = true
	}
	// The previous epoch's guards, as its closes listed them.
	if h := v.handover.Load(); h != nil {
		err := h.MaySign(view.Head().Number, key, p.TxHash, certified && certifiedTx == p.TxHash)
		switch {
		case errors.Is(err, epoch.ErrPending):
			return qc.Certificate{}, reject(fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE, err, "entering epoch %d", h.Next())
		case err != nil:
			return qc.Certificate{}, reject(fastpayv1.RejectCode_EQUIVOCATION, err, "sender %s nonce_key %x nonce_seq %d", common.Address(sender), key.NonceKey[:], key.NonceSeq)
		}
	}
	if resign {
		return v.resign(p, entry)
	}

	// Step 4: nonce.
	chainNonce, err := view.NonceOf(ctx, common.Address(sender), key.NonceKey)
	if err != nil {
		return qc.Certificate{}, reject(fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE, err, "nonce of %s", common.Address(sender))
	}
	expected := chainNonce
	v.mu.Lock()
	if last, ok := v.cursors[cursorSlot{sender, key.NonceKey}]; ok && last+1 > expected {
		expected = last + 1
	}
	v.mu.Unlock()
	switch {
	case key.NonceSeq < expected:
		return qc.Certificate{}, reject(fastpayv1.RejectCode_NONCE_SEQ_TOO_LOW, nil, "nonce_seq %d is below the next expected %d (chain nonce %d)", key.NonceSeq, expected, chainNonce)
	case key.NonceSeq > expected:
		return qc.Certificate{}, reject(fastpayv1.RejectCode_NONCE_SEQ_TOO_HIGH, nil, "nonce_seq %d is above the next expected %d (chain nonce %d); submit the earlier nonces first", key.NonceSeq, expected, chainNonce)
	}

	// Step 5: parent QCs.
	if parentErr != nil {
		return qc.Certificate{}, parentErr
	}
	if p.ParentQCHash != nil && !v.KnowsQC(*p.ParentQCHash) {
		return qc.Certificate{}, reject(fastpayv1.RejectCode_MISSING_PARENT_QC, nil, "parent QC %s is not known to this validator; include it in parent_qcs", p.ParentQCHash)
	}

	// Step 6: funds, the maximum fee included.
	fee, err := v.checkFunds(ctx, view, p)
	if err != nil {
		return qc.Certificate{}, err
	}

	// Step 7: persist, then sign and release.
	v.stopMu.RLock()
	defer v.stopMu.RUnlock()
	if v.epochStopped {
		return qc.Certificate{}, v.stoppedReject()
	}
	if announce != nil {
		announce()
	}
	cert := v.signer.Sign(p.TxHash, p.Effects, uint64(v.now().UnixMilli()))
	request, err := proto.Marshal(p.Request)
	if err != nil {
		return qc.Certificate{}, reject(fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE, err, "encode request")
	}
	if err := v.store.RecordSignature(&cert, request, fee.encode()); err != nil {
		v.log.Error("cannot persist signing decision; refusing to release certificate", "tx", p.TxHash, "err", err)
		return qc.Certificate{}, reject(fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE, err, "persist decision")
	}
	v.mu.Lock()
	v.addGuard(key, guardEntry{txHash: p.TxHash, effects: p.Effects, fee: fee})
	v.cursors[cursorSlot{sender, key.NonceKey}] = key.NonceSeq
	v.mu.Unlock()
	v.ownCerts.Add(key, cert)
	return cert, nil
}

func (v *Validator) checkExpiry(p *Payment, head tempo.Head) error {
	switch p.Expiry.Kind {
	case qc.ExpiryMaxBlockHeight:
		if head.Number >= p.Expiry.Value {
			return reject(fastpayv1.RejectCode_EXPIRED, nil, "expired at block %d, chain head is %d", p.Expiry.Value, head.Number)
		}
	case qc.ExpiryUnixMillis:
		if now := uint64(v.now().UnixMilli()); now >= p.Expiry.Value {
			return reject(fastpayv1.RejectCode_EXPIRED, nil, "expired at unix millis %d, now %d", p.Expiry.Value, now)
		}
	}
	// A 0x76 transaction is certified only while it can still reach a
	// block: valid_before at least the settlement margin away, valid_after
	// at most that far ahead.
	now := v.now()
	margin := v.cfg.SettlementMargin
	if vb := p.Tx.ValidBefore; vb != nil && !now.Add(margin).Before(time.Unix(int64(min(*vb, math.MaxInt64)), 0)) {
		return reject(fastpayv1.RejectCode_EXPIRED, nil, "the transaction's valid_before %d is less than the settlement margin (%s) away (now %d): it might expire before it settles", *vb, margin, now.Unix())
	}
	if va := p.Tx.ValidAfter; va != nil && now.Add(margin).Before(time.Unix(int64(min(*va, math.MaxInt64)), 0)) {
		return reject(fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE, nil, "the transaction is not valid before %d (now %d); submit it again within %s of that", *va, now.Unix(), margin)
	}
	return nil
}

func (v *Validator) viewNotOlderThanPruning(ctx context.Context, view tempo.ChainView) (tempo.ChainView, error) {
	v.mu.Lock()
	floor := v.pruneHeight
	v.mu.Unlock()
	if view.Head().Number >= floor {
		return view, nil
	}
	fresh, err := v.chain.Latest(ctx)
	if err != nil {
		return nil, reject(fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE, err, "chain state")
	}
	if fresh.Head().Number < floor {
		return nil, reject(fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE, nil, "chain view at block %d is older than block %d already used", fresh.Head().Number, floor)
	}
	return fresh, nil
}

// ownCertificate returns the stored certificate for a key this validator
// signed, from memory or the durable store.
func (v *Validator) ownCertificate(key qc.ContentionKey) (qc.Certificate, error) {
	if cert, ok := v.ownCerts.Get(key); ok {
		return cert, nil
	}
	value, closer, err := v.store.db.Get(guardKey(key))
	if err != nil {
		return qc.Certificate{}, reject(fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE, err, "read stored certificate")
	}
	defer closer.Close()
	var wire fastpayv1.ValidatorCertificate
	if err := proto.Unmarshal(value, &wire); err != nil {
		return qc.Certificate{}, reject(fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE, err, "decode stored certificate")
	}
	cert, err := wire.ToCertificate()
	if err != nil {
		return qc.Certificate{}, reject(fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE, err, "decode stored certificate")
	}
	if v.committee.VerifyCertificate(&cert) != nil {
		return cert, fmt.Errorf("%w: %s", errEarlierEpoch, key)
	}
	v.ownCerts.Add(key, cert)
	return cert, nil
}

// errEarlierEpoch: the stored certificate of a key was signed in an earlier
// epoch (its signature is not of this committee's domain).
var errEarlierEpoch = errors.New("validator: the stored certificate is of an earlier epoch")

// resign signs again, in this epoch, a transaction this validator signed in
// an earlier one (its guard stays; the certificate stored is the new one).
func (v *Validator) resign(p *Payment, entry guardEntry) (qc.Certificate, error) {
	v.stopMu.RLock()
	defer v.stopMu.RUnlock()
	if v.epochStopped {
		return qc.Certificate{}, v.stoppedReject()
	}
	cert := v.signer.Sign(p.TxHash, p.Effects, uint64(v.now().UnixMilli()))
	request, err := proto.Marshal(p.Request)
	if err != nil {
		return qc.Certificate{}, reject(fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE, err, "encode request")
	}
	var fee []byte
	if entry.fee != nil {
		fee = entry.fee.encode()
	}
	if err := v.store.recordSignature(&cert, request, fee, true); err != nil {
		v.log.Error("cannot persist signing decision; refusing to release certificate", "tx", p.TxHash, "err", err)
		return qc.Certificate{}, reject(fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE, err, "persist decision")
	}
	v.ownCerts.Add(p.Effects.ContentionKey(), cert)
	return cert, nil
}

// available computes chain balance − pending debits + pending credits for
// (sender, asset) at view, skipping entries the view shows settled. The
// debits include what the previous epoch's closes listed for keys this
// validator has no guard of its own for, except the key being decided.
//
// A busy account has thousands of entries pending, on a few lanes (sender
// and nonce key) of its own and one per payer lane it receives from, and
// this runs for every payment it makes: the ledger keeps each lane's sums,
// the chain is asked for each lane's nonce once, and only the entries
// below it (settled since the last prune) are looked at one by one.
func (v *Validator) available(ctx context.Context, view tempo.ChainView, sender, asset qc.Address, deciding qc.ContentionKey) (*big.Int, error) {
	balance, err := view.BalanceOf(ctx, common.Address(asset), common.Address(sender))
	if err != nil {
		return nil, err
	}
	scratch := availablePool.Get().(*availableScratch)
	defer scratch.release()
	key := ledgerKey{sender, asset}
	v.mu.Lock()
	scratch.lanes = v.ledger.lanes(key, scratch.lanes)
	if h := v.handover.Load(); h != nil {
		for k, ls := range h.ListedBySender(sender) {
			if _, own := v.guard[k]; own || k == deciding {
				continue
			}
			// At most one transaction of a key settles: the largest counts.
			var most *epoch.Listed
			for _, l := range ls {
				if l.Effects.Asset == asset && (most == nil || l.Effects.Amount > most.Effects.Amount) {
					most = l
				}
			}
			if most != nil {
				scratch.listed = append(scratch.listed, listedDebit(most.Effects))
			}
		}
	}
	v.mu.Unlock()

	// The chain reads happen without the lock; a lane that gains its first
	// entry meanwhile is judged conservatively (pendingLedger.addPending).
	nonces := tempo.NewNonceReads(view)
	for _, lane := range scratch.lanes {
		if _, err := nonces.Next(ctx, common.Address(lane.sender), lane.key); err != nil {
			return nil, err
		}
	}
	var amount big.Int
	for i := range scratch.listed {
		p := &scratch.listed[i]
		settled, err := nonces.Included(ctx, common.Address(p.slot.sender), p.slot.key, p.seq)
		if err != nil {
			return nil, err
		}
		if !settled {
			balance.Sub(balance, amount.SetUint64(p.amount))
		}
	}
	v.mu.Lock()
	v.ledger.addPending(key, func(lane cursorSlot) (uint64, bool) {
		return nonces.Known(common.Address(lane.sender), lane.key)
	}, balance)
	v.mu.Unlock()
	return balance, nil
}

// availableScratch is what one funds check gathers, recycled.
type availableScratch struct {
	lanes  []cursorSlot
	listed []pendingAmount
}

func (a *availableScratch) release() {
	clear(a.lanes)
	a.lanes = a.lanes[:0]
	clear(a.listed)
	a.listed = a.listed[:0]
	availablePool.Put(a)
}

var availablePool = sync.Pool{New: func() any { return new(availableScratch) }}

// pendingAmount is a debit a close listed: its lane, nonce and amount.
type pendingAmount struct {
	slot   cursorSlot // the transaction's (sender, nonce key)
	seq    uint64
	amount uint64
}

func listedDebit(e qc.Effects) pendingAmount {
	return pendingAmount{slot: cursorSlot{e.Sender, e.NonceKey}, seq: e.NonceSeq, amount: e.Amount}
}

// settledIn reports whether the transaction with effects e is included at
// the view behind reads (the chain's nonce for its sender and nonce key has
// passed its seq), asking the view for each (sender, nonce key) once.
func settledIn(ctx context.Context, reads *tempo.NonceReads, e qc.Effects) (bool, error) {
	return reads.Included(ctx, common.Address(e.Sender), e.NonceKey, e.NonceSeq)
}

func (v *Validator) addGuard(k qc.ContentionKey, e guardEntry) {
	if old, ok := v.guard[k]; ok {
		v.unledgerGuard(k, old)
	}
	v.guard[k] = e
	v.indexDebit(k.Sender, k)
	if e.fee != nil {
		v.indexDebit(e.fee.payer, k)
	}
	lane := cursorSlot{k.Sender, k.NonceKey}
	v.ledger.add(ledgerKey{e.effects.Sender, e.effects.Asset}, lane, guardDebit(k, e))
	if e.fee != nil {
		v.ledger.add(ledgerKey{e.fee.payer, e.fee.token}, lane, guardFee(k, e))
	}
}

func guardDebit(k qc.ContentionKey, e guardEntry) ledgerEntry {
	return ledgerEntry{seq: k.NonceSeq, tx: e.txHash, amount: e.effects.Amount}
}

func guardFee(k qc.ContentionKey, e guardEntry) ledgerEntry {
	return ledgerEntry{seq: k.NonceSeq, tx: e.txHash, big: e.fee.amount, fee: true}
}

func (v *Validator) unledgerGuard(k qc.ContentionKey, e guardEntry) {
	lane := cursorSlot{k.Sender, k.NonceKey}
	v.ledger.remove(ledgerKey{e.effects.Sender, e.effects.Asset}, lane, guardDebit(k, e))
	if e.fee != nil {
		v.ledger.remove(ledgerKey{e.fee.payer, e.fee.token}, lane, guardFee(k, e))
	}
}

func (v *Validator) indexDebit(account qc.Address, k qc.ContentionKey) {
	set := v.debits[account]
	if set == nil {
		set = make(map[qc.ContentionKey]struct{})
		v.debits[account] = set
	}
	set[k] = struct{}{}
}

func (v *Validator) removeGuard(k qc.ContentionKey) {
	e, ok := v.guard[k]
	if !ok {
		return
	}
	delete(v.guard, k)
	v.unledgerGuard(k, e)
	v.unindexDebit(k.Sender, k)
	if e.fee != nil {
		v.unindexDebit(e.fee.payer, k)
	}
}

func (v *Validator) unindexDebit(account qc.Address, k qc.ContentionKey) {
	if set := v.debits[account]; set != nil {
		delete(set, k)
		if len(set) == 0 {
			delete(v.debits, account)
		}
	}
}

// addCredit records q's credit to its recipient. Callers hold v.mu (or own
// v exclusively, as restore does).
func (v *Validator) addCredit(q *qc.QC) bool {
	v.knownQCs.Add(q.Hash)
	e := q.Effects()
	if v.credits.Contains(q.TxHash) {
		return false
	}
	v.credits.Add(q.TxHash, credit{qcHash: q.Hash, effects: e})
	v.ledger.add(ledgerKey{e.Recipient, e.Asset}, cursorSlot{e.Sender, e.NonceKey}, creditEntry(q.TxHash, e))
	set := v.byRecipient[e.Recipient]
	if set == nil {
		set = make(map[qc.Hash]struct{})
		v.byRecipient[e.Recipient] = set
	}
	set[q.TxHash] = struct{}{}
	v.creditByQC[q.Hash] = q.TxHash
	k := e.ContentionKey()
	if _, taken := v.certifiedKeys[k]; !taken {
		v.certifiedKeys[k] = q.TxHash
	}
	sent := v.bySender[e.Sender]
	if sent == nil {
		sent = make(map[qc.Hash]struct{})
		v.bySender[e.Sender] = sent
	}
	sent[q.TxHash] = struct{}{}
	return true
}

func creditEntry(tx qc.Hash, e qc.Effects) ledgerEntry {
	return ledgerEntry{seq: e.NonceSeq, tx: tx, amount: e.Amount, credit: true}
}

// unindexCredit is the credits cache's eviction callback.
func (v *Validator) unindexCredit(h qc.Hash, c credit) {
	v.ledger.remove(ledgerKey{c.effects.Recipient, c.effects.Asset}, cursorSlot{c.effects.Sender, c.effects.NonceKey}, creditEntry(h, c.effects))
	delete(v.creditByQC, c.qcHash)
	if k := c.effects.ContentionKey(); v.certifiedKeys[k] == h {
		delete(v.certifiedKeys, k)
	}
	if set := v.bySender[c.effects.Sender]; set != nil {
		delete(set, h)
		if len(set) == 0 {
			delete(v.bySender, c.effects.Sender)
		}
	}
	if set := v.byRecipient[c.effects.Recipient]; set != nil {
		delete(set, h)
		if len(set) == 0 {
			delete(v.byRecipient, c.effects.Recipient)
		}
	}
}

// KnowsQC reports whether a valid QC with hash h was learned: any QC of a
// transaction satisfies a child naming one of them, so it is enough that h
// was verified once.
func (v *Validator) KnowsQC(h qc.Hash) bool {
	if v.knownQCs.Contains(h) {
		return true
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	_, ok := v.creditByQC[h]
	return ok
}

// verifyQC verifies q against the committee of its epoch: this one, or,
// with a handover, an earlier one it knows (the previous one always), whose
// QCs stay valid (SPEC §5a). A QC that does not carry its epoch is tried
// against this committee and the previous one.
func (v *Validator) verifyQC(q *qc.QC) error {
	h := v.handover.Load()
	if h == nil {
		return v.committee.VerifyQC(q)
	}
	prev := h.Previous()
	switch {
	case q.Epoch == 0:
		err := v.committee.VerifyQC(q)
		if err != nil && prev.VerifyQC(q) == nil {
			return nil
		}
		return err
	case q.Epoch < v.signer.Domain().Epoch:
		// An earlier epoch's QC: its key stays held by the closes until it
		// settles, so its transaction is still the certified one.
		if c := h.CommitteeOf(q.Epoch); c != nil {
			return c.VerifyQC(q)
		}
	}
	return v.committee.VerifyQC(q)
}

// EndEpochAt makes the validator sign nothing new once the chain's head
// reaches block end, the next epoch's first (SPEC §5a: members of committee
// e sign only while their head is below (e+1)·L). The epoch is closed
// (CloseEpoch) after that.
func (v *Validator) EndEpochAt(end uint64) { v.epochEnd.Store(end) }

// EnterEpoch makes h, the handover from the previous epoch into this
// validator's, gate its signing: nothing is signed until h completes, a key
// the previous committee's closes listed is signed only as h allows, their
// debits count as pending, and QCs of the previous epoch are verified
// against its committee.
func (v *Validator) EnterEpoch(h *epoch.Handover) error {
	if h.Next() != v.signer.Domain().Epoch {
		return fmt.Errorf("handover into epoch %d for a validator of epoch %d", h.Next(), v.signer.Domain().Epoch)
	}
	v.handover.Store(h)
	// Credits restored from QCs of the previous epoch count again.
	for _, q := range v.earlierCredits {
		if err := v.verifyQC(q); err != nil {
			v.log.Warn("dropping stored credit that does not verify", "tx", q.TxHash, "err", err)
			continue
		}
		v.mu.Lock()
		v.addCredit(q)
		v.mu.Unlock()
	}
	v.earlierCredits = nil
	return nil
}

func (v *Validator) ingestParentQCs(parents []*fastpayv1.QuorumCertificate) error {
	verified, err := v.verifyParentQCs(parents)
	for _, q := range verified {
		v.learnVerifiedQC(q)
	}
	return err
}

// verifyParentQCs returns the parent QCs not known yet, each verified, and
// stores nothing; the first invalid one is an INVALID_PARENT_QC reject
// (with the valid ones before it).
func (v *Validator) verifyParentQCs(parents []*fastpayv1.QuorumCertificate) ([]*qc.QC, error) {
	var verified []*qc.QC
	for i, wire := range parents {
		q, err := wire.ToQC()
		if err != nil {
			return verified, reject(fastpayv1.RejectCode_INVALID_PARENT_QC, err, "parent_qcs[%d]", i)
		}
		if v.knownQCs.Contains(q.Hash) {
			continue
		}
		if err := v.verifyQC(q); err != nil {
			return verified, reject(fastpayv1.RejectCode_INVALID_PARENT_QC, err, "parent_qcs[%d]", i)
		}
		verified = append(verified, q)
	}
	return verified, nil
}

// LearnQC verifies q against the committee and records the credit it gives
// its recipient (once per transaction, however often it is presented).
func (v *Validator) LearnQC(q *qc.QC) error {
	if v.knownQCs.Contains(q.Hash) {
		return nil
	}
	if err := v.verifyQC(q); err != nil {
		return err
	}
	v.learnVerifiedQC(q)
	return nil
}

// LearnVerifiedQC records a QC the caller already verified against this
// validator's committee (for example on gossip ingress).
func (v *Validator) LearnVerifiedQC(q *qc.QC) { v.learnVerifiedQC(q) }

func (v *Validator) learnVerifiedQC(q *qc.QC) {
	v.mu.Lock()
	added := v.addCredit(q)
	v.mu.Unlock()
	if !added {
		return
	}
	if err := v.store.RecordCredit(q); err != nil {
		v.log.Warn("cannot persist QC credit (kept in memory)", "tx", q.TxHash, "err", err)
	}
}

// Prune drops debits and credits the chain shows settled at its latest
// head, and returns how many of each it dropped.
func (v *Validator) Prune(ctx context.Context) (debits, credits int, err error) {
	v.pruneMu.Lock()
	defer v.pruneMu.Unlock()
	view, err := v.chain.Latest(ctx)
	if err != nil {
		return 0, 0, err
	}
	v.mu.Lock()
	keys := make([]qc.ContentionKey, 0, len(v.guard))
	effects := make([]qc.Effects, 0, len(v.guard))
	for k, e := range v.guard {
		keys = append(keys, k)
		effects = append(effects, e.effects)
	}
	creditHashes := v.credits.Keys()
	creditEffects := make([]qc.Effects, 0, len(creditHashes))
	for _, h := range creditHashes {
		c, _ := v.credits.Peek(h)
		creditEffects = append(creditEffects, c.effects)
	}
	v.mu.Unlock()

	nonces := tempo.NewNonceReads(view)
	var settledKeys []qc.ContentionKey
	for i, e := range effects {
		ok, err := settledIn(ctx, nonces, e)
		if err != nil {
			return 0, 0, err
		}
		if ok {
			settledKeys = append(settledKeys, keys[i])
		}
	}
	var settledCredits []qc.Hash
	for i, e := range creditEffects {
		ok, err := settledIn(ctx, nonces, e)
		if err != nil {
			return 0, 0, err
		}
		if ok {
			settledCredits = append(settledCredits, creditHashes[i])
		}
	}

	v.mu.Lock()
	if h := view.Head().Number; h > v.pruneHeight {
		v.pruneHeight = h
	}
	for _, k := range settledKeys {
		v.removeGuard(k)
	}
	for _, h := range settledCredits {
		v.credits.Remove(h) // the eviction callback unindexes it
	}
	v.mu.Unlock()
	for _, k := range settledKeys {
		v.ownCerts.Remove(k)
	}
	if err := errors.Join(v.store.DeleteSettled(settledKeys), v.store.DeleteCredits(settledCredits)); err != nil {
		return len(settledKeys), len(settledCredits), fmt.Errorf("delete settled records: %w", err)
	}
	return len(settledKeys), len(settledCredits), nil
}

// Overlay is a snapshot of one account's pending debits and credits.
type Overlay struct {
	Debits  []qc.Effects
	Fees    []FeeDebit // maximum fees reserved from the account as payer
	Credits []qc.Effects
}

// OverlayOf returns account's pending debits (as sender), reserved fees (as
// payer) and credits (as recipient) not yet pruned.
func (v *Validator) OverlayOf(account qc.Address) Overlay {
	v.mu.Lock()
	defer v.mu.Unlock()
	var o Overlay
	for k := range v.debits[account] {
		g := v.guard[k]
		if g.effects.Sender == account {
			o.Debits = append(o.Debits, g.effects)
		}
		if g.fee != nil && g.fee.payer == account {
			o.Fees = append(o.Fees, FeeDebit{Payer: g.fee.payer, Token: g.fee.token, Amount: new(big.Int).Set(g.fee.amount), Key: k})
		}
	}
	for h := range v.byRecipient[account] {
		if c, ok := v.credits.Peek(h); ok {
			o.Credits = append(o.Credits, c.effects)
		}
	}
	return o
}

// CertifiedTx returns the tx hash of the QC this validator holds for key,
// if it holds a pending credit for one.
func (v *Validator) CertifiedTx(key qc.ContentionKey) (qc.Hash, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	h, ok := v.certifiedKeys[key]
	return h, ok
}

// SignedTx returns the tx hash this validator signed for key, if any
// unsettled signature exists.
func (v *Validator) SignedTx(key qc.ContentionKey) (qc.Hash, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.guard[key]
	return e.txHash, ok
}

// SignedBefore reports whether this validator's durable state accounts for
// a certificate by its own key: a guard for the certificate's contention
// key holds the same transaction, or no guard is left and the nonce cursor
// has reached the key's nonce (signed, and settled since). A certificate by
// this key that it does not account for was signed by another process with
// the same key.
func (v *Validator) SignedBefore(cert *qc.Certificate) bool {
	k := cert.Effects.ContentionKey()
	v.mu.Lock()
	defer v.mu.Unlock()
	if e, ok := v.guard[k]; ok {
		return e.txHash == cert.TxHash
	}
	last, ok := v.cursors[cursorSlot{k.Sender, k.NonceKey}]
	return ok && last >= k.NonceSeq
}

// SignedRequest is a transaction this validator signed: its certificate and
// the request as it was signed.
type SignedRequest struct {
	Cert    qc.Certificate
	Request *fastpayv1.SubmitFastPayRequest
	// Earlier is set when Cert was signed in an earlier epoch: the
	// transaction must be signed again (Submit) before it is announced with
	// this epoch's certificate.
	Earlier bool
}

// UncertifiedSigned returns every unsettled transaction this validator
// signed whose QC it does not know, with the stored request, so a restarted
// sidecar can announce them again. Keys whose request was not stored are
// left out.
func (v *Validator) UncertifiedSigned() ([]SignedRequest, error) {
	v.mu.Lock()
	keys := make([]qc.ContentionKey, 0, len(v.guard))
	for k, e := range v.guard {
		if !v.credits.Contains(e.txHash) {
			keys = append(keys, k)
		}
	}
	v.mu.Unlock()
	var out []SignedRequest
	for _, k := range keys {
		req, err := v.store.signedRequest(k)
		if err != nil {
			return out, err
		}
		if req == nil {
			continue
		}
		cert, err := v.ownCertificate(k)
		earlier := errors.Is(err, errEarlierEpoch)
		if err != nil && !earlier {
			return out, err
		}
		out = append(out, SignedRequest{Cert: cert, Request: req, Earlier: earlier})
	}
	return out, nil
}

// IngestParentQCs verifies the parent QCs a request carries against the
// committee and learns the valid ones; an invalid one is an
// INVALID_PARENT_QC reject.
func (v *Validator) IngestParentQCs(req *fastpayv1.SubmitFastPayRequest) error {
	return v.ingestParentQCs(req.GetParentQcs())
}

// VerifyParentQCs verifies the parent QCs a request carries against the
// committee and returns those not known yet, storing nothing: gossip
// validation rejects a transaction carrying a forged parent before anything
// else is done with it, and learns the parents (LearnVerifiedQC) only once
// the whole frame has been accepted. Its verdict is stateless: an invalid
// parent is an INVALID_PARENT_QC reject.
func (v *Validator) VerifyParentQCs(req *fastpayv1.SubmitFastPayRequest) ([]*qc.QC, error) {
	verified, err := v.verifyParentQCs(req.GetParentQcs())
	if err != nil {
		return nil, err
	}
	return verified, nil
}
