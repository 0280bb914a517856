package safety

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"math/big"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// The fixture: a committee of four (v3 Byzantine), three accounts and a
// short run that is safe, built with real signatures and real QCs.

var testDomain = qc.Domain{ChainID: 1337, Epoch: 1}

func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("safety-test-" + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func testAddr(name string) qc.Address {
	h := sha256.Sum256([]byte("account-" + name))
	var a qc.Address
	copy(a[:], h[:20])
	return a
}

var (
	alice = testAddr("alice")
	bob   = testAddr("bob")
	carol = testAddr("carol")
)

// fixture is a history and run plus the signers that made them, so
// mutators can sign more.
type fixture struct {
	h       *History
	run     *Run
	signers map[string]*qc.Signer // v0..v3
	t0      time.Time
	// named QCs and transactions of the run
	qcs map[string]*qc.QC
	txs map[string]qc.Hash
}

func (f *fixture) signer(name string) *qc.Signer { return f.signers[name] }

// effects is a payment of amount from sender to recipient at nonce seq.
func effects(sender, recipient qc.Address, amount, seq uint64) qc.Effects {
	return qc.Effects{Sender: sender, Recipient: recipient, Amount: amount, Asset: DefaultToken, NonceSeq: seq}
}

// txHash makes a distinct tx hash for a label (the checker never needs
// the transaction bytes).
func txHash(label string) qc.Hash {
	return qc.TxHash(qc.TxHashInput{ChainID: testDomain.ChainID, TempoTx: []byte(label), Expiry: qc.Expiry{Value: 1_000_000}})
}

// sign has each named validator certify (tx, e) at ms.
func (f *fixture) sign(tx qc.Hash, e qc.Effects, ms uint64, names ...string) []qc.Certificate {
	out := make([]qc.Certificate, len(names))
	for i, n := range names {
		out[i] = f.signer(n).Sign(tx, e, ms)
	}
	return out
}

// buildQC assembles a real QC from certificates.
func buildQC(t testing.TB, c *qc.Committee, certs []qc.Certificate) *qc.QC {
	t.Helper()
	a := qc.NewAssembler(c, certs[0].TxHash, certs[0].EffectsHash)
	for _, cert := range certs {
		if _, err := a.Add(cert); err != nil {
			t.Fatalf("assemble QC: %v", err)
		}
	}
	q, err := a.Build()
	if err != nil {
		t.Fatalf("build QC: %v", err)
	}
	return q
}

func qcProto(t testing.TB, q *qc.QC) []byte {
	t.Helper()
	b, err := proto.Marshal(fastpayv1.NewQuorumCertificate(q))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func millis(t time.Time) uint64 { return uint64(t.UnixMilli()) }

// newFixture builds a safe run:
//   - pay1: alice→bob 10 (nonce 0), QC by v0 v1 v2, finalized;
//   - pay2: bob→carol 12 (nonce 0), chained on pay1, QC by v1 v2 v3, finalized;
//   - a double spend by carol at nonce 0: dsA carol→alice 5 (QC by v0 v1 v3,
//     finalized) and dsB carol→bob 5 (signed by v2 and by the Byzantine v3,
//     no QC); v0 reported v3's equivocation;
//   - v3 also served a certificate with a corrupted signature;
//   - stranded: alice→carol 1 (nonce 1) accepted by v0 while it sat in a
//     minority partition (sides v0+v1 | v2+v3, from t0+10 s to t0+20 s),
//     no QC;
//   - a light client accepted pay1's and pay2's QCs;
//   - every payment records native fee terms (testFee, the dev chain's
//     gas_limit × max_fee_per_gas), and every payer holds 1 ETH natively.
func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{signers: make(map[string]*qc.Signer), t0: time.UnixMilli(1_800_000_000_000), qcs: map[string]*qc.QC{}, txs: map[string]qc.Hash{}}
	info := CommitteeInfo{ChainID: testDomain.ChainID, Epoch: testDomain.Epoch}
	for i := range 4 {
		name := fmt.Sprintf("v%d", i)
		s := qc.NewSigner(testKey(name), name, testDomain)
		f.signers[name] = s
		info.Members = append(info.Members, MemberInfo{Name: name, ID: s.ID(), Honest: i != 3})
	}
	h := NewHistory(info, DefaultToken)
	h.CollectedAt = f.t0.Add(time.Minute)
	f.h = h
	committee, err := h.QCommittee()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		name := fmt.Sprintf("v%d", i)
		h.AddSource(Source{Name: name, Kind: SourceSidecar, URL: "http://" + name, Honest: i != 3, ID: f.signer(name).ID(), Reachable: true})
	}
	at := func(d time.Duration) time.Time { return f.t0.Add(d) }

	// The certificates every board holds, and QCs.
	addAll := func(certs []qc.Certificate) {
		for _, c := range certs {
			for _, src := range []string{"v0", "v1", "v2", "v3"} {
				h.AddCertificate(src, c)
			}
		}
	}
	addQC := func(name string, tx qc.Hash, certs []qc.Certificate, formed time.Time) *qc.QC {
		q := buildQC(t, committee, certs)
		for _, src := range []string{"v0", "v1", "v2"} {
			h.AddQC(src, q)
			h.AddStatus(tx, NodeStatus{Node: src, Stage: "FINALIZED", BlockHeight: 20, CertCount: len(certs), QCHash: q.Hash,
				QCUnixMillis: millis(formed), FirstSeenUnixMillis: millis(formed.Add(-50 * time.Millisecond))})
		}
		f.qcs[name] = q
		return q
	}

	pay1 := txHash("pay1")
	c1 := f.sign(pay1, effects(alice, bob, 10, 0), millis(at(time.Second)), "v0", "v1", "v2")
	addAll(c1)
	q1 := addQC("pay1", pay1, c1, at(time.Second+40*time.Millisecond))

	pay2 := txHash("pay2")
	c2 := f.sign(pay2, effects(bob, carol, 12, 0), millis(at(2*time.Second)), "v1", "v2", "v3")
	addAll(c2)
	q2 := addQC("pay2", pay2, c2, at(2*time.Second+60*time.Millisecond))

	dsA, dsB := txHash("dsA"), txHash("dsB")
	eA, eB := effects(carol, alice, 5, 0), effects(carol, bob, 5, 0)
	cA := f.sign(dsA, eA, millis(at(3*time.Second)), "v0", "v1", "v3")
	cB := f.sign(dsB, eB, millis(at(3*time.Second)), "v2", "v3")
	addAll(cA)
	addAll(cB)
	addQC("dsA", dsA, cA, at(3*time.Second+30*time.Millisecond))
	h.AddStatus(dsB, NodeStatus{Node: "v2", Stage: "ACCEPTED", CertCount: 2})
	h.AddEvidence("v0", qc.Equivocation{First: cA[2], Second: cB[1]})

	bad := f.signer("v3").Sign(pay1, effects(alice, bob, 10, 0), millis(at(time.Second)))
	bad.Signature[0] ^= 1
	h.AddCertificate("v3", bad)

	stranded := txHash("stranded")
	h.AddCertificate("v0", f.signer("v0").Sign(stranded, effects(alice, carol, 1, 1), millis(at(12*time.Second))))
	h.AddStatus(stranded, NodeStatus{Node: "v0", Stage: "ACCEPTED", CertCount: 1})

	h.AddLightClientQC("lc1", qcProto(t, q1))
	h.AddLightClientQC("lc1", qcProto(t, q2))
	h.AddSource(Source{Name: "lc1", Kind: SourceLightClient, Honest: true, Reachable: true, QCs: 2})

	h.InitialBalances = map[qc.Address]*big.Int{alice: big.NewInt(100), bob: big.NewInt(5), carol: big.NewInt(20)}
	h.InitialFeeBalances = map[qc.Address]map[qc.Address]*big.Int{NativeToken: {alice: ether(1), bob: ether(1), carol: ether(1)}}
	h.Committee.SettlementMargin = 10 * time.Second

	f.txs = map[string]qc.Hash{"pay1": pay1, "pay2": pay2, "dsA": dsA, "dsB": dsB, "stranded": stranded}
	f.run = &Run{
		Phases: []Phase{
			{Name: "baseline", Start: at(0), End: at(10 * time.Second)},
			{Name: "partition:halves", Start: at(10 * time.Second), End: at(20 * time.Second), NoQuorum: true,
				Sides: [][]string{{"v0", "v1"}, {"v2", "v3"}}},
			{Name: "after:partition:halves", Start: at(20 * time.Second), End: at(30 * time.Second)},
		},
		Payments: []Payment{
			{Name: "pay1", TxHash: pay1, Sender: alice, SubmittedTo: "v0", QuorumSide: true, Phase: "baseline",
				Sent: at(time.Second - 20*time.Millisecond), QCAt: at(time.Second + 50*time.Millisecond), Outcome: OutcomeCertified},
			{Name: "pay2", TxHash: pay2, Sender: bob, ParentTx: pay1, SubmittedTo: "v1", QuorumSide: true, Phase: "baseline",
				Sent: at(2*time.Second - 20*time.Millisecond), QCAt: at(2*time.Second + 70*time.Millisecond), Outcome: OutcomeCertified},
			{Name: "dsA", TxHash: dsA, Sender: carol, Conflicting: true, SubmittedTo: "v0", QuorumSide: true, Phase: "baseline",
				Sent: at(3*time.Second - 10*time.Millisecond), QCAt: at(3*time.Second + 40*time.Millisecond), Outcome: OutcomeCertified},
			{Name: "dsB", TxHash: dsB, Sender: carol, Conflicting: true, SubmittedTo: "v2", QuorumSide: true, Phase: "baseline",
				Sent: at(3*time.Second - 10*time.Millisecond), Outcome: OutcomeCertified},
			{Name: "dsB-retry", TxHash: dsB, Sender: carol, Conflicting: true, SubmittedTo: "v1", QuorumSide: true, Phase: "baseline",
				Sent: at(4 * time.Second), Outcome: "rejected:EQUIVOCATION"},
			{Name: "stranded", TxHash: stranded, Sender: alice, SubmittedTo: "v0", QuorumSide: false, Phase: "partition:halves",
				Sent: at(12 * time.Second), Outcome: OutcomeCertified},
			{Name: "unreachable", Sender: bob, SubmittedTo: "v3", QuorumSide: true, Phase: "after:partition:halves",
				Sent: at(21 * time.Second), Outcome: "error:connection refused"},
		},
	}
	for i := range f.run.Payments {
		if p := &f.run.Payments[i]; !p.TxHash.IsZero() {
			p.Fee = nativeFee(p.Sender)
		}
	}
	return f
}

// testFee is the maximum fee of a dev-chain payment in wei: gas limit
// 250,000 × max fee per gas 100 gwei.
var testFee = big.NewInt(250_000 * 100_000_000_000)

// nativeFee is the fee terms of an EIP-1559 payment on a chain with
// native gas: the sender pays at most testFee wei.
func nativeFee(sender qc.Address) *PaymentFee {
	return &PaymentFee{Payer: sender, Token: NativeToken, Max: new(big.Int).Set(testFee)}
}

func ether(n int64) *big.Int { return new(big.Int).Mul(big.NewInt(n), big.NewInt(1e18)) }
