package validator

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble"
	"google.golang.org/protobuf/proto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// Key prefixes of the durable store. Each record kind has its own prefix so
// a prefix scan loads it at start.
const (
	prefixGuard  = 'g' // sender ‖ nonce key ‖ seq → own certificate (guard + debit)
	prefixCursor = 'n' // sender ‖ nonce key → last signed seq
	prefixCredit = 'q' // tx hash → QC that credits its recipient
	// sender ‖ nonce key ‖ seq → the signed SubmitFastPayRequest, written
	// with the guard: a transaction signed while cut off from the others
	// can be announced again after a restart.
	prefixRequest = 'r'
	// sender ‖ nonce key ‖ seq → the maximum fee reserved with the guard:
	// payer ‖ fee token ‖ amount.
	prefixFee = 'f'
	// The chain this state belongs to: chain id ‖ genesis block hash.
	keyChainIdentity = "c"
	// epoch → this validator's close of it (EpochClose), or an empty value
	// once it stopped signing in the epoch and before the close was made.
	prefixEpochClose = 'e'
	// epoch ‖ signer → a close of another member adopted entering the next
	// epoch (EpochClose): a restart adopts them again, so the entries this
	// validator must carry forward survive it.
	prefixAdoptedClose = 'a'
)

// Store is the validator's crash-safe state on an embedded pebble database.
// Signing decisions are written with fsync before the certificate leaves the
// process, so after a crash at any point the validator knows every key it
// signed.
type Store struct {
	db        *pebble.DB
	closeOnce sync.Once
	closeErr  error
}

// ErrStoreLocked: another process (or another store in this one) has the
// data directory open; two sidecars must never share a signing history.
var ErrStoreLocked = errors.New("state store locked")

// OpenStore opens (creating if needed) the store in dir. Its write-ahead
// log syncs at most once per groupCommitWindow (Config.GroupCommitWindow).
func OpenStore(dir string, groupCommitWindow time.Duration, logger *slog.Logger) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory %s: %w", dir, err)
	}
	// 1 MB memtables instead of pebble's 4 MB: a sidecar writes ~2 KB per
	// payment, and with cgo the memtables (two while one flushes) are
	// allocated outside the Go heap, where the sidecar's memory limit does
	// not see them.
	opts := &pebble.Options{Logger: pebbleLogger{logger}, MemTableSize: 1 << 20}
	if groupCommitWindow > 0 {
		opts.WALMinSyncInterval = func() time.Duration { return groupCommitWindow }
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) || strings.Contains(err.Error(), "lock held by current process") {
			return nil, fmt.Errorf("%w: %s is in use by another sidecar (its LOCK file is held): stop that one, or give this sidecar its own data_dir", ErrStoreLocked, dir)
		}
		return nil, fmt.Errorf("open state store %s: %w", dir, err)
	}
	return &Store{db: db}, nil
}

// Close flushes and closes the database. Later calls return the first
// call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.db.Close() })
	return s.closeErr
}

func guardKey(k qc.ContentionKey) []byte {
	b := make([]byte, 0, 1+20+32+8)
	b = append(b, prefixGuard)
	b = append(b, k.Sender[:]...)
	b = append(b, k.NonceKey[:]...)
	return binary.BigEndian.AppendUint64(b, k.NonceSeq)
}

func signedRequestKey(k qc.ContentionKey) []byte {
	b := guardKey(k)
	b[0] = prefixRequest
	return b
}

func feeKey(k qc.ContentionKey) []byte {
	b := guardKey(k)
	b[0] = prefixFee
	return b
}

func cursorKey(sender qc.Address, key qc.NonceKey) []byte {
	b := make([]byte, 0, 1+20+32)
	b = append(b, prefixCursor)
	b = append(b, sender[:]...)
	return append(b, key[:]...)
}

func creditKey(txHash qc.Hash) []byte {
	return append([]byte{prefixCredit}, txHash[:]...)
}

// RecordSignature durably records that this validator signed cert: the
// contention key's guard (with the certificate, which also carries the debit),
// the nonce cursor (unless resign: the same transaction signed again in a
// later epoch leaves the cursor where later signatures put it) and, when
// not empty, the signed request (its encoded
// SubmitFastPayRequest) and the reserved fee. It returns only after fsync.
func (s *Store) RecordSignature(cert *qc.Certificate, request, fee []byte) error {
	return s.recordSignature(cert, request, fee, false)
}

