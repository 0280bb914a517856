package bulletin

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type fixture struct {
	committee *qc.Committee
	signers   []*qc.Signer
}

func newFixture(t testing.TB, n int) *fixture {
	t.Helper()
	f := &fixture{}
	d := qc.Domain{ChainID: 1337, Epoch: 1}
	var members []qc.Member
	for i := range n {
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = byte(i + 1)
		s := qc.NewSigner(ed25519.NewKeyFromSeed(seed), fmt.Sprintf("v%d", i), d)
		f.signers = append(f.signers, s)
		members = append(members, qc.Member{Name: s.Name(), ID: s.ID()})
	}
	var err error
	if f.committee, err = qc.NewCommittee(d, members); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) board(t testing.TB, cfg Config, self int) *Board {
	t.Helper()
	return f.boardPublishing(t, cfg, self, nil)
}

// boardPublishing is board with a QC publisher.
func (f *fixture) boardPublishing(t testing.TB, cfg Config, self int, pub QCPublisher) *Board {
	t.Helper()
	var id qc.ValidatorID
	if self >= 0 {
		id = f.signers[self].ID()
	}
	b, err := New(cfg, f.committee, id, pub, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Stop(context.Background()) })
	return b
}

func effects(sender, recipient byte, seq uint64) qc.Effects {
	return qc.Effects{Sender: qc.Address{sender}, Recipient: qc.Address{recipient}, Amount: 5, Asset: qc.Address{0x20}, NonceSeq: seq}
}

func txHash(b byte, seq uint64) qc.Hash { return qc.Hash{b, byte(seq), byte(seq >> 8)} }

func TestQCFormsOnceAtQuorum(t *testing.T) {
	f := newFixture(t, 4)
	b := f.board(t, DefaultConfig(), 0)
	sub := b.Subscribe(nil)
	defer sub.Close()
	e, h := effects(1, 2, 0), txHash(1, 0)

	if r := b.AddCertificate(f.signers[0].Sign(h, e, 1)); !r.Added || r.Formed != nil {
		t.Fatalf("first: %+v", r)
	}
	if r := b.AddCertificate(f.signers[0].Sign(h, e, 1)); r.Added {
		t.Fatal("duplicate certificate added")
	}
	if r := b.AddCertificate(f.signers[1].Sign(h, e, 1)); r.Formed != nil {
		t.Fatal("QC formed below quorum")
	}
	r := b.AddCertificate(f.signers[2].Sign(h, e, 1))
	if r.Formed == nil {
		t.Fatal("no QC at quorum")
	}
	if err := f.committee.VerifyQC(r.Formed); err != nil {
		t.Fatal(err)
	}
	if r := b.AddCertificate(f.signers[3].Sign(h, e, 1)); r.Formed != nil || !r.Added {
		t.Fatalf("fourth certificate: %+v", r)
	}
	got, ok := b.QC(h)
	if !ok || got.Hash != r.Formed.Hash {
		t.Fatal("board does not hold the formed QC")
	}
	st, _ := b.Status(h)
	if len(st.Certs) != 4 || st.Stage != fastpayv1.TxLifecycleUpdate_CERTIFIED {
		t.Fatalf("status %+v", st)
	}
	// Events: 3 certificates, QC, CERTIFIED, 4th certificate.
	var kinds []EventKind
	for i := range 6 {
		ev := <-sub.C()
		if ev.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d", i, ev.Seq)
		}
		kinds = append(kinds, ev.Kind)
	}
	want := []EventKind{EventCertificate, EventCertificate, EventCertificate, EventQC, EventLifecycle, EventCertificate}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", kinds, want)
	}
}

func TestEquivocationDetectedAndNotCountedTwice(t *testing.T) {
	f := newFixture(t, 4)
	b := f.board(t, DefaultConfig(), 0)
	byz := f.signers[3]
	e1, e2 := effects(1, 2, 0), effects(1, 3, 0) // same sender and nonce, other recipient
	h1, h2 := txHash(1, 0), txHash(2, 0)
	if r := b.AddCertificate(byz.Sign(h1, e1, 1)); r.Evidence != nil {
		t.Fatal("evidence on first certificate")
	}
	r := b.AddCertificate(byz.Sign(h2, e2, 1))
	if r.Evidence == nil {
		t.Fatal("no evidence for a second transaction on one nonce")
	}
	if err := f.committee.VerifyEquivocation(r.Evidence); err != nil {
		t.Fatalf("evidence does not verify: %v", err)
	}
	if len(b.Evidence()) != 1 {
		t.Fatalf("evidence list %d", len(b.Evidence()))
	}
	// The same signer with other effects for one tx hash counts at most once
	// per QC: two certificates from byz plus one honest do not make a quorum.
	e1b := e1
	e1b.Amount++
	b.AddCertificate(byz.Sign(h1, e1b, 2))
	if r := b.AddCertificate(f.signers[0].Sign(h1, e1, 1)); r.Formed != nil {
		t.Fatal("QC formed counting one signer twice")
	}
}

