package bulletin

import (
	"crypto/ed25519"
	"reflect"
	"runtime"
	"testing"

	"github.com/allegro-mesh/allegro/qc"
)

// TestCompactEntriesReadBack: whatever the board stores compactly, readers
// get back exactly the certificates and QCs it was given.
func TestCompactEntriesReadBack(t *testing.T) {
	f := newFixture(t, 4)
	d := f.committee.Domain()
	outsider := qc.NewSigner(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)), "outsider", d)
	e := effects(1, 2, 0)
	other := e
	other.Amount++ // the same transaction with other effects: a second variant

	renamed := f.signers[1].Sign(txHash(1, 0), e, 11)
	renamed.SignerName = "not-v1" // the name is not signed: kept as given
	cases := []struct {
		name  string
		certs []qc.Certificate
	}{
		{"members", []qc.Certificate{f.signers[0].Sign(txHash(1, 0), e, 10), f.signers[1].Sign(txHash(1, 0), e, 11)}},
		{"renamed signer", []qc.Certificate{renamed}},
		{"two effects variants", []qc.Certificate{f.signers[2].Sign(txHash(1, 0), e, 12), f.signers[2].Sign(txHash(1, 0), other, 13), f.signers[3].Sign(txHash(1, 0), other, 14)}},
		{"non-member signer", []qc.Certificate{outsider.Sign(txHash(1, 0), e, 15)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := f.board(t, DefaultConfig(), 0)
			for _, c := range tc.certs {
				if r := b.AddCertificate(c); !r.Added {
					t.Fatalf("certificate by %s not added", c.SignerName)
				}
			}
			st, ok := b.Status(txHash(1, 0))
			if !ok || !reflect.DeepEqual(st.Certs, tc.certs) {
				t.Fatalf("status certificates differ:\n got %+v\nwant %+v", st.Certs, tc.certs)
			}
			h := txHash(1, 0)
			page, err := b.Query(Query{TxHash: &h})
			if err != nil || !reflect.DeepEqual(page.Certs, tc.certs) {
				t.Fatalf("query certificates differ (%v):\n got %+v\nwant %+v", err, page.Certs, tc.certs)
			}
			page, err = b.Query(Query{})
			if err != nil || !reflect.DeepEqual(page.Certs, tc.certs) {
				t.Fatalf("log certificates differ (%v):\n got %+v\nwant %+v", err, page.Certs, tc.certs)
			}
		})
	}

	// A QC formed here, one from the mesh whose certificates the board
	// lacks, and one whose certificates differ from the board's copies in
	// unsigned fields: each reads back as given.
	local := f.board(t, DefaultConfig(), 0)
	var formed *qc.QC
	for i, s := range f.signers[:3] {
		if r := local.AddCertificate(s.Sign(txHash(2, 0), e, uint64(20+i))); r.Formed != nil {
			formed = r.Formed
		}
	}
	if formed == nil {
		t.Fatal("no QC formed")
	}
	if got, ok := local.QC(txHash(2, 0)); !ok || !reflect.DeepEqual(got, formed) {
		t.Fatalf("formed QC reads back as %+v, want %+v", got, formed)
	}
	mesh := f.board(t, DefaultConfig(), 1)
	mesh.AddCertificate(f.signers[3].Sign(txHash(2, 0), e, 99))
	mesh.AddCertificate(f.signers[0].Sign(txHash(2, 0), e, 98)) // another creation time than in formed
	if !mesh.AddQC(formed) {
		t.Fatal("mesh QC not added")
	}
	got, ok := mesh.QC(txHash(2, 0))
	if !ok || !reflect.DeepEqual(got, formed) {
		t.Fatalf("mesh QC reads back as %+v, want %+v", got, formed)
	}
	if err := f.committee.VerifyQC(got); err != nil {
		t.Fatalf("read-back QC does not verify: %v", err)
	}
	if st, _ := mesh.Status(txHash(2, 0)); len(st.Certs) != 2 || !reflect.DeepEqual(st.QC, formed) {
		t.Fatalf("mesh status: %d certificates, QC %+v", len(st.Certs), st.QC)
	}
}

