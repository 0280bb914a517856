package p2p

import (
	"context"
	"errors"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// belowQuorumQC is a well-formed QC with one certificate short of quorum.
func belowQuorumQC(f *fixture, txHash qc.Hash, eff qc.Effects) *qc.QC {
	certs := make([]qc.Certificate, 0, f.committee.Quorum()-1)
	for i := range f.committee.Quorum() - 1 {
		certs = append(certs, f.cert(i, txHash, eff))
	}
	q := &qc.QC{TxHash: txHash, EffectsHash: eff.Hash(), Certs: certs, Threshold: uint32(f.committee.Quorum())}
	q.Hash = qc.ComputeQCHash(q.TxHash, q.EffectsHash, q.Threshold, q.Certs)
	return q
}

// badSignatureQC is a quorum QC with one corrupted signature (and a
// qc_hash recomputed to match, so only the signature check catches it).
func badSignatureQC(t testing.TB, f *fixture, txHash qc.Hash, eff qc.Effects) *qc.QC {
	q := f.qcFrom(t, txHash, eff, 0, 1, 2)
	q.Certs[1].Signature[5] ^= 0xff
	q.Hash = qc.ComputeQCHash(q.TxHash, q.EffectsHash, q.Threshold, q.Certs)
	return q
}

// unitMesh is validator 0 of a 4-member committee, not started: its
// pipelines are driven directly.
type unitMesh struct {
	*node
	f        *fixture
	member   peer.ID // validator 1
	outsider peer.ID
}

func newUnitMesh(t *testing.T, tweak func(*Config)) *unitMesh {
	t.Helper()
	f := newFixture(t, 4)
	cfg := LocalConfig()
	if tweak != nil {
		tweak(&cfg)
	}
	u := &unitMesh{node: newNode(t, cfg, "val-0", f.keys[0], f.committee), f: f}
	var err error
	if u.member, err = PeerIDFromValidatorID(f.signers[1].ID()); err != nil {
		t.Fatal(err)
	}
	if u.outsider, err = peer.IDFromPrivateKey(libp2pKey(t, seededKey(0xEE, 0))); err != nil {
		t.Fatal(err)
	}
	return u
}

// validate runs kind's wrapped pipeline on data as if received from from.
func (u *unitMesh) validate(k TopicKind, topic string, from peer.ID, data []byte, vdata any) (pubsub.ValidationResult, *pubsub.Message) {
	msg := &pubsub.Message{Message: msgOn(topic, data), ReceivedFrom: from, ValidatorData: vdata}
	msg.ID = u.topics.messageID(msg.Message)
	return u.wrap(k, u.pipes.pipeline(k))(context.Background(), from, msg), msg
}

func (u *unitMesh) count(t *testing.T, k TopicKind, v Verdict, stage string) float64 {
	return metricValue(t, u.reg, "allegro_p2p_validations_total", map[string]string{"topic": k.String(), "verdict": v.String(), "stage": stage})
}

func (u *unitMesh) expect(t *testing.T, what string, k TopicKind, topic string, from peer.ID, data []byte, want Verdict, stage string) *pubsub.Message {
	t.Helper()
	before := u.count(t, k, want, stage)
	res, msg := u.validate(k, topic, from, data, nil)
	if res != want.result() {
		t.Errorf("%s: result %v, want %v", what, res, want)
	}
	if got := u.count(t, k, want, stage); got != before+1 {
		t.Errorf("%s: validations_total{%s,%s,%s} went %v -> %v", what, k, want, stage, before, got)
	}
	if (want == Accept) != (msg.ValidatorData != nil) {
		t.Errorf("%s: ValidatorData = %T on %v", what, msg.ValidatorData, want)
	}
	return msg
}

func TestTxPipeline(t *testing.T) {
	u := newUnitMesh(t, func(c *Config) { c.ValidationTimeout = 50 * time.Millisecond })
	req := testRequest(1)
	data := marshal(t, req)

	msg := u.expect(t, "valid", KindTx, u.topics.tx, u.member, data, Accept, stageOK)
	if tx := msg.ValidatorData.(*TxMessage); tx.TxHash != mustTxHash(t, req) {
		t.Error("decoded tx carries the wrong hash")
	}
	u.expect(t, "outsider", KindTx, u.topics.tx, u.outsider, data, Reject, stageMembership)
	u.expect(t, "junk", KindTx, u.topics.tx, u.member, []byte{0xff}, Reject, stageDecode)
	u.expect(t, "oversize", KindTx, u.topics.tx, u.member, make([]byte, MaxTxMessageSize+1), Reject, stageSize)
	other := testRequest(1)
	other.Tx.ChainId.Value = 4217
	u.expect(t, "wrong chain", KindTx, u.topics.tx, u.member, marshal(t, other), Reject, stageDomain)

	var verdict Verdict
	var verr error
	u.RegisterTxValidator(func(ctx context.Context, from peer.ID, tx *TxMessage) (Verdict, error) {
		if from != u.member || tx.TxHash != mustTxHash(t, req) {
			t.Error("stateful func got the wrong sender or tx")
		}
		return verdict, verr
	})
	verdict, verr = Ignore, errors.New("nonce too high")
	u.expect(t, "state ignore", KindTx, u.topics.tx, u.member, data, Ignore, stageState)
	verdict, verr = Reject, errors.New("equivocation")
	u.expect(t, "state reject", KindTx, u.topics.tx, u.member, data, Reject, stageState)
	verdict, verr = Reject, Soft(errors.New("expired"))
	u.expect(t, "soft reject", KindTx, u.topics.tx, u.member, data, Ignore, stageState)
	verdict, verr = Accept, errors.New("contradictory")
	u.expect(t, "accept with error", KindTx, u.topics.tx, u.member, data, Ignore, stageState)
	verdict, verr = Verdict(42), nil
	u.expect(t, "unknown verdict", KindTx, u.topics.tx, u.member, data, Ignore, stageState)

	// A validator that outlives ValidationTimeout (honouring ctx) is
	// ignored, not rejected: the delay is ours.
	u.RegisterTxValidator(func(ctx context.Context, _ peer.ID, _ *TxMessage) (Verdict, error) {
		<-ctx.Done()
		return Reject, ctx.Err()
	})
	u.expect(t, "timeout", KindTx, u.topics.tx, u.member, data, Ignore, stageTimeout)

	u.RegisterTxValidator(func(context.Context, peer.ID, *TxMessage) (Verdict, error) { panic("boom") })
	u.expect(t, "panic", KindTx, u.topics.tx, u.member, data, Reject, stagePanic)
	if got := metricValue(t, u.reg, "allegro_p2p_validator_panics_total", map[string]string{"topic": "tx"}); got != 1 {
		t.Errorf("validator_panics_total = %v", got)
	}

	// A local publish carrying its object skips decoding and the stateful
	// func (which would panic here).
	local := &TxMessage{Request: req, TxHash: mustTxHash(t, req)}
	before := u.count(t, KindTx, Accept, stageLocal)
	if res, msg := u.validate(KindTx, u.topics.tx, u.ID(), data, local); res != pubsub.ValidationAccept || msg.ValidatorData != local {
		t.Errorf("local publish: %v, %v", res, msg.ValidatorData)
	}
	if u.count(t, KindTx, Accept, stageLocal) != before+1 {
		t.Error("local accept not counted")
	}
	u.RegisterTxValidator(nil)
	u.expect(t, "validator removed", KindTx, u.topics.tx, u.member, data, Accept, stageOK)

	st := u.Stats().Tx
	if st.Accepted != 3 || st.Ignored != 5 || st.Rejected != 6 {
		t.Errorf("stats %+v", st)
	}
}

func TestBulletinPipeline(t *testing.T) {
	u := newUnitMesh(t, nil)
	f := u.f
	txHash := mustTxHash(t, testRequest(2))
	eff := testEffects(2, 0x10)

	// Invalid objects first: nothing about them may be remembered.
	cert := f.cert(2, txHash, eff)
	u.expect(t, "cert from outsider", KindBulletin, u.topics.bull, u.outsider, bulletinCert(t, cert), Reject, stageMembership)
	forged := cert
	forged.Signature[0] ^= 1
	u.expect(t, "bad cert signature", KindBulletin, u.topics.bull, u.member, bulletinCert(t, forged), Reject, stageVerify)
	wrongEffects := cert
	wrongEffects.Effects.Amount++
	u.expect(t, "effects mismatch", KindBulletin, u.topics.bull, u.member, bulletinCert(t, wrongEffects), Reject, stageVerify)
	stranger := qc.NewSigner(seededKey(0xEE, 1), "stranger", testDomain).Sign(txHash, eff, 1)
	u.expect(t, "non-member signer", KindBulletin, u.topics.bull, u.member, bulletinCert(t, stranger), Reject, stageMembership)
	otherEpoch := qc.NewSigner(f.keys[2], "val-2", qc.Domain{ChainID: testDomain.ChainID, Epoch: testDomain.Epoch + 1}).Sign(txHash, eff, 1)
	u.expect(t, "other epoch", KindBulletin, u.topics.bull, u.member, bulletinCert(t, otherEpoch), Reject, stageVerify)
	u.expect(t, "below quorum", KindBulletin, u.topics.bull, u.member, bulletinQC(t, belowQuorumQC(f, txHash, eff)), Reject, stageVerify)
	u.expect(t, "bad qc signature", KindBulletin, u.topics.bull, u.member, bulletinQC(t, badSignatureQC(t, f, txHash, eff)), Reject, stageVerify)
	u.expect(t, "empty item", KindBulletin, u.topics.bull, u.member, marshal(t, &fastpayv1.BulletinMessage{}), Reject, stageDecode)

	msg := u.expect(t, "valid cert", KindBulletin, u.topics.bull, u.member, bulletinCert(t, cert), Accept, stageOK)
	if it := msg.ValidatorData.(*BulletinItem); it.Cert == nil || it.Cert.Signer != cert.Signer || it.QC != nil {
		t.Errorf("decoded item %+v", it)
	}
	q := f.qcFrom(t, txHash, eff, 0, 1, 3)
	msg = u.expect(t, "valid qc", KindBulletin, u.topics.bull, u.member, bulletinQC(t, q), Accept, stageOK)
	if it := msg.ValidatorData.(*BulletinItem); it.QC == nil || it.QC.Hash != q.Hash {
		t.Error("decoded qc mismatch")
	}

	// Once accepted, the same objects in other bytes add nothing: they are
	// ignored unverified, without penalty.
	later := cert
	later.CreatedUnixMillis += 5
	u.expect(t, "cert re-encoded", KindBulletin, u.topics.bull, u.member, bulletinCert(t, later), Ignore, stageDuplicate)
	u.expect(t, "forgery of an accepted cert", KindBulletin, u.topics.bull, u.member, bulletinCert(t, forged), Ignore, stageDuplicate)
	u.expect(t, "qc of another subset", KindBulletin, u.topics.bull, u.member, bulletinQC(t, f.qcFrom(t, txHash, eff, 0, 1, 2)), Ignore, stageDuplicate)
	// A signer's conflicting certificate is another object: evidence.
	conflict := testEffects(2, 0x11)
	u.expect(t, "conflicting cert", KindBulletin, u.topics.bull, u.member, bulletinCert(t, f.cert(2, txHash, conflict)), Accept, stageOK)
	// Another signer's certificate for the same transaction is new.
	u.expect(t, "another signer", KindBulletin, u.topics.bull, u.member, bulletinCert(t, f.cert(3, txHash, eff)), Accept, stageOK)

	u.RegisterBulletinValidator(func(_ context.Context, _ peer.ID, it *BulletinItem) (Verdict, error) {
		if it.QC != nil {
			return Ignore, errors.New("qc already known")
		}
		return Accept, nil
	})
	txHash2 := mustTxHash(t, testRequest(3))
	u.expect(t, "known qc", KindBulletin, u.topics.bull, u.member, bulletinQC(t, f.qcFrom(t, txHash2, eff, 0, 1, 3)), Ignore, stageState)
	u.expect(t, "cert with state func", KindBulletin, u.topics.bull, u.member, bulletinCert(t, f.cert(1, txHash2, eff)), Accept, stageOK)
	// An object the state func ignored was not accepted: a later copy is
	// validated again.
	u.expect(t, "known qc again", KindBulletin, u.topics.bull, u.member, bulletinQC(t, f.qcFrom(t, txHash2, eff, 0, 1, 3)), Ignore, stageState)
}

func TestQCPipeline(t *testing.T) {
	u := newUnitMesh(t, nil)
	f := u.f
	txHash := mustTxHash(t, testRequest(3))
	eff := testEffects(3, 0x25) // shard 5
	q := f.qcFrom(t, txHash, eff, 1, 2, 3)
	data := marshal(t, fastpayv1.NewQuorumCertificate(q))

	u.expect(t, "wrong shard", KindQC, u.topics.qc[6], u.outsider, data, Reject, stageDomain)
	u.expect(t, "below quorum", KindQC, u.topics.qc[5], u.outsider, marshal(t, fastpayv1.NewQuorumCertificate(belowQuorumQC(f, txHash, eff))), Reject, stageVerify)
	u.expect(t, "bad signature", KindQC, u.topics.qc[5], u.outsider, marshal(t, fastpayv1.NewQuorumCertificate(badSignatureQC(t, f, txHash, eff))), Reject, stageVerify)
	tampered := f.qcFrom(t, txHash, eff, 1, 2, 3)
	tampered.Certs[0].CreatedUnixMillis++ // qc_hash no longer matches
	u.expect(t, "qc_hash mismatch", KindQC, u.topics.qc[5], u.outsider, marshal(t, fastpayv1.NewQuorumCertificate(tampered)), Reject, stageVerify)
	u.expect(t, "oversize", KindQC, u.topics.qc[5], u.outsider, make([]byte, MaxQCMessageSize+1), Reject, stageSize)

	// QC shards are open: an outsider may relay a valid QC.
	msg := u.expect(t, "valid from outsider", KindQC, u.topics.qc[5], u.outsider, data, Accept, stageOK)
	if got := msg.ValidatorData.(*qc.QC); got.Hash != q.Hash {
		t.Error("decoded qc mismatch")
	}
	u.expect(t, "another subset", KindQC, u.topics.qc[5], u.outsider, marshal(t, fastpayv1.NewQuorumCertificate(f.qcFrom(t, txHash, eff, 0, 1, 2))), Ignore, stageDuplicate)
	// The QC on the bulletin is a separate topic's object.
	u.expect(t, "same qc on the bulletin", KindBulletin, u.topics.bull, u.member, bulletinQC(t, q), Accept, stageOK)

	u.RegisterQCValidator(func(context.Context, peer.ID, *qc.QC) (Verdict, error) { return Reject, errors.New("stale") })
	q2 := f.qcFrom(t, mustTxHash(t, testRequest(4)), eff, 1, 2, 3)
	u.expect(t, "state reject", KindQC, u.topics.qc[5], u.outsider, marshal(t, fastpayv1.NewQuorumCertificate(q2)), Reject, stageState)
}

func TestLogLimiter(t *testing.T) {
	l := logLimiter{perSecond: 2}
	now := time.Unix(1000, 0)
	for i, want := range []bool{true, true, false, false} {
		if ok, _ := l.allow(now); ok != want {
			t.Fatalf("event %d: allow = %v", i, ok)
		}
	}
	ok, suppressed := l.allow(now.Add(time.Second))
	if !ok || suppressed != 2 {
		t.Errorf("next window: allow=%v suppressed=%d", ok, suppressed)
	}
	if ok, _ := (&logLimiter{}).allow(now); ok {
		t.Error("a zero limiter must allow nothing")
	}
}