func TestQueries(t *testing.T) {
	f := newFixture(t, 4)
	b := f.board(t, DefaultConfig(), 0)
	// 30 transactions from sender 1 to recipients 2 and 3, three certificates each.
	for seq := range uint64(30) {
		e := effects(1, byte(2+seq%2), seq)
		for _, s := range f.signers[:3] {
			b.AddCertificate(s.Sign(txHash(1, seq), e, 1000+seq))
		}
	}
	// Paging through everything returns each certificate exactly once.
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("paging did not end")
		}
		p, err := b.Query(Query{Limit: 7, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range p.Certs {
			k := fmt.Sprint(c.TxHash, c.Signer)
			if seen[k] {
				t.Fatalf("certificate %s returned twice", k)
			}
			seen[k] = true
		}
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	if len(seen) != 90 {
		t.Fatalf("paged %d certificates, want 90", len(seen))
	}
	// By address: recipient 3 got the odd nonces.
	addr := qc.Address{3}
	p, _ := b.Query(Query{Address: &addr})
	if len(p.Certs) != 45 || len(p.QCs) != 15 {
		t.Fatalf("by recipient: %d certs %d qcs", len(p.Certs), len(p.QCs))
	}
	// By tx hash, with a limit and cursor.
	h := txHash(1, 4)
	p, _ = b.Query(Query{TxHash: &h, Limit: 2})
	if len(p.Certs) != 2 || p.NextCursor == "" || len(p.QCs) != 1 {
		t.Fatalf("by tx: %+v", p)
	}
	p2, _ := b.Query(Query{TxHash: &h, Limit: 2, Cursor: p.NextCursor})
	if len(p2.Certs) != 1 || p2.NextCursor != "" {
		t.Fatalf("by tx, second page: %+v", p2)
	}
	// Since: created at or after 1020 → nonces 20..29.
	p, _ = b.Query(Query{SinceUnixMillis: 1020})
	if len(p.Certs) != 30 {
		t.Fatalf("since: %d", len(p.Certs))
	}
	if _, err := b.Query(Query{Cursor: "!!"}); err != ErrBadCursor {
		t.Fatalf("bad cursor: %v", err)
	}
}

func TestBoundedByMaxTxs(t *testing.T) {
	f := newFixture(t, 4)
	cfg := DefaultConfig()
	cfg.MaxTxs = 10
	b := f.board(t, cfg, 0)
	for seq := range uint64(100) {
		b.AddCertificate(f.signers[0].Sign(txHash(byte(seq), seq), effects(byte(seq), 200, seq), 1))
	}
	if b.txs.Len() != 10 {
		t.Fatalf("%d transactions kept", b.txs.Len())
	}
	b.mu.Lock()
	addrs := len(b.byAddress)
	b.mu.Unlock()
	if addrs != 11 { // 10 senders + the shared recipient
		t.Fatalf("address index has %d entries after eviction", addrs)
	}
}

type recordingPublisher struct {
	mu  sync.Mutex
	qcs []*qc.QC
}

func (p *recordingPublisher) PublishQC(_ context.Context, q *qc.QC) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.qcs = append(p.qcs, q)
	return nil
}

func (p *recordingPublisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.qcs)
}

// TestPublishStagger: only the first-ranked node publishes at once; a node
// that receives a QC from the mesh during its delay stays quiet.
func TestPublishStagger(t *testing.T) {
	f := newFixture(t, 4)
	cfg := DefaultConfig()
	cfg.PublishStep = time.Hour // ranked nodes never reach their turn in this test
	cfg.PublishStepMax = time.Hour
	e, h := effects(1, 2, 0), txHash(9, 0)

	publishers := make([]*recordingPublisher, 4)
	boards := make([]*Board, 4)
	for i := range 4 {
		publishers[i] = &recordingPublisher{}
		boards[i] = f.boardPublishing(t, cfg, i, publishers[i])
	}
	for _, b := range boards {
		for _, s := range f.signers[:3] {
			b.AddCertificate(s.Sign(h, e, 1))
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	total := 0
	for time.Now().Before(deadline) {
		total = 0
		for _, p := range publishers {
			total += p.count()
		}
		if total > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if total != 1 {
		t.Fatalf("%d nodes published at once, want exactly 1", total)
	}

	// A short step: a ranked node that already received the QC skips.
	cfg.PublishStep = 20 * time.Millisecond
	pub := &recordingPublisher{}
	late := f.boardPublishing(t, cfg, 0, pub)
	h2 := qc.Hash{byte(late.publishRank(qc.Hash{}) + 1)} // any tx where rank > 0
	for late.publishRank(h2) == 0 {
		h2[0]++
	}
	var formed *qc.QC
	for _, s := range f.signers[:3] {
		if r := late.AddCertificate(s.Sign(h2, e, 1)); r.Formed != nil {
			formed = r.Formed
		}
	}
	late.AddQC(formed) // as if it arrived from the mesh
	skipped := late.metrics.qcs.WithLabelValues("publish_skipped")
	for deadline := time.Now().Add(5 * time.Second); testutil.ToFloat64(skipped) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the delayed publication never ran")
		}
		time.Sleep(time.Millisecond)
	}
	if pub.count() != 0 {
		t.Fatal("published although the mesh already delivered the QC")
	}
}

func TestSubscriptionCloseWhileEmitting(t *testing.T) {
	f := newFixture(t, 4)
	b := f.board(t, DefaultConfig(), 0)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for seq := range uint64(500) {
			b.AddCertificate(f.signers[0].Sign(txHash(7, seq), effects(7, 8, seq), 1))
		}
	}()
	for range 50 {
		s := b.Subscribe(func(e *Event) bool { return e.Kind == EventCertificate })
		s.Close()
	}
	wg.Wait()
}

