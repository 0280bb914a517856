package client

import (
	"bytes"
	"cmp"
	"crypto/ecdsa"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
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

// Journal record types.
const (
	recHeader  byte = 1 // magic ‖ u64 chain id ‖ address(20)
	recReserve byte = 2 // key(32) ‖ u64 nonce
	recRequest byte = 3 // key(32) ‖ u64 nonce ‖ request bytes
	recDone    byte = 4 // key(32) ‖ u64 nonce
	recFloor   byte = 5 // key(32) ‖ u64 chain's next nonce
	recNext    byte = 6 // key(32) ‖ u64 next nonce to hand out (compaction)
)

const walletMagic = "allegro.wallet.v1"

var crcTable = crc32.MakeTable(crc32.Castagnoli)

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

func (w *Wallet) open() error {
	// A compaction that crashed before its rename leaves a temporary file;
	// the journal itself is intact.
	_ = os.Remove(w.tmpPath())
	data, err := os.ReadFile(w.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return w.rewrite() // a new journal holding only the header
	case err != nil:
		return fmt.Errorf("wallet: %w", err)
	}
	good, err := w.replay(data)
	if err != nil {
		return fmt.Errorf("wallet %s: %w", w.path, err)
	}
	f, err := os.OpenFile(w.path, os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("wallet: %w", err)
	}
	if good < int64(len(data)) {
		// Cut off the torn final record so new records follow valid ones.
		if err := f.Truncate(good); err == nil {
			err = f.Sync()
		}
		if err != nil {
			f.Close()
			return fmt.Errorf("wallet: truncate torn record: %w", err)
		}
	}
	// Compaction is measured against the live state, not the file: a
	// journal of mostly finished records is compacted now.
	w.f, w.size, w.compactedAt = f, good, int64(len(w.snapshot()))
	// Reservations without a request from an earlier session are gaps.
	for _, e := range w.pending {
		if e.request == nil {
			e.gap = true
		}
	}
	w.maybeCompact()
	return w.broken
}

func (w *Wallet) tmpPath() string { return w.path + ".tmp" }

// replay applies the journal's records and returns the length of its valid
// prefix.
func (w *Wallet) replay(data []byte) (int64, error) {
	off := 0
	first := true
	for off < len(data) {
		payload, end, ok := readFrame(data, off)
		if !ok {
			// A torn final record: the frame runs to or past the end, or
			// only zeros follow (the file was extended before the data
			// reached the disk). Anything else is damage.
			if end >= len(data) || allZero(data[off:]) {
				break
			}
			return 0, fmt.Errorf("%w: bad record at offset %d", ErrWalletCorrupt, off)
		}
		if err := w.apply(payload, first); err != nil {
			if errors.Is(err, ErrWalletMismatch) {
				return 0, err
			}
			return 0, fmt.Errorf("%w: record at offset %d: %v", ErrWalletCorrupt, off, err)
		}
		first = false
		off = end
	}
	if first {
		return 0, fmt.Errorf("%w: no header", ErrWalletCorrupt)
	}
	return int64(off), nil
}

// readFrame reads the frame at off; end is where it ends (or claims to).
func readFrame(data []byte, off int) (payload []byte, end int, ok bool) {
	if len(data)-off < 8 {
		return nil, len(data), false
	}
	n := int(binary.BigEndian.Uint32(data[off:]))
	sum := binary.BigEndian.Uint32(data[off+4:])
	end = off + 8 + n
	if n == 0 || n > maxRequestBytes+64 || end > len(data) {
		return nil, max(end, off+8), false
	}
	payload = data[off+8 : end]
	if crc32.Checksum(payload, crcTable) != sum {
		return nil, end, false
	}
	return payload, end, true
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func (w *Wallet) apply(p []byte, first bool) error {
	if first != (p[0] == recHeader) {
		return errors.New("the header must be the first record, and only the first")
	}
	if p[0] == recHeader {
		if len(p) != 1+len(walletMagic)+8+20 || string(p[1:1+len(walletMagic)]) != walletMagic {
			return errors.New("not a wallet journal header")
		}
		rest := p[1+len(walletMagic):]
		chainID, addr := binary.BigEndian.Uint64(rest), common.BytesToAddress(rest[8:])
		if chainID != w.chainID || addr != w.addr {
			return fmt.Errorf("%w: journal is for %s on chain %d, opened for %s on chain %d", ErrWalletMismatch, addr.Hex(), chainID, w.addr.Hex(), w.chainID)
		}
		return nil
	}
	if len(p) < 1+32+8 {
		return fmt.Errorf("record type %d is %d bytes", p[0], len(p))
	}
	var s slot
	copy(s.key[:], p[1:33])
	s.nonce = binary.BigEndian.Uint64(p[33:41])
	extra := p[41:]
	if p[0] != recRequest && len(extra) != 0 {
		return fmt.Errorf("record type %d has %d trailing bytes", p[0], len(extra))
	}
	switch p[0] {
	case recReserve:
		w.reserved(s)
	case recRequest:
		w.reserved(s)
		if e := w.pending[s]; e != nil && e.request == nil {
			e.request = bytes.Clone(extra)
		}
	case recDone:
		delete(w.pending, s)
	case recFloor:
		w.raiseFloor(s.key, s.nonce)
	case recNext:
		w.next[s.key] = max(w.next[s.key], s.nonce)
	default:
		return fmt.Errorf("unknown record type %d", p[0])
	}
	return nil
}

// reserved applies a reservation of s.
func (w *Wallet) reserved(s slot) {
	if s.nonce == math.MaxUint64 {
		return
	}
	w.next[s.key] = max(w.next[s.key], s.nonce+1)
	if s.nonce >= w.floor[s.key] && w.pending[s] == nil {
		w.pending[s] = &pendingEntry{}
	}
}

// raiseFloor applies the chain's next nonce n for key: nonces below it are
// consumed on chain.
func (w *Wallet) raiseFloor(key qc.NonceKey, n uint64) {
	w.floor[key] = max(w.floor[key], n)
	w.next[key] = max(w.next[key], n)
	for s := range w.pending {
		if s.key == key && s.nonce < n {
			delete(w.pending, s)
		}
	}
}

func frame(payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint32(b, uint32(len(payload)))
	binary.BigEndian.PutUint32(b[4:], crc32.Checksum(payload, crcTable))
	copy(b[8:], payload)
	return b
}

func slotRecord(typ byte, key qc.NonceKey, n uint64, extra []byte) []byte {
	p := make([]byte, 1+32+8+len(extra))
	p[0] = typ
	copy(p[1:], key[:])
	binary.BigEndian.PutUint64(p[33:], n)
	copy(p[41:], extra)
	return frame(p)
}

func (w *Wallet) headerRecord() []byte {
	p := make([]byte, 0, 1+len(walletMagic)+8+20)
	p = append(p, recHeader)
	p = append(p, walletMagic...)
	p = binary.BigEndian.AppendUint64(p, w.chainID)
	p = append(p, w.addr[:]...)
	return frame(p)
}

// appendSync appends records and fsyncs. After a failure the wallet refuses
// every further call: the file may end in a torn record, which only a reopen
// cuts off safely.
func (w *Wallet) appendSync(recs ...[]byte) error {
	if w.broken != nil {
		return w.broken
	}
	if w.f == nil {
		return ErrWalletClosed
	}
	buf := slices.Concat(recs...)
	if _, err := w.f.Write(buf); err != nil {
		w.broken = fmt.Errorf("wallet journal write failed, reopen the wallet: %w", err)
		return w.broken
	}
	if err := w.f.Sync(); err != nil {
		w.broken = fmt.Errorf("wallet journal fsync failed, reopen the wallet: %w", err)
		return w.broken
	}
	w.size += int64(len(buf))
	return nil
}

// maybeCompact rewrites the journal when it has grown past the bound. Call
// it only after the records just appended are applied to the in-memory
// state: the rewrite is made from that state.
func (w *Wallet) maybeCompact() {
	if w.broken == nil && w.size > w.compactAt && w.size >= 2*w.compactedAt {
		if err := w.rewrite(); err != nil && w.broken == nil {
			// The journal is intact; compact again once it has doubled.
			w.compactedAt = w.size
		}
	}
}

// rewrite writes the live state to a new journal and renames it over the
// old one (compaction, and creation of a new journal).
func (w *Wallet) rewrite() error {
	data := w.snapshot()
	tmp := w.tmpPath()
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("wallet: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, w.path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(w.path))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("wallet: rewrite journal: %w", err)
	}
	nf, err := os.OpenFile(w.path, os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		// The new journal is durable but cannot be appended to here.
		w.broken = fmt.Errorf("wallet: reopen journal after compaction: %w", err)
		return w.broken
	}
	if w.f != nil {
		w.f.Close()
	}
	w.f, w.size, w.compactedAt = nf, int64(len(data)), int64(len(data))
	return nil
}

// snapshot encodes the live state as a journal: the header, next nonces,
// chain floors, and pending reservations with their requests.
func (w *Wallet) snapshot() []byte {
	var buf bytes.Buffer
	buf.Write(w.headerRecord())
	for _, key := range sortedKeys(w.next) {
		buf.Write(slotRecord(recNext, key, w.next[key], nil))
	}
	for _, key := range sortedKeys(w.floor) {
		buf.Write(slotRecord(recFloor, key, w.floor[key], nil))
	}
	for _, p := range w.pendingLocked() {
		buf.Write(slotRecord(recReserve, p.NonceKey, p.Nonce, nil))
		if p.Request != nil {
			buf.Write(slotRecord(recRequest, p.NonceKey, p.Nonce, p.Request))
		}
	}
	return buf.Bytes()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func sortedKeys(m map[qc.NonceKey]uint64) []qc.NonceKey {
	keys := make([]qc.NonceKey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b qc.NonceKey) int { return bytes.Compare(a[:], b[:]) })
	return keys
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
