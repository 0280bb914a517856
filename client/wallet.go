package client

import (
	"bytes"
	"cmp"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sync"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"google.golang.org/protobuf/proto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// Wallet hands out nonces for one account durably, through an append-only
// journal file.
//
// # Rules
//
//  1. Reserve appends a reservation record and fsyncs it BEFORE returning the
//     nonce. On open, the next nonce of each nonce key is max(reserved)+1
//     (and at least the chain nonce given to SyncChainNonce), so after a crash
//     at any point, SIGKILL included, a nonce that was ever returned is never
//     returned again.
//  2. Record stores the signed request for a reserved nonce, durably, and
//     must be called BEFORE the request is submitted anywhere. A nonce has at
//     most one recorded request: Record refuses different bytes
//     (ErrNonceRecorded), so the wallet itself never signs two transactions
//     for one nonce.
//  3. After a restart, Pending lists every reservation not marked Done. One
//     with a recorded request must be resubmitted with exactly those bytes
//     (same transaction, same client_request_id: sidecars answer it
//     idempotently); never sign a different transaction for its nonce, since
//     validators that signed the first one would refuse it (EQUIVOCATION) and
//     the two could split the votes so that neither gets a QC.
//  4. Release forgets the recorded request of a pending nonce, turning it
//     back into a gap to fill with a new payment. Call it only when no
//     validator can hold a certificate for the recorded request: a sidecar
//     refused it outright (an EXPIRED or other final reject) and no sidecar
//     asked knows the transaction. A validator that signed it would answer
//     any other transaction for the nonce with EQUIVOCATION.
//
// # Why a reserved but unused nonce is safe to skip
//
// A nonce reserved and then lost in a crash before its request was recorded
// leaves a gap. Skipping it can never double-spend: no transaction was signed
// for it (rule 2), and a sidecar only ever certifies the next expected nonce,
// answering NONCE_SEQ_TOO_HIGH (and parking the payment for a while) for
// later ones until the gap is filled. So a gap costs liveness, never safety,
// whereas handing a nonce out twice could put two different signed
// transactions in flight for one contention key. The wallet therefore never
// reuses a nonce through Reserve. The gap is filled by signing a payment for
// the reserved nonce: Pending lists it with a nil Request, and the wallet's
// NewEVMPayment and NewTempoPayment fill such gaps (from an earlier session)
// before reserving new nonces. That is not reuse: the reservation is the
// same, and by rule 2 nothing was ever submitted for it. A gap can also be
// closed by the chain moving past it (SyncChainNonce).
//
// # Journal
//
// Records are framed as u32 length ‖ u32 CRC-32C ‖ payload, appended with
// O_APPEND and fsynced; a reservation is 49 bytes. A torn final record (a
// crash mid-append: its fsync never returned, so its nonce was never handed
// out) is detected and cut off on open; damage anywhere else is reported as
// ErrWalletCorrupt. On open, a journal more than twice the size of its live
// state is compacted. When the file grows beyond the compaction
// bound (WithCompactAt, default 1 MiB) it is rewritten with only the live
// state (next nonces, chain floors, pending reservations and their requests)
// into a temporary file, fsynced, and renamed over the journal, so a crash
// during compaction leaves either the old or the new journal. A lock file
// (PATH.lock) keeps a second process from opening the same wallet.
//
// A Wallet is safe for concurrent use.
type Wallet struct {
	path      string
	key       *ecdsa.PrivateKey
	addr      common.Address
	chainID   uint64
	compactAt int64

	mu          sync.Mutex
	f           *os.File
	unlock      func()
	size        int64
	compactedAt int64
	broken      error
	next        map[qc.NonceKey]uint64
	floor       map[qc.NonceKey]uint64
	pending     map[slot]*pendingEntry
}

type slot struct {
	key   qc.NonceKey
	nonce uint64
}

type pendingEntry struct {
	request []byte
	// gap marks a reservation without a request that may be filled by the
	// payment builders: one from an earlier session, or one whose payment
	// could not be built.
	gap bool
}

// PendingPayment is a reservation not yet marked Done.
type PendingPayment struct {
	NonceKey qc.NonceKey
	Nonce    uint64
	// Request is the recorded signed request (protobuf), nil when none was
	// recorded: then nothing was submitted for the nonce and it is a gap to
	// fill.
	Request []byte
}

// SubmitRequest decodes Request.
func (p PendingPayment) SubmitRequest() (*fastpayv1.SubmitFastPayRequest, error) {
	if p.Request == nil {
		return nil, fmt.Errorf("nonce %d has no recorded request", p.Nonce)
	}
	var req fastpayv1.SubmitFastPayRequest
	if err := proto.Unmarshal(p.Request, &req); err != nil {
		return nil, fmt.Errorf("pending request for nonce %d: %w", p.Nonce, err)
	}
	return &req, nil
}

// Wallet errors.
var (
	ErrWalletCorrupt  = errors.New("wallet journal is corrupt")
	ErrWalletLocked   = errors.New("wallet is open in another process")
	ErrWalletMismatch = errors.New("wallet journal belongs to another account or chain")
	ErrNotReserved    = errors.New("nonce is not reserved (or already done)")
	ErrNonceRecorded  = errors.New("another request is already recorded for this nonce")
	ErrWalletClosed   = errors.New("wallet is closed")
)

// DefaultCompactAt is the journal size beyond which it is compacted.
const DefaultCompactAt = 1 << 20

// maxRequestBytes bounds a recorded request.
const maxRequestBytes = 1 << 20

// WalletOption customises OpenWallet.
type WalletOption func(*Wallet)

// WithCompactAt sets the journal size in bytes beyond which it is compacted
// (default DefaultCompactAt). It is compacted again only once it has doubled
// since the last compaction, so many pending requests do not make every
// append compact.
func WithCompactAt(n int64) WalletOption { return func(w *Wallet) { w.compactAt = n } }

// OpenWallet opens (or creates) the wallet journal at path for key's account
// on chain chainID. A journal made for another account or chain is refused.
func OpenWallet(path string, key *ecdsa.PrivateKey, chainID uint64, opts ...WalletOption) (*Wallet, error) {
	if key == nil {
		return nil, errors.New("wallet: no key")
	}
	w := &Wallet{
		path: path, key: key, addr: crypto.PubkeyToAddress(key.PublicKey), chainID: chainID,
		compactAt: DefaultCompactAt,
		next:      make(map[qc.NonceKey]uint64), floor: make(map[qc.NonceKey]uint64), pending: make(map[slot]*pendingEntry),
	}
	for _, o := range opts {
		o(w)
	}
	unlock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, err
	}
	w.unlock = unlock
	if err := w.open(); err != nil {
		unlock()
		return nil, err
	}
	return w, nil
}

