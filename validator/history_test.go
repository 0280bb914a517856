package validator

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
)

// TestHistoryExportImport: an export carries the guards and cursors a
// validator signs by; a damaged or truncated file writes nothing; a store
// with history is never merged into; the imported validator refuses a
// conflicting payment; another key refuses to start on the history.
func TestHistoryExportImport(t *testing.T) {
	c := newCluster(t, 4)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	open := func(dir string) *Store {
		t.Helper()
		s, err := OpenStore(dir, DefaultGroupCommitWindow, logger)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}

	src := open(t.TempDir())
	v, err := New(DefaultConfig(), c.signers[0], c.committee, c.chain, src, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	for n := range uint64(2) {
		if _, err := v.Submit(ctx, pay(aliceKey, n, bob, dollars(1)).request(t)); err != nil {
			t.Fatal(err)
		}
	}
	var file bytes.Buffer
	stats, err := src.ExportHistory(&file)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Signatures != 2 || stats.Cursors != 1 || len(stats.Signers) != 1 || stats.Signers[0] != c.signers[0].ID() {
		t.Fatalf("export stats %+v", stats)
	}
	data := file.Bytes()

	flipped := bytes.Clone(data)
	flipped[len(flipped)/2] ^= 1
	for name, bad := range map[string][]byte{
		"empty":     nil,
		"truncated": data[:len(data)-1],
		"no digest": data[:len(data)-32],
		"flipped":   flipped,
		"trailing":  append(bytes.Clone(data), 0),
		"not one":   []byte(strings.Repeat("x", 100)),
	} {
		dst := open(t.TempDir())
		if _, err := dst.ImportHistory(bytes.NewReader(bad)); !errors.Is(err, ErrHistoryFile) {
			t.Errorf("%s: %v, want ErrHistoryFile", name, err)
		}
		if has, err := dst.HasHistory(); err != nil || has {
			t.Errorf("%s: the refused import wrote history (%v, %v)", name, has, err)
		}
	}

	if _, err := src.ImportHistory(bytes.NewReader(data)); !errors.Is(err, ErrHistoryExists) {
		t.Fatalf("import into a store with history: %v", err)
	}

	dstDir := t.TempDir()
	dst := open(dstDir)
	if got, err := dst.ImportHistory(bytes.NewReader(data)); err != nil || got.Signatures != 2 {
		t.Fatalf("import: %+v %v", got, err)
	}
	moved, err := New(DefaultConfig(), c.signers[0], c.committee, c.chain, dst, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	_, err = moved.Submit(ctx, pay(aliceKey, 0, carol, dollars(2)).request(t))
	wantReject(t, err, fastpayv1.RejectCode_EQUIVOCATION)
	if _, err := moved.Submit(ctx, pay(aliceKey, 2, carol, dollars(2)).request(t)); err != nil {
		t.Fatalf("the next nonce after the imported cursor: %v", err)
	}
	// The same payment on a validator without the history is signed.
	if _, err := c.validator(t, 0, "").Submit(ctx, pay(aliceKey, 0, carol, dollars(2)).request(t)); err != nil {
		t.Fatalf("control without history: %v", err)
	}

	if _, err := New(DefaultConfig(), c.signers[1], c.committee, c.chain, dst, nil, logger); err == nil || !strings.Contains(err.Error(), "another validator's signing history") {
		t.Fatalf("another key on the history: %v", err)
	}
}