func TestConfigValidate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxPageSize = 0
	if err := cfg.Validate(); err == nil {
		t.Fatal("zero MaxPageSize accepted")
	}
}

// TestSubscribeTx: a per-transaction subscription sees that transaction's
// events only, and its small buffer still holds a whole life: every
// member's certificate, the QC and the stages, unread.
func TestSubscribeTx(t *testing.T) {
	f := newFixture(t, 7)
	b := f.board(t, DefaultConfig(), 0)
	e, h := effects(1, 2, 0), txHash(1, 0)
	other := txHash(9, 0)
	sub := b.SubscribeTx(h, nil)
	defer sub.Close()
	qcOnly := b.SubscribeTx(h, func(ev *Event) bool { return ev.Kind == EventQC })
	defer qcOnly.Close()

	for _, s := range f.signers {
		b.AddCertificate(s.Sign(other, effects(9, 2, 0), 1))
		b.AddCertificate(s.Sign(h, e, 1))
	}
	b.SetStage(h, fastpayv1.TxLifecycleUpdate_QUEUED_ONCHAIN, 0)
	b.SetStage(h, fastpayv1.TxLifecycleUpdate_INCLUDED, 12)
	b.SetStage(h, fastpayv1.TxLifecycleUpdate_FINALIZED, 12)

	var kinds []EventKind
	for len(kinds) < 20 {
		select {
		case ev := <-sub.C():
			if ev.TxHash != h {
				t.Fatalf("event of another transaction %s", ev.TxHash)
			}
			kinds = append(kinds, ev.Kind)
			continue
		default:
		}
		break
	}
	// 7 certificates, QC, CERTIFIED, three settlement stages.
	if len(kinds) != 12 || sub.Dropped() != 0 {
		t.Fatalf("got %d events %v (%d dropped), want 12, none dropped", len(kinds), kinds, sub.Dropped())
	}
	if ev := <-qcOnly.C(); ev.Kind != EventQC || ev.TxHash != h {
		t.Fatalf("qc-only subscription got %+v", ev)
	}
	select {
	case ev := <-qcOnly.C():
		t.Fatalf("qc-only subscription got a second event %+v", ev)
	default:
	}
}

// TestTimeToQCObserved: the time from a transaction's first certificate to
// its QC is observed once per QC, under the QC's source.
func TestTimeToQCObserved(t *testing.T) {
	f := newFixture(t, 4)
	b := f.board(t, DefaultConfig(), 0)
	e := effects(1, 2, 0)
	formedTx, receivedTx := txHash(1, 0), txHash(1, 1)
	var formed *qc.QC
	for _, s := range f.signers {
		if r := b.AddCertificate(s.Sign(formedTx, e, 1)); r.Formed != nil {
			formed = r.Formed
		}
	}
	if formed == nil {
		t.Fatal("no QC formed")
	}
	// A QC from the mesh for a transaction seen before through one
	// certificate, and a duplicate of the formed QC, which is not counted.
	other := f.board(t, DefaultConfig(), 1)
	var fromMesh *qc.QC
	e1 := effects(1, 2, 1)
	b.AddCertificate(f.signers[3].Sign(receivedTx, e1, 1))
	for _, s := range f.signers[:3] {
		if r := other.AddCertificate(s.Sign(receivedTx, e1, 1)); r.Formed != nil {
			fromMesh = r.Formed
		}
	}
	b.AddQC(fromMesh)
	b.AddQC(formed)
	for _, tc := range []struct {
		source string
		want   int
	}{{"formed", 1}, {"received", 1}} {
		var m dto.Metric
		if err := b.metrics.timeToQC.WithLabelValues(tc.source).(prometheus.Histogram).Write(&m); err != nil {
			t.Fatal(err)
		}
		if n := int(m.GetHistogram().GetSampleCount()); n != tc.want {
			t.Errorf("time to QC %s: %d observations, want %d", tc.source, n, tc.want)
		}
	}
}