// TestEvidenceWindowBounded: the window holds at most EvidenceWindow pairs,
// forgetting the oldest first, and still detects equivocation on the pairs
// it holds.
func TestEvidenceWindowBounded(t *testing.T) {
	f := newFixture(t, 4)
	cfg := DefaultConfig()
	cfg.EvidenceWindow = 3
	b := f.board(t, cfg, 0)
	byz := f.signers[3]
	for seq := range uint64(5) {
		b.AddCertificate(byz.Sign(txHash(1, seq), effects(1, 2, seq), 1))
	}
	if n := b.firstSig.len(); n != 3 {
		t.Fatalf("window holds %d pairs, want 3", n)
	}
	// Nonces 0 and 1 were forgotten; 2, 3 and 4 are held.
	cases := []struct {
		seq      uint64
		evidence bool
	}{{0, false}, {4, true}, {3, true}}
	for _, tc := range cases {
		r := b.AddCertificate(byz.Sign(txHash(2, tc.seq), effects(1, 3, tc.seq), 1))
		if got := r.Evidence != nil; got != tc.evidence {
			t.Errorf("nonce %d: evidence %v, want %v", tc.seq, got, tc.evidence)
		}
		if r.Evidence != nil {
			if err := f.committee.VerifyEquivocation(r.Evidence); err != nil {
				t.Errorf("nonce %d: evidence does not verify: %v", tc.seq, err)
			}
		}
	}
	if n := b.firstSig.len(); n != 3 {
		t.Fatalf("window holds %d pairs after more, want 3", n)
	}
}

// TestLogPagingAcrossTrims: cursors stay valid while the arrival log is
// trimmed; paging returns what is left, in order, each certificate once.
func TestLogPagingAcrossTrims(t *testing.T) {
	f := newFixture(t, 4)
	cfg := DefaultConfig()
	cfg.MaxLog = 8
	b := f.board(t, cfg, 0)
	add := func(from, to uint64) {
		for seq := from; seq < to; seq++ {
			b.AddCertificate(f.signers[0].Sign(txHash(1, seq), effects(1, 2, seq), 1000+seq))
		}
	}
	add(0, 6)
	p, err := b.Query(Query{Limit: 4})
	if err != nil || len(p.Certs) != 4 || p.NextCursor == "" {
		t.Fatalf("first page: %d certificates, cursor %q, %v", len(p.Certs), p.NextCursor, err)
	}
	add(6, 12) // 12 arrivals: the log dropped the oldest quarter twice, keeping 4..11
	var created []uint64
	for cursor := p.NextCursor; ; {
		p, err := b.Query(Query{Limit: 3, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range p.Certs {
			created = append(created, c.CreatedUnixMillis)
		}
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	want := []uint64{1004, 1005, 1006, 1007, 1008, 1009, 1010, 1011}
	if !reflect.DeepEqual(created, want) {
		t.Fatalf("paged %v, want %v", created, want)
	}
	p, _ = b.Query(Query{SinceUnixMillis: 1010})
	if len(p.Certs) != 2 {
		t.Fatalf("since 1010: %d certificates, want 2", len(p.Certs))
	}
}

// TestBoardMemoryPerTransaction: a full board costs what its entries need.
// Each transaction here has four certificates, a QC, four pairs in the
// evidence window and four arrivals: ~2.6 KB, of which the window's
// certificates are 1.3 KB. The bound keeps the compact layout: storing
// every certificate as a qc.Certificate, the QC's again and the window in
// an LRU cache exceeds it (see docs/benchmarks.md).
func TestBoardMemoryPerTransaction(t *testing.T) {
	const txs = 2_000
	f := newFixture(t, 4)
	cfg := DefaultConfig()
	cfg.MaxTxs, cfg.EvidenceWindow, cfg.MaxLog = txs, 4*txs, 4*txs
	certs := make([]qc.Certificate, 0, 4*txs)
	for seq := range uint64(txs) {
		for _, s := range f.signers {
			certs = append(certs, s.Sign(qc.Hash{1, byte(seq), byte(seq >> 8)}, effects(byte(seq%64), 200, seq), 1))
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b := f.board(t, cfg, 0)
	for _, c := range certs {
		b.AddCertificate(c)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if b.txs.Len() != txs {
		t.Fatalf("board holds %d transactions", b.txs.Len())
	}
	perTx := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / txs
	t.Logf("%d bytes per transaction", perTx)
	if perTx > 3_200 {
		t.Fatalf("%d bytes per transaction, want at most 3,200", perTx)
	}
	runtime.KeepAlive(b)
	runtime.KeepAlive(certs)
}
