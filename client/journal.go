package client

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/ethereum/go-ethereum/common"

	"github.com/allegro-mesh/allegro/qc"
)

// The wallet's journal: record encoding, replay on open, fsynced appends and
// compaction. The rules it keeps are in Wallet's doc.

// Journal record types.
const (
	recHeader  byte = 1 // magic ‖ u64 chain id ‖ address(20)
	recReserve byte = 2 // key(32) ‖ u64 nonce
	recRequest byte = 3 // key(32) ‖ u64 nonce ‖ request bytes
	recDone    byte = 4 // key(32) ‖ u64 nonce
	recFloor   byte = 5 // key(32) ‖ u64 chain's next nonce
	recNext    byte = 6 // key(32) ‖ u64 next nonce to hand out (compaction)
	recRelease byte = 7 // key(32) ‖ u64 nonce: its recorded request was refused by all
)

const walletMagic = "allegro.wallet.v1"

var crcTable = crc32.MakeTable(crc32.Castagnoli)

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
	case recRelease:
		if e := w.pending[s]; e != nil {
			e.request = nil
		}
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
