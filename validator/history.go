package validator

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble"
	"google.golang.org/protobuf/proto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// Signing history export and import, for moving a validator to another
// machine without ever signing two conflicting certificates: the file
// carries every record the validator consults before signing — the guards
// (the certificates it signed for contention keys not yet settled), the
// nonce cursors (the last nonce signed per sender and nonce key, which
// outlive settlement), the signed requests and reserved fees that go with
// the guards — and the chain identity. Credits (QCs) are not carried: losing
// one only makes the validator more conservative.
//
// File format: the magic line, a u64 record count, then per record a u32 key
// length, a u32 value length, the key and the value (the store's own
// encoding), and finally the SHA-256 of everything before it. An import
// checks the digest, every key's kind and length, and decodes every guard
// before it writes anything, in one synced batch.

const historyMagic = "allegro.signing-history.v1\n"

// maxHistoryBytes bounds an import file.
const maxHistoryBytes = 4 << 30

// Errors of ImportHistory.
var (
	// ErrHistoryExists: the target store already holds signing history.
	// Histories are never merged: a validator with two pasts could hold
	// guards for one contention key with different transactions, and
	// neither past alone knows which it may still answer.
	ErrHistoryExists = errors.New("the data directory already holds signing history")
	// ErrHistoryFile: the file is not a complete signing-history export.
	ErrHistoryFile = errors.New("not a complete signing-history export")
)

// HistoryStats counts what an export or import carried.
type HistoryStats struct {
	Signatures int // guards: signed contention keys not yet settled
	Cursors    int // last signed nonce per sender and nonce key
	Requests   int
	Fees       int
	// ChainID is the chain of the recorded chain identity (0: none).
	ChainID uint64
	// Signers are the validators whose certificates the guards hold (one,
	// for a validator's own history).
	Signers []qc.ValidatorID
}

// historyPrefixes are the record kinds an export carries.
var historyPrefixes = []byte{prefixGuard, prefixCursor, prefixRequest, prefixFee}

// ExportHistory writes the store's signing history to w.
func (s *Store) ExportHistory(w io.Writer) (HistoryStats, error) {
	var recs [][2][]byte
	for _, p := range historyPrefixes {
		err := s.scan(p, func(k, v []byte) error {
			recs = append(recs, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
			return nil
		})
		if err != nil {
			return HistoryStats{}, fmt.Errorf("export signing history: %w", err)
		}
	}
	value, closer, err := s.db.Get([]byte(keyChainIdentity))
	switch {
	case err == nil:
		recs = append(recs, [2][]byte{[]byte(keyChainIdentity), bytes.Clone(value)})
		closer.Close()
	case !errors.Is(err, pebble.ErrNotFound):
		return HistoryStats{}, fmt.Errorf("export signing history: %w", err)
	}
	stats, err := checkHistory(recs)
	if err != nil {
		return HistoryStats{}, fmt.Errorf("export signing history: the store holds a bad record: %w", err)
	}
	h := sha256.New()
	out := io.MultiWriter(w, h)
	var buf bytes.Buffer
	buf.WriteString(historyMagic)
	buf.Write(binary.BigEndian.AppendUint64(nil, uint64(len(recs))))
	for _, r := range recs {
		buf.Write(binary.BigEndian.AppendUint32(nil, uint32(len(r[0]))))
		buf.Write(binary.BigEndian.AppendUint32(nil, uint32(len(r[1]))))
		buf.Write(r[0])
		buf.Write(r[1])
		if buf.Len() > 1<<20 {
			if _, err := out.Write(buf.Bytes()); err != nil {
				return HistoryStats{}, fmt.Errorf("export signing history: %w", err)
			}
			buf.Reset()
		}
	}
	if _, err := out.Write(buf.Bytes()); err != nil {
		return HistoryStats{}, fmt.Errorf("export signing history: %w", err)
	}
	if _, err := w.Write(h.Sum(nil)); err != nil {
		return HistoryStats{}, fmt.Errorf("export signing history: %w", err)
	}
	return stats, nil
}

// HasHistory reports whether the store holds any signing history (a guard,
// cursor, request or fee record).
func (s *Store) HasHistory() (bool, error) {
	for _, p := range historyPrefixes {
		found := false
		err := s.scan(p, func(k, v []byte) error {
			found = true
			return errStopScan
		})
		if err != nil && !errors.Is(err, errStopScan) {
			return false, err
		}
		if found {
			return true, nil
		}
	}
	return false, nil
}

var errStopScan = errors.New("stop")

// ImportHistory reads an export from r and writes it into the store, which
// must hold no signing history (ErrHistoryExists) and, if it records a
// chain, the same chain. Nothing is written unless the whole file checks.
func (s *Store) ImportHistory(r io.Reader) (HistoryStats, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxHistoryBytes+1))
	if err != nil {
		return HistoryStats{}, fmt.Errorf("import signing history: %w", err)
	}
	recs, err := parseHistory(data)
	if err != nil {
		return HistoryStats{}, fmt.Errorf("import signing history: %w", err)
	}
	stats, err := checkHistory(recs)
	if err != nil {
		return HistoryStats{}, fmt.Errorf("import signing history: %w: %w", ErrHistoryFile, err)
	}
	has, err := s.HasHistory()
	if err != nil {
		return HistoryStats{}, fmt.Errorf("import signing history: %w", err)
	}
	if has {
		return HistoryStats{}, fmt.Errorf("import signing history: %w: import only into the data directory of a validator that has never signed", ErrHistoryExists)
	}
	if id, _, ok, err := s.ChainIdentity(); err != nil {
		return HistoryStats{}, err
	} else if ok && stats.ChainID != 0 && id != stats.ChainID {
		return HistoryStats{}, fmt.Errorf("import signing history: the data directory belongs to chain id %d, the history to chain id %d", id, stats.ChainID)
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, rec := range recs {
		if string(rec[0]) == keyChainIdentity {
			if _, _, ok, _ := s.ChainIdentity(); ok {
				continue
			}
		}
		if err := b.Set(rec[0], rec[1], nil); err != nil {
			return HistoryStats{}, fmt.Errorf("import signing history: %w", err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return HistoryStats{}, fmt.Errorf("import signing history: %w", err)
	}
	return stats, nil
}

// parseHistory checks an export's framing and digest and returns its
// records.
func parseHistory(data []byte) ([][2][]byte, error) {
	if len(data) > maxHistoryBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrHistoryFile, maxHistoryBytes)
	}
	if len(data) < len(historyMagic)+8+sha256.Size || string(data[:len(historyMagic)]) != historyMagic {
		return nil, fmt.Errorf("%w: no signing-history header", ErrHistoryFile)
	}
	body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if d := sha256.Sum256(body); !bytes.Equal(d[:], sum) {
		return nil, fmt.Errorf("%w: the digest does not match (truncated or damaged)", ErrHistoryFile)
	}
	off := len(historyMagic)
	n := binary.BigEndian.Uint64(body[off:])
	off += 8
	if n > uint64(len(body)) {
		return nil, fmt.Errorf("%w: record count %d", ErrHistoryFile, n)
	}
	recs := make([][2][]byte, 0, n)
	for range n {
		if len(body)-off < 8 {
			return nil, fmt.Errorf("%w: truncated record", ErrHistoryFile)
		}
		kl, vl := int(binary.BigEndian.Uint32(body[off:])), int(binary.BigEndian.Uint32(body[off+4:]))
		off += 8
		if kl > len(body)-off || vl > len(body)-off-kl {
			return nil, fmt.Errorf("%w: truncated record", ErrHistoryFile)
		}
		recs = append(recs, [2][]byte{body[off : off+kl], body[off+kl : off+kl+vl]})
		off += kl + vl
	}
	if off != len(body) {
		return nil, fmt.Errorf("%w: %d bytes after the last record", ErrHistoryFile, len(body)-off)
	}
	return recs, nil
}

