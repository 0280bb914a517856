package bulletin

import (
	"errors"
	"slices"
	"testing"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// TestPayments: the board lists the payments it holds newest first, in
// pages that chain by cursor; a transaction known only by a stage is not a
// payment, an evicted one is not listed, and each listed payment carries
// its certificates, QC, stage and settlement failure.
func TestPayments(t *testing.T) {
	f := newFixture(t, 4)
	cfg := DefaultConfig()
	cfg.MaxTxs = 6
	b := f.board(t, cfg, 0)

	// Eight payments in order (the first two are evicted by the last two),
	// and one transaction known only from a settlement stage.
	for i := range 8 {
		h, e := txHash(1, uint64(i)), effects(1, 2, uint64(i))
		for s := range 3 {
			b.AddCertificate(f.signers[s].Sign(h, e, uint64(100+i)))
		}
	}
	b.SetStage(txHash(9, 0), fastpayv1.TxLifecycleUpdate_INCLUDED, 12) // evicts payment 2
	b.SetStage(txHash(1, 7), fastpayv1.TxLifecycleUpdate_INCLUDED, 11)
	b.ReportSettlementFailure(txHash(1, 6), "reverted")

	list := func(limit int) []qc.Hash {
		t.Helper()
		var got []qc.Hash
		cursor := ""
		for range 20 {
			page, err := b.Payments(PaymentsQuery{Limit: limit, Cursor: cursor})
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Payments) > limit {
				t.Fatalf("page of %d with limit %d", len(page.Payments), limit)
			}
			for _, p := range page.Payments {
				got = append(got, p.TxHash)
			}
			if cursor = page.NextCursor; cursor == "" {
				return got
			}
		}
		t.Fatal("pages never end")
		return nil
	}
	want := []qc.Hash{txHash(1, 7), txHash(1, 6), txHash(1, 5), txHash(1, 4), txHash(1, 3)}
	for _, limit := range []int{1, 2, 5, 100} {
		if got := list(limit); !slices.Equal(got, want) {
			t.Errorf("limit %d: got %x, want %x", limit, got, want)
		}
	}

	page, err := b.Payments(PaymentsQuery{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	newest, second := page.Payments[0], page.Payments[1]
	if len(newest.Certs) != 3 || newest.QC == nil || newest.Stage != fastpayv1.TxLifecycleUpdate_INCLUDED ||
		newest.BlockHeight != 11 || !newest.HasEffects || newest.Effects != effects(1, 2, 7) || newest.QCAt.IsZero() {
		t.Errorf("newest payment: %+v", newest)
	}
	if second.SettlementFailure != "reverted" || second.Stage != fastpayv1.TxLifecycleUpdate_CERTIFIED {
		t.Errorf("failed payment: %+v", second)
	}

	// A new payment does not shift the pages that follow an old cursor.
	b.AddCertificate(f.signers[0].Sign(txHash(2, 0), effects(3, 4, 0), 200))
	next, err := b.Payments(PaymentsQuery{Limit: 2, Cursor: page.NextCursor})
	if err != nil || len(next.Payments) != 2 || next.Payments[0].TxHash != txHash(1, 5) {
		t.Errorf("page after the cursor: %+v, %v", next.Payments, err)
	}

	for _, cursor := range []string{"0", "zzzzzzzzzzzzz", "not base36!"} {
		if _, err := b.Payments(PaymentsQuery{Cursor: cursor}); !errors.Is(err, ErrBadCursor) {
			t.Errorf("cursor %q: %v, want ErrBadCursor", cursor, err)
		}
	}
}

// TestPaymentsLogBounded: the creation log stays within twice MaxTxs.
func TestPaymentsLogBounded(t *testing.T) {
	f := newFixture(t, 4)
	cfg := DefaultConfig()
	cfg.MaxTxs = 10
	b := f.board(t, cfg, 0)
	for i := range 1000 {
		b.AddCertificate(f.signers[0].Sign(txHash(1, uint64(i)), effects(1, 2, uint64(i)), 1))
	}
	b.mu.Lock()
	n := len(b.created)
	b.mu.Unlock()
	if n > 2*cfg.MaxTxs {
		t.Fatalf("creation log holds %d slots, want at most %d", n, 2*cfg.MaxTxs)
	}
	page, err := b.Payments(PaymentsQuery{})
	if err != nil || len(page.Payments) != cfg.MaxTxs || page.Payments[0].TxHash != txHash(1, 999) {
		t.Fatalf("payments after many: %d, %v", len(page.Payments), err)
	}
}