func (s *Store) recordSignature(cert *qc.Certificate, request, fee []byte, resign bool) error {
	value := fastpayv1.AppendCompactValidatorCertificate(nil, cert)
	b := s.db.NewBatch()
	defer b.Close()
	k := cert.Effects.ContentionKey()
	if err := b.Set(guardKey(k), value, nil); err != nil {
		return err
	}
	if !resign {
		if err := b.Set(cursorKey(k.Sender, k.NonceKey), binary.BigEndian.AppendUint64(nil, k.NonceSeq), nil); err != nil {
			return err
		}
	}
	if len(request) > 0 {
		if err := b.Set(signedRequestKey(k), request, nil); err != nil {
			return err
		}
	}
	if len(fee) > 0 {
		if err := b.Set(feeKey(k), fee, nil); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("persist signature for %s: %w", k, err)
	}
	return nil
}

// DeleteSettled removes the guard, request and fee records of settled keys.
// Their nonce cursors stay, and the chain's nonce has passed them, so they
// can never be signed again.
func (s *Store) DeleteSettled(keys []qc.ContentionKey) error {
	if len(keys) == 0 {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, k := range keys {
		if err := errors.Join(b.Delete(guardKey(k), nil), b.Delete(signedRequestKey(k), nil), b.Delete(feeKey(k), nil)); err != nil {
			return err
		}
	}
	return b.Commit(pebble.NoSync)
}

// RecordCredit stores a verified QC crediting its recipient. Losing a credit
// in a crash only makes the validator more conservative, so no fsync.
func (s *Store) RecordCredit(q *qc.QC) error {
	return s.db.Set(creditKey(q.TxHash), fastpayv1.AppendCompactQuorumCertificate(nil, q), pebble.NoSync)
}

// DeleteCredits removes settled credits.
func (s *Store) DeleteCredits(txHashes []qc.Hash) error {
	if len(txHashes) == 0 {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, h := range txHashes {
		if err := b.Delete(creditKey(h), nil); err != nil {
			return err
		}
	}
	return b.Commit(pebble.NoSync)
}

// loadedState is what the store holds at start.
type loadedState struct {
	signed  []qc.Certificate
	fees    map[qc.ContentionKey]*feeDebit
	cursors map[cursorSlot]uint64
	credits []*qc.QC
}

type cursorSlot struct {
	sender qc.Address
	key    qc.NonceKey
}

func (s *Store) load() (*loadedState, error) {
	st := &loadedState{cursors: make(map[cursorSlot]uint64), fees: make(map[qc.ContentionKey]*feeDebit)}
	err := s.scan(prefixGuard, func(k, v []byte) error {
		var wire fastpayv1.ValidatorCertificate
		if err := proto.Unmarshal(v, &wire); err != nil {
			return fmt.Errorf("guard record %x: %w", k, err)
		}
		cert, err := wire.ToCertificate()
		if err != nil {
			return fmt.Errorf("guard record %x: %w", k, err)
		}
		st.signed = append(st.signed, cert)
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = s.scan(prefixFee, func(k, v []byte) error {
		if len(k) != 1+20+32+8 {
			return fmt.Errorf("fee record %x: bad key length", k)
		}
		f, err := decodeFeeDebit(v)
		if err != nil {
			return fmt.Errorf("fee record %x: %w", k, err)
		}
		var ck qc.ContentionKey
		copy(ck.Sender[:], k[1:21])
		copy(ck.NonceKey[:], k[21:53])
		ck.NonceSeq = binary.BigEndian.Uint64(k[53:])
		st.fees[ck] = f
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = s.scan(prefixCursor, func(k, v []byte) error {
		if len(k) != 1+20+32 || len(v) != 8 {
			return fmt.Errorf("cursor record %x: bad length", k)
		}
		var slot cursorSlot
		copy(slot.sender[:], k[1:21])
		copy(slot.key[:], k[21:])
		st.cursors[slot] = binary.BigEndian.Uint64(v)
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = s.scan(prefixCredit, func(k, v []byte) error {
		var wire fastpayv1.QuorumCertificate
		if err := proto.Unmarshal(v, &wire); err != nil {
			return fmt.Errorf("credit record %x: %w", k, err)
		}
		q, err := wire.ToQC()
		if err != nil {
			return fmt.Errorf("credit record %x: %w", k, err)
		}
		st.credits = append(st.credits, q)
		return nil
	})
	return st, err
}

// ChainIdentity returns the chain id and genesis block hash recorded with
// RecordChainIdentity; ok is false when none is recorded yet.
func (s *Store) ChainIdentity() (chainID uint64, genesis [32]byte, ok bool, err error) {
	value, closer, err := s.db.Get([]byte(keyChainIdentity))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, genesis, false, nil
	}
	if err != nil {
		return 0, genesis, false, fmt.Errorf("read chain identity: %w", err)
	}
	defer closer.Close()
	if len(value) != 8+32 {
		return 0, genesis, false, fmt.Errorf("chain identity record of %d bytes, want 40", len(value))
	}
	copy(genesis[:], value[8:])
	return binary.BigEndian.Uint64(value), genesis, true, nil
}

// RecordChainIdentity durably records the chain this state belongs to.
func (s *Store) RecordChainIdentity(chainID uint64, genesis [32]byte) error {
	value := binary.BigEndian.AppendUint64(make([]byte, 0, 40), chainID)
	value = append(value, genesis[:]...)
	if err := s.db.Set([]byte(keyChainIdentity), value, pebble.Sync); err != nil {
		return fmt.Errorf("record chain identity: %w", err)
	}
	return nil
}

func epochCloseKey(epoch uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixEpochClose}, epoch)
}

// RecordEpochStopped durably records that this validator signs nothing more
// in epoch. It returns only after fsync.
func (s *Store) RecordEpochStopped(epoch uint64) error {
	if err := s.db.Set(epochCloseKey(epoch), nil, pebble.Sync); err != nil {
		return fmt.Errorf("record epoch %d stopped: %w", epoch, err)
	}
	return nil
}

// RecordEpochClose durably stores this validator's close of its epoch.
func (s *Store) RecordEpochClose(cl *fastpayv1.EpochClose) error {
	value, err := proto.Marshal(cl)
	if err != nil {
		return fmt.Errorf("encode close of epoch %d: %w", cl.Epoch, err)
	}
	if err := s.db.Set(epochCloseKey(cl.Epoch), value, pebble.Sync); err != nil {
		return fmt.Errorf("record close of epoch %d: %w", cl.Epoch, err)
	}
	return nil
}

// RecordAdoptedClose stores a close adopted entering the next epoch.
func (s *Store) RecordAdoptedClose(cl *fastpayv1.EpochClose) error {
	value, err := proto.Marshal(cl)
	if err != nil {
		return fmt.Errorf("encode adopted close: %w", err)
	}
	key := binary.BigEndian.AppendUint64([]byte{prefixAdoptedClose}, cl.Epoch)
	key = append(key, cl.Signer...)
	if err := s.db.Set(key, value, pebble.Sync); err != nil {
		return fmt.Errorf("record adopted close of epoch %d: %w", cl.Epoch, err)
	}
	return nil
}

// AdoptedCloses returns the closes of epoch stored by RecordAdoptedClose.
func (s *Store) AdoptedCloses(epoch uint64) ([]*fastpayv1.EpochClose, error) {
	prefix := binary.BigEndian.AppendUint64([]byte{prefixAdoptedClose}, epoch)
	upper := binary.BigEndian.AppendUint64([]byte{prefixAdoptedClose}, epoch+1)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	var out []*fastpayv1.EpochClose
	for it.First(); it.Valid(); it.Next() {
		cl := new(fastpayv1.EpochClose)
		if err := proto.Unmarshal(it.Value(), cl); err != nil {
			return nil, errors.Join(fmt.Errorf("decode adopted close %x: %w", it.Key(), err), it.Close())
		}
		out = append(out, cl)
	}
	return out, it.Close()
}

// EpochClose reports whether this validator stopped signing in epoch and
// returns its close of it when one was made (nil while only stopped).
func (s *Store) EpochClose(epoch uint64) (stopped bool, cl *fastpayv1.EpochClose, err error) {
	value, closer, err := s.db.Get(epochCloseKey(epoch))
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil, nil
	}
	if err != nil {
		return false, nil, fmt.Errorf("read close of epoch %d: %w", epoch, err)
	}
	defer closer.Close()
	if len(value) == 0 {
		return true, nil, nil
	}
	cl = new(fastpayv1.EpochClose)
	if err := proto.Unmarshal(value, cl); err != nil {
		return true, nil, fmt.Errorf("decode close of epoch %d: %w", epoch, err)
	}
	return true, cl, nil
}

// signedRequest returns the stored request signed for key, or nil when
// none was stored (a decision recorded before requests were kept).
func (s *Store) signedRequest(key qc.ContentionKey) (*fastpayv1.SubmitFastPayRequest, error) {
	value, closer, err := s.db.Get(signedRequestKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read signed request %s: %w", key, err)
	}
	defer closer.Close()
	req := new(fastpayv1.SubmitFastPayRequest)
	if err := proto.Unmarshal(value, req); err != nil {
		return nil, fmt.Errorf("decode signed request %s: %w", key, err)
	}
	return req, nil
}

func (s *Store) scan(prefix byte, fn func(k, v []byte) error) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefix}, UpperBound: []byte{prefix + 1}})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			return errors.Join(err, it.Close())
		}
	}
	return it.Close()
}

// pebbleLogger routes pebble's logs to slog.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "subsystem", "pebble")
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "subsystem", "pebble")
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "subsystem", "pebble")
	os.Exit(1)
}