// checkHistory checks every record's kind and form and counts them.
func checkHistory(recs [][2][]byte) (HistoryStats, error) {
	var st HistoryStats
	signers := make(map[qc.ValidatorID]bool)
	const slotLen = 1 + 20 + 32 + 8
	for _, r := range recs {
		k, v := r[0], r[1]
		if string(k) == keyChainIdentity {
			if len(v) != 8+32 {
				return st, fmt.Errorf("chain identity record of %d bytes", len(v))
			}
			st.ChainID = binary.BigEndian.Uint64(v)
			continue
		}
		if len(k) == 0 {
			return st, errors.New("empty key")
		}
		switch k[0] {
		case prefixGuard:
			if len(k) != slotLen {
				return st, fmt.Errorf("guard key %x: bad length", k)
			}
			var wire fastpayv1.ValidatorCertificate
			if err := proto.Unmarshal(v, &wire); err != nil {
				return st, fmt.Errorf("guard %x: %w", k, err)
			}
			cert, err := wire.ToCertificate()
			if err != nil {
				return st, fmt.Errorf("guard %x: %w", k, err)
			}
			if !bytes.Equal(guardKey(cert.Effects.ContentionKey()), k) {
				return st, fmt.Errorf("guard %x holds a certificate for another contention key", k)
			}
			if !signers[cert.Signer] {
				signers[cert.Signer] = true
				st.Signers = append(st.Signers, cert.Signer)
			}
			st.Signatures++
		case prefixCursor:
			if len(k) != 1+20+32 || len(v) != 8 {
				return st, fmt.Errorf("cursor %x: bad length", k)
			}
			st.Cursors++
		case prefixRequest:
			if len(k) != slotLen {
				return st, fmt.Errorf("request key %x: bad length", k)
			}
			st.Requests++
		case prefixFee:
			if len(k) != slotLen {
				return st, fmt.Errorf("fee key %x: bad length", k)
			}
			if _, err := decodeFeeDebit(v); err != nil {
				return st, fmt.Errorf("fee %x: %w", k, err)
			}
			st.Fees++
		default:
			return st, fmt.Errorf("record kind %q is not signing history", k[0])
		}
	}
	if len(st.Signers) > 1 {
		return st, fmt.Errorf("certificates of %d validators: a signing history belongs to one", len(st.Signers))
	}
	return st, nil
}