// Address returns the wallet's account.
func (w *Wallet) Address() common.Address { return w.addr }

// ChainID returns the chain the wallet signs for.
func (w *Wallet) ChainID() uint64 { return w.chainID }

// Next returns the nonce the next Reserve for nonceKey will return.
func (w *Wallet) Next(nonceKey qc.NonceKey) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.next[nonceKey]
}

// Reserve returns a nonce for nonceKey that was never returned before (zero
// is the account's protocol nonce, which EVM transactions use). The
// reservation is on disk before Reserve returns.
func (w *Wallet) Reserve(nonceKey qc.NonceKey) (uint64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reserveLocked(nonceKey)
}

func (w *Wallet) reserveLocked(key qc.NonceKey) (uint64, error) {
	n := w.next[key]
	if n == math.MaxUint64 {
		return 0, errors.New("wallet: nonces exhausted for this key")
	}
	if err := w.appendSync(slotRecord(recReserve, key, n, nil)); err != nil {
		return 0, err
	}
	w.next[key] = n + 1
	w.pending[slot{key, n}] = &pendingEntry{}
	w.maybeCompact()
	return n, nil
}

// Record durably stores the signed request for the reserved nonce
// (nonceKey, nonce). Call it before submitting the request. Recording the
// same bytes again does nothing; different bytes are refused with
// ErrNonceRecorded.
func (w *Wallet) Record(nonceKey qc.NonceKey, nonce uint64, signedRequest []byte) error {
	if len(signedRequest) == 0 || len(signedRequest) > maxRequestBytes {
		return fmt.Errorf("wallet: a recorded request must be 1 to %d bytes, got %d", maxRequestBytes, len(signedRequest))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.pending[slot{nonceKey, nonce}]
	switch {
	case e == nil:
		return fmt.Errorf("wallet: nonce %d: %w", nonce, ErrNotReserved)
	case e.request != nil && bytes.Equal(e.request, signedRequest):
		return nil
	case e.request != nil:
		return fmt.Errorf("wallet: nonce %d: %w", nonce, ErrNonceRecorded)
	}
	if err := w.appendSync(slotRecord(recRequest, nonceKey, nonce, signedRequest)); err != nil {
		return err
	}
	e.request, e.gap = bytes.Clone(signedRequest), false
	w.maybeCompact()
	return nil
}

// MarshalRequest encodes req deterministically, the form Record stores.
func MarshalRequest(req *fastpayv1.SubmitFastPayRequest) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(req)
}

// RecordRequest records req for the nonce it carries (see Record).
func (w *Wallet) RecordRequest(req *fastpayv1.SubmitFastPayRequest) error {
	key, nonce, err := req.GetTx().GetNonce().ToNonce("nonce")
	if err != nil {
		return fmt.Errorf("wallet: %w", err)
	}
	b, err := MarshalRequest(req)
	if err != nil {
		return fmt.Errorf("wallet: encode request: %w", err)
	}
	return w.Record(key, nonce, b)
}

// Done marks the reservation (nonceKey, nonce) finished (its payment has a QC,
// or it was settled or consumed otherwise), so Pending no longer lists it.
// Done on a nonce that is not pending does nothing.
func (w *Wallet) Done(nonceKey qc.NonceKey, nonce uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := slot{nonceKey, nonce}
	if w.pending[s] == nil {
		return nil
	}
	if err := w.appendSync(slotRecord(recDone, nonceKey, nonce, nil)); err != nil {
		return err
	}
	delete(w.pending, s)
	w.maybeCompact()
	return nil
}

