package client_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/allegro-mesh/allegro/client"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/qc"
)

var laneKey = qc.NonceKey{31: 9}

func openWallet(t *testing.T, path string, opts ...client.WalletOption) *client.Wallet {
	t.Helper()
	w, err := client.OpenWallet(path, aliceKey, chainID, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func reserve(t *testing.T, w *client.Wallet, key qc.NonceKey) uint64 {
	t.Helper()
	n, err := w.Reserve(key)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func pendingMap(w *client.Wallet, key qc.NonceKey) map[uint64][]byte {
	out := map[uint64][]byte{}
	for _, p := range w.Pending() {
		if p.NonceKey == key {
			out[p.Nonce] = p.Request
		}
	}
	return out
}

func TestWalletReserveRecordReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alice.wallet")
	w := openWallet(t, path)
	for want := uint64(0); want < 3; want++ {
		if n := reserve(t, w, qc.NonceKey{}); n != want {
			t.Fatalf("reserved %d, want %d", n, want)
		}
	}
	if n := reserve(t, w, laneKey); n != 0 {
		t.Fatalf("first nonce of another key: %d", n)
	}
	if err := w.Record(qc.NonceKey{}, 0, []byte("signed-0")); err != nil {
		t.Fatal(err)
	}
	if err := w.Record(qc.NonceKey{}, 0, []byte("signed-0")); err != nil {
		t.Fatalf("recording the same bytes again: %v", err)
	}
	if err := w.Record(qc.NonceKey{}, 0, []byte("another")); !errors.Is(err, client.ErrNonceRecorded) {
		t.Fatalf("second request for one nonce: %v", err)
	}
	if err := w.Record(qc.NonceKey{}, 99, []byte("x")); !errors.Is(err, client.ErrNotReserved) {
		t.Fatalf("record of an unreserved nonce: %v", err)
	}
	if err := w.Done(qc.NonceKey{}, 1); err != nil {
		t.Fatal(err)
	}
	if err := w.Record(qc.NonceKey{}, 1, []byte("late")); !errors.Is(err, client.ErrNotReserved) {
		t.Fatalf("record after done: %v", err)
	}

	// A second process (or handle) cannot open the wallet.
	if _, err := client.OpenWallet(path, aliceKey, chainID); !errors.Is(err, client.ErrWalletLocked) {
		t.Fatalf("second open: %v", err)
	}
	w.Close()
	if _, err := client.OpenWallet(path, bobKey, chainID); !errors.Is(err, client.ErrWalletMismatch) {
		t.Fatalf("another account: %v", err)
	}
	if _, err := client.OpenWallet(path, aliceKey, 1); !errors.Is(err, client.ErrWalletMismatch) {
		t.Fatalf("another chain: %v", err)
	}

	w = openWallet(t, path)
	if w.Next(qc.NonceKey{}) != 3 || w.Next(laneKey) != 1 {
		t.Fatalf("after reopen next %d / %d", w.Next(qc.NonceKey{}), w.Next(laneKey))
	}
	got := pendingMap(w, qc.NonceKey{})
	if len(got) != 2 || string(got[0]) != "signed-0" || got[2] != nil {
		t.Fatalf("pending %v", got)
	}
	if lane := pendingMap(w, laneKey); len(lane) != 1 {
		t.Fatalf("pending on the lane %v", lane)
	}

	// The builder fills the gap left at nonce 2 (reserved, never recorded,
	// so never submitted) before reserving new nonces.
	req, err := w.NewEVMPayment(token, nodetest.Address(bobKey), dollar)
	if err != nil {
		t.Fatal(err)
	}
	if req.Tx.Nonce.NonceSeq != 2 {
		t.Fatalf("gap not filled: nonce %d", req.Tx.Nonce.NonceSeq)
	}
	recorded := pendingMap(w, qc.NonceKey{})[2]
	back, err := client.PendingPayment{Nonce: 2, Request: recorded}.SubmitRequest()
	if err != nil || back.Tx.ClientRequestId != req.Tx.ClientRequestId {
		t.Fatalf("recorded request: %v", err)
	}
	req, err = w.NewEVMPayment(token, nodetest.Address(bobKey), dollar)
	if err != nil || req.Tx.Nonce.NonceSeq != 3 {
		t.Fatalf("next payment: %v %v", req.GetTx().GetNonce(), err)
	}
	if n := reserve(t, w, qc.NonceKey{}); n != 4 {
		t.Fatalf("reserve after builders: %d", n)
	}
	tr, err := w.NewTempoPayment(laneKey, token, nodetest.Address(bobKey), dollar)
	if err != nil || tr.Tx.Nonce.NonceSeq != 0 {
		t.Fatalf("tempo payment on the lane fills its gap: %v %v", tr.GetTx().GetNonce(), err)
	}

	// The chain moved past nonce 6: earlier reservations are consumed.
	if err := w.SyncChainNonce(qc.NonceKey{}, 7); err != nil {
		t.Fatal(err)
	}
	if p := pendingMap(w, qc.NonceKey{}); len(p) != 0 || w.Next(qc.NonceKey{}) != 7 {
		t.Fatalf("after sync: pending %v next %d", p, w.Next(qc.NonceKey{}))
	}
	w.Close()
	w = openWallet(t, path)
	if n := reserve(t, w, qc.NonceKey{}); n != 7 {
		t.Fatalf("reserve after sync and reopen: %d", n)
	}
}

func TestWalletTornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w")
	w := openWallet(t, path)
	for range 5 {
		reserve(t, w, qc.NonceKey{})
	}
	if err := w.Record(qc.NonceKey{}, 4, []byte("req-4")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	good, _ := os.ReadFile(path)

	for name, tail := range map[string][]byte{
		"partial frame":    good[len(good)-10:][:7],
		"zeros":            make([]byte, 64),
		"length past end":  {0, 0, 1, 0, 1, 2, 3, 4, 5},
		"few header bytes": {0, 0},
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, append(bytes.Clone(good), tail...), 0o600); err != nil {
				t.Fatal(err)
			}
			w := openWallet(t, path)
			if w.Next(qc.NonceKey{}) != 5 || string(pendingMap(w, qc.NonceKey{})[4]) != "req-4" {
				t.Fatalf("next %d pending %v", w.Next(qc.NonceKey{}), pendingMap(w, qc.NonceKey{}))
			}
			if n := reserve(t, w, qc.NonceKey{}); n != 5 {
				t.Fatalf("reserved %d", n)
			}
			w.Close()
			w = openWallet(t, path)
			if w.Next(qc.NonceKey{}) != 6 {
				t.Fatalf("the reservation after the torn tail was lost: next %d", w.Next(qc.NonceKey{}))
			}
			w.Close()
		})
	}

	// Damage before the last record is not a torn tail: refuse to guess.
	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 0xff
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := client.OpenWallet(path, aliceKey, chainID); !errors.Is(err, client.ErrWalletCorrupt) {
		t.Fatalf("corrupt journal: %v", err)
	}
}

func TestWalletCompaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w")
	w := openWallet(t, path, client.WithCompactAt(1024))
	size := func() int64 {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	// Whichever operation triggers a compaction, the compacted journal must
	// hold the state including that operation: after every compaction
	// (the file shrank), reopen and compare with the state in memory.
	compactions := 0
	last := size()
	afterOp := func() {
		t.Helper()
		if now := size(); now >= last {
			last = now
			return
		}
		compactions++
		next, pending := w.Next(qc.NonceKey{}), w.Pending()
		w.Close()
		w = openWallet(t, path, client.WithCompactAt(1024))
		if w.Next(qc.NonceKey{}) != next || len(w.Pending()) != len(pending) {
			t.Fatalf("compaction %d: next %d, %d pending; before %d, %d", compactions, w.Next(qc.NonceKey{}), len(w.Pending()), next, len(pending))
		}
		for i, p := range w.Pending() {
			if p.Nonce != pending[i].Nonce || !bytes.Equal(p.Request, pending[i].Request) {
				t.Fatalf("compaction %d: pending %d %q, before %d %q", compactions, p.Nonce, p.Request, pending[i].Nonce, pending[i].Request)
			}
		}
		last = size()
	}
	want := map[uint64][]byte{} // the pending set: nonce → request (nil: a gap)
	for i := range 150 {
		n := reserve(t, w, qc.NonceKey{})
		afterOp()
		if i%7 == 3 {
			want[n] = nil // a gap
			continue
		}
		req := []byte(fmt.Sprintf("request-%d-%s", n, bytes.Repeat([]byte{'x'}, 40)))
		if err := w.Record(qc.NonceKey{}, n, req); err != nil {
			t.Fatal(err)
		}
		afterOp()
		if i%5 == 0 {
			want[n] = req // left pending
			continue
		}
		if err := w.Done(qc.NonceKey{}, n); err != nil {
			t.Fatal(err)
		}
		afterOp()
	}
	if compactions < 3 {
		t.Fatalf("only %d compactions", compactions)
	}
	check := func(w *client.Wallet) {
		t.Helper()
		got := pendingMap(w, qc.NonceKey{})
		if w.Next(qc.NonceKey{}) != 150 || len(got) != len(want) {
			t.Fatalf("next %d, %d pending, want 150 and %d", w.Next(qc.NonceKey{}), len(got), len(want))
		}
		for n, req := range want {
			if r, ok := got[n]; !ok || !bytes.Equal(r, req) {
				t.Fatalf("pending %d: %q (listed %v), want %q", n, r, ok, req)
			}
		}
	}
	check(w)
	// Uncompacted, the records take ~20 kB; the live state ~3 kB.
	if s := size(); s > 8192 {
		t.Fatalf("journal is %d bytes after compaction", s)
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left: %v", err)
	}
	w.Close()
	w = openWallet(t, path, client.WithCompactAt(1024))
	check(w)
	// A compaction that crashed before its rename leaves only a stale
	// temporary file.
	if err := os.WriteFile(path+".tmp", []byte("half written"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.Close()
	w = openWallet(t, path)
	check(w)
}

// TestWalletRelease: a released nonce loses its recorded request, durably,
// and the next payment built for its key takes it with new bytes; a nonce
// that is not pending cannot be released.
func TestWalletRelease(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alice.wallet")
	w := openWallet(t, path)
	for range 2 {
		reserve(t, w, qc.NonceKey{})
	}
	if err := w.Record(qc.NonceKey{}, 0, []byte("refused")); err != nil {
		t.Fatal(err)
	}
	if err := w.Record(qc.NonceKey{}, 1, []byte("kept")); err != nil {
		t.Fatal(err)
	}
	if err := w.Release(qc.NonceKey{}, 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Release(qc.NonceKey{}, 7); !errors.Is(err, client.ErrNotReserved) {
		t.Fatalf("release of an unreserved nonce: %v", err)
	}
	w.Close()
	w = openWallet(t, path)
	got := pendingMap(w, qc.NonceKey{})
	if r, ok := got[0]; !ok || r != nil || string(got[1]) != "kept" {
		t.Fatalf("after reopen: %v", got)
	}
	if err := w.Record(qc.NonceKey{}, 0, []byte("second")); err != nil {
		t.Fatalf("recording a new request for the released nonce: %v", err)
	}
	w.Close()
	w = openWallet(t, path)
	if got := pendingMap(w, qc.NonceKey{}); string(got[0]) != "second" || w.Next(qc.NonceKey{}) != 2 {
		t.Fatalf("after the second reopen: %v, next %d", got, w.Next(qc.NonceKey{}))
	}
}