// Release turns the pending reservation (nonceKey, nonce) back into a gap:
// its recorded request is forgotten, durably, and the next payment built
// for nonceKey takes the nonce (rule 4 says when that is safe). A nonce that
// is not pending is refused with ErrNotReserved.
func (w *Wallet) Release(nonceKey qc.NonceKey, nonce uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := slot{nonceKey, nonce}
	e := w.pending[s]
	if e == nil {
		return fmt.Errorf("wallet: nonce %d: %w", nonce, ErrNotReserved)
	}
	if e.request == nil {
		e.gap = true
		return nil
	}
	if err := w.appendSync(slotRecord(recRelease, nonceKey, nonce, nil)); err != nil {
		return err
	}
	e.request, e.gap = nil, true
	w.maybeCompact()
	return nil
}

// SyncChainNonce tells the wallet the chain's next nonce for nonceKey
// (eth_getTransactionCount for key zero, the nonce precompile for other
// keys). Later reservations start at n or above, and reservations below n
// are consumed on chain and leave Pending. It is durable.
func (w *Wallet) SyncChainNonce(nonceKey qc.NonceKey, n uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n <= w.floor[nonceKey] {
		return nil
	}
	if err := w.appendSync(slotRecord(recFloor, nonceKey, n, nil)); err != nil {
		return err
	}
	w.raiseFloor(nonceKey, n)
	w.maybeCompact()
	return nil
}

// Pending lists the reservations not yet Done, by nonce key and nonce, with
// their recorded requests: after a restart, resubmit each recorded request
// unchanged, and fill each gap (nil Request) with a new payment.
func (w *Wallet) Pending() []PendingPayment {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pendingLocked()
}

func (w *Wallet) pendingLocked() []PendingPayment {
	out := make([]PendingPayment, 0, len(w.pending))
	for s, e := range w.pending {
		out = append(out, PendingPayment{NonceKey: s.key, Nonce: s.nonce, Request: bytes.Clone(e.request)})
	}
	slices.SortFunc(out, func(a, b PendingPayment) int {
		if c := bytes.Compare(a.NonceKey[:], b.NonceKey[:]); c != 0 {
			return c
		}
		return cmp.Compare(a.Nonce, b.Nonce)
	})
	return out
}

// take returns the lowest gap of key, or else a new reservation.
func (w *Wallet) take(key qc.NonceKey) (uint64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	best, found := uint64(0), false
	for s, e := range w.pending {
		if s.key == key && e.gap && (!found || s.nonce < best) {
			best, found = s.nonce, true
		}
	}
	if found {
		w.pending[slot{key, best}].gap = false
		return best, nil
	}
	return w.reserveLocked(key)
}

// giveBack returns a taken nonce whose payment was never recorded to the
// gaps.
func (w *Wallet) giveBack(key qc.NonceKey, n uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e := w.pending[slot{key, n}]; e != nil && e.request == nil {
		e.gap = true
	}
}

func (w *Wallet) build(key qc.NonceKey, sign func(nonce uint64) (*fastpayv1.SubmitFastPayRequest, error)) (*fastpayv1.SubmitFastPayRequest, error) {
	nonce, err := w.take(key)
	if err != nil {
		return nil, err
	}
	req, err := sign(nonce)
	if err == nil {
		err = w.RecordRequest(req)
	}
	if err != nil {
		w.giveBack(key, nonce)
		return nil, err
	}
	return req, nil
}

// NewEVMPayment builds an EVM payment (see the package function) from the
// wallet's account at the next nonce of key zero (filling a gap left by an
// earlier session first) and records it: the returned request is ready to
// submit, and is listed by Pending until Done.
func (w *Wallet) NewEVMPayment(token, recipient common.Address, amount uint64, opts ...PaymentOption) (*fastpayv1.SubmitFastPayRequest, error) {
	return w.build(qc.NonceKey{}, func(nonce uint64) (*fastpayv1.SubmitFastPayRequest, error) {
		return NewEVMPayment(w.key, w.chainID, nonce, token, recipient, amount, opts...)
	})
}

// NewTempoPayment builds a Tempo 0x76 payment at the next nonce of nonceKey
// (filling a gap first) and records it, like NewEVMPayment.
func (w *Wallet) NewTempoPayment(nonceKey qc.NonceKey, token, recipient common.Address, amount uint64, opts ...PaymentOption) (*fastpayv1.SubmitFastPayRequest, error) {
	return w.build(nonceKey, func(nonce uint64) (*fastpayv1.SubmitFastPayRequest, error) {
		return NewTempoPayment(w.key, w.chainID, nonceKey, nonce, token, recipient, amount, opts...)
	})
}

// Close closes the journal and releases the lock.
func (w *Wallet) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	w.broken = ErrWalletClosed
	if w.unlock != nil {
		w.unlock()
		w.unlock = nil
	}
	return err
}

var _ io.Closer = (*Wallet)(nil)
