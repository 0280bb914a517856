package p2p

import (
	"context"
	"errors"
	"slices"
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
	corruptQC(q)
	return q
}

// corruptQC flips a bit of one of q's signatures and recomputes qc_hash.
func corruptQC(q *qc.QC) {
	q.Certs = slices.Clone(q.Certs)
	q.Certs[1].Signature[5] ^= 0xff
	q.Hash = qc.ComputeQCHash(q.TxHash, q.EffectsHash, q.Threshold, q.Certs)
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

// expect validates a frame and checks its verdict, the stage counted and
// that ValidatorData holds objects exactly when the frame is accepted.
func (u *unitMesh) expect(t *testing.T, what string, k TopicKind, topic string, from peer.ID, data []byte, vdata any, want Verdict, stage string) *pubsub.Message {
	t.Helper()
	before := u.count(t, k, want, stage)
	res, msg := u.validate(k, topic, from, data, vdata)
	if res != want.result() {
		t.Errorf("%s: result %v, want %v", what, res, want)
	}
	if got := u.count(t, k, want, stage); got != before+1 {
		t.Errorf("%s: validations_total{%s,%s,%s} went %v -> %v", what, k, want, stage, before, got)
	}
	if _, ok := msg.ValidatorData.(*frameObjects); (want == Accept) != ok && vdata == nil {
		t.Errorf("%s: ValidatorData = %T on %v", what, msg.ValidatorData, want)
	}
	return msg
}

// spec is a frame to validate: its kind, the topic and forwarding peer it
// arrives on and from, and its contents. Each kind has a valid fixture
// spec; each test case mutates one thing of it.
type spec struct {
	kind  TopicKind
	topic string
	from  peer.ID
	hdr   FrameHeader
	txs   []*fastpayv1.SubmitFastPayRequest // tx frames
	certs []qc.Certificate                  // bulletin frames
	pairs []qc.Equivocation                 // bulletin frames
	qcs   []*qc.QC                          // bulletin and QC frames
	// raw, when set, is sent instead of the encoded frame.
	raw []byte
	// vdata is the message's ValidatorData on arrival (local publishes).
	vdata any
}

func (s *spec) encode(t testing.TB) []byte {
	t.Helper()
	if s.raw != nil {
		return s.raw
	}
	switch s.kind {
	case KindTx:
		return encTx(t, s.hdr, s.txs...)
	case KindBulletin:
		return encBulletin(t, s.hdr, s.certs, s.qcs, s.pairs)
	}
	return encQC(t, s.hdr, s.qcs...)
}

// keys returns the keys of the frame's objects in the order a validator
// hands them on: a bulletin frame's certificates, then both certificates of
// each equivocation pair, then its QCs.
func (s *spec) keys(t testing.TB) []string {
	var out []string
	for _, r := range s.txs {
		out = append(out, txKey(mustTxHash(t, r)))
	}
	for i := range s.certs {
		out = append(out, certKey(&s.certs[i]))
	}
	for i := range s.pairs {
		out = append(out, certKey(&s.pairs[i].First), certKey(&s.pairs[i].Second))
	}
	for _, q := range s.qcs {
		out = append(out, qcKey(q.TxHash))
	}
	return out
}

// seen reports, per object key of s, whether u's deduplication holds it.
func (s *spec) seen(t testing.TB, u *unitMesh) map[string]bool {
	a := u.pipes.accepted
	out := make(map[string]bool)
	for _, r := range s.txs {
		h := mustTxHash(t, r)
		out[txKey(h)] = a.txSeen(h)
	}
	certs := slices.Clone(s.certs)
	for _, p := range s.pairs {
		certs = append(certs, p.First, p.Second)
	}
	for i := range certs {
		out[certKey(&certs[i])] = a.certSeen(&certs[i])
	}
	for _, q := range s.qcs {
		out[qcKey(q.TxHash)] = a.qcSeen(s.kind, q.TxHash)
	}
	return out
}

// accept validates s (with a fresh sequence number, so its bytes are new)
// and requires it accepted: the setup of cases about objects seen before.
func (s *spec) accept(t *testing.T, u *unitMesh) {
	t.Helper()
	c := *s
	c.hdr.Seq += 1_000
	u.expect(t, "setup", c.kind, c.topic, c.from, c.encode(t), nil, Accept, stageOK)
}

// handedOn returns the keys of the objects an accepted frame hands on.
func handedOn(o *frameObjects) []string {
	var out []string
	for _, tx := range o.txs {
		out = append(out, objectKey(tx))
	}
	for _, it := range o.items {
		out = append(out, objectKey(it))
	}
	for _, q := range o.qcs {
		out = append(out, objectKey(q))
	}
	return out
}

func statsOf(u *unitMesh, k TopicKind) TopicStats {
	st := u.Stats()
	switch k {
	case KindTx:
		return st.Tx
	case KindBulletin:
		return st.Bulletin
	}
	return st.QC
}

// pipelineCase is one frame validated by a fresh validator.
type pipelineCase struct {
	name string
	// cfg changes the validator's config (a short ValidationTimeout).
	cfg func(*Config)
	// setup runs on the unmutated fixture spec before the frame is
	// validated: objects accepted before, stateful funcs.
	setup func(t *testing.T, u *unitMesh, s *spec)
	// mutate turns the fixture into the case's frame.
	mutate func(t *testing.T, u *unitMesh, s *spec)
	want   Verdict
	stage  string
	// objects returns the keys of the objects the frame must hand on when
	// accepted; nil means every object of the frame, in order.
	objects func(t *testing.T, s *spec) []string
	// check runs after the frame's verdict was checked.
	check func(t *testing.T, u *unitMesh, s *spec)
}

// runPipelineCases validates each case's frame on a fresh validator and
// checks, beyond the verdict and stage: the objects handed on (and the
// header), that deduplication recorded exactly the objects handed on, and
// that TopicStats counted one frame in the right column.
func runPipelineCases(t *testing.T, fixtureSpec func(t *testing.T, u *unitMesh) *spec, cases []pipelineCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := newUnitMesh(t, tc.cfg)
			s := fixtureSpec(t, u)
			if tc.setup != nil {
				tc.setup(t, u, s)
			}
			if tc.mutate != nil {
				tc.mutate(t, u, s)
			}
			seenBefore := s.seen(t, u)
			statsBefore := statsOf(u, s.kind)

			msg := u.expect(t, tc.name, s.kind, s.topic, s.from, s.encode(t), s.vdata, tc.want, tc.stage)

			var got []string
			if tc.want == Accept {
				objs, ok := msg.ValidatorData.(*frameObjects)
				if !ok {
					t.Fatalf("ValidatorData = %T", msg.ValidatorData)
				}
				got = handedOn(objs)
				want := s.keys(t)
				if tc.objects != nil {
					want = tc.objects(t, s)
				}
				if !slices.Equal(got, want) {
					t.Errorf("handed on %d objects %q, want %d %q", len(got), got, len(want), want)
				}
				if objs.header != s.hdr {
					t.Errorf("header %+v, want %+v", objs.header, s.hdr)
				}
			}
			// Only accepted objects are remembered: an object a frame
			// failed with must never suppress a valid copy.
			for k, after := range s.seen(t, u) {
				if want := seenBefore[k] || slices.Contains(got, k); after != want {
					t.Errorf("object %x: seen %v after the frame, want %v", k, after, want)
				}
			}
			d := statsOf(u, s.kind)
			counts := [3]uint64{d.Accepted - statsBefore.Accepted, d.Ignored - statsBefore.Ignored, d.Rejected - statsBefore.Rejected}
			wantCounts := [3]uint64{}
			wantCounts[tc.want] = 1
			if counts != wantCounts {
				t.Errorf("accepted/ignored/rejected went up by %v, want %v", counts, wantCounts)
			}
			local := s.from == u.ID()
			recv, fresh := d.ObjectsReceived-statsBefore.ObjectsReceived, d.ObjectsNew-statsBefore.ObjectsNew
			if tc.want == Accept && !local {
				if recv != uint64(len(s.keys(t))) || fresh != uint64(len(got)) {
					t.Errorf("objects received/new went up by %d/%d, want %d/%d", recv, fresh, len(s.keys(t)), len(got))
				}
			} else if recv != 0 || fresh != 0 {
				t.Errorf("objects received/new went up by %d/%d for a frame not accepted from a peer", recv, fresh)
			}
			if tc.check != nil {
				tc.check(t, u, s)
			}
		})
	}
}

// Stateful funcs for the cases. Each decides the object at index 1 of its
// frame (the second tx, certificate or QC) and accepts the rest.
func decideSecondTx(t *testing.T, s *spec, v Verdict, err error) TxStateFunc {
	second := mustTxHash(t, s.txs[1])
	return func(_ context.Context, _ peer.ID, tx *TxMessage) (Verdict, error) {
		if tx.TxHash == second {
			return v, err
		}
		return Accept, nil
	}
}

func decideAllTxs(v Verdict, err error) TxStateFunc {
	return func(context.Context, peer.ID, *TxMessage) (Verdict, error) { return v, err }
}

// waitForDeadline is a stateful func that overruns ValidationTimeout,
// honouring its context.
func waitForDeadline(ctx context.Context) (Verdict, error) {
	<-ctx.Done()
	return Reject, ctx.Err()
}

// mustNotRun fails the test if the stateful func is called: frames whose
// objects were all accepted before, and local publishes, skip it.
func mustNotRun(t *testing.T) func() (Verdict, error) {
	return func() (Verdict, error) {
		t.Error("stateful func called")
		return Reject, errors.New("called")
	}
}

func panics(what string) func() (Verdict, error) {
	return func() (Verdict, error) { panic(what) }
}

func expectPanicCounted(k TopicKind) func(t *testing.T, u *unitMesh, s *spec) {
	return func(t *testing.T, u *unitMesh, _ *spec) {
		if got := metricValue(t, u.reg, "allegro_p2p_validator_panics_total", map[string]string{"topic": k.String()}); got != 1 {
			t.Errorf("validator_panics_total{%s} = %v", k, got)
		}
	}
}

// acceptsFixtureLater: after the case's frame failed, the valid fixture
// frame (same objects, fresh bytes) is still accepted with every object:
// the failure recorded nothing that shadows the genuine objects.
func acceptsFixtureLater(fixtureSpec func(t *testing.T, u *unitMesh) *spec) func(t *testing.T, u *unitMesh, s *spec) {
	return func(t *testing.T, u *unitMesh, _ *spec) {
		t.Helper()
		valid := fixtureSpec(t, u)
		valid.hdr.Seq += 2_000
		msg := u.expect(t, "valid frame afterwards", valid.kind, valid.topic, valid.from, valid.encode(t), nil, Accept, stageOK)
		if got, want := handedOn(msg.ValidatorData.(*frameObjects)), valid.keys(t); !slices.Equal(got, want) {
			t.Errorf("valid frame afterwards handed on %d objects, want %d", len(got), len(want))
		}
	}
}

func keysWithout(drop ...int) func(t *testing.T, s *spec) []string {
	return func(t *testing.T, s *spec) []string {
		var out []string
		for i, k := range s.keys(t) {
			if !slices.Contains(drop, i) {
				out = append(out, k)
			}
		}
		return out
	}
}

func garbage(_ *testing.T, _ *unitMesh, s *spec)   { s.raw = []byte{0xff, 0xff, 0xff} }
func oversized(_ *testing.T, _ *unitMesh, s *spec) { s.raw = make([]byte, MaxFrameSize+1) }

func nonMemberPublisher(_ *testing.T, _ *unitMesh, s *spec) { s.hdr.Publisher = outsiderID(3) }

func fromOutsider(_ *testing.T, u *unitMesh, s *spec) { s.from = u.outsider }

// shortPublisher encodes the frame with a 31-byte publisher.
func shortPublisher(t *testing.T, _ *unitMesh, s *spec) {
	h := wireHeader(s.hdr)
	h.Publisher = h.Publisher[:31]
	switch s.kind {
	case KindTx:
		s.raw = marshal(t, &fastpayv1.TxFrame{Header: h, Txs: s.txs})
	case KindBulletin:
		s.raw = marshal(t, &fastpayv1.BulletinFrame{Header: h, Qcs: []*fastpayv1.QuorumCertificate{fastpayv1.NewQuorumCertificate(s.qcs[0])}})
	default:
		s.raw = marshal(t, &fastpayv1.QCFrame{Header: h, Qcs: []*fastpayv1.QuorumCertificate{fastpayv1.NewQuorumCertificate(s.qcs[0])}})
	}
}

// tooManyObjects encodes MaxFrameObjects+1 objects, as small as the wire
// allows, so the count fails before anything is converted.
func tooManyObjects(t *testing.T, _ *unitMesh, s *spec) {
	h := wireHeader(s.hdr)
	switch s.kind {
	case KindTx:
		m := &fastpayv1.TxFrame{Header: h}
		for range MaxFrameObjects + 1 {
			m.Txs = append(m.Txs, &fastpayv1.SubmitFastPayRequest{})
		}
		s.raw = marshal(t, m)
	case KindBulletin:
		m := &fastpayv1.BulletinFrame{Header: h}
		for range MaxFrameObjects + 1 {
			m.Certs = append(m.Certs, &fastpayv1.ValidatorCertificate{})
		}
		s.raw = marshal(t, m)
	default:
		m := &fastpayv1.QCFrame{Header: h}
		for range MaxFrameObjects + 1 {
			m.Qcs = append(m.Qcs, &fastpayv1.QuorumCertificate{})
		}
		s.raw = marshal(t, m)
	}
}

// txFixture: a tx frame of two requests published and forwarded by
// validator 1.
func txFixture(_ *testing.T, u *unitMesh) *spec {
	return &spec{kind: KindTx, topic: u.topics.tx, from: u.member, hdr: u.f.hdr(1, 1),
		txs: []*fastpayv1.SubmitFastPayRequest{testRequest(1), testRequest(2)}}
}

// TestTxPipeline: tx frames (validate.go, validateTx).
func TestTxPipeline(t *testing.T) {
	shortTimeout := func(c *Config) { c.ValidationTimeout = 50 * time.Millisecond }
	registerTx := func(fn func(t *testing.T, s *spec) TxStateFunc) func(t *testing.T, u *unitMesh, s *spec) {
		return func(t *testing.T, u *unitMesh, s *spec) { u.RegisterTxValidator(fn(t, s)) }
	}
	runPipelineCases(t, txFixture, []pipelineCase{
		{name: "valid", want: Accept, stage: stageOK},
		{name: "valid, stateful func sees the sender and each tx", want: Accept, stage: stageOK,
			setup: func(t *testing.T, u *unitMesh, s *spec) {
				want := []qc.Hash{mustTxHash(t, s.txs[0]), mustTxHash(t, s.txs[1])}
				var got []qc.Hash
				u.RegisterTxValidator(func(_ context.Context, from peer.ID, tx *TxMessage) (Verdict, error) {
					if from != u.member {
						t.Errorf("stateful func got sender %s", from)
					}
					got = append(got, tx.TxHash)
					return Accept, nil
				})
				t.Cleanup(func() {
					if !slices.Equal(got, want) {
						t.Errorf("stateful func saw %v, want %v", got, want)
					}
				})
			}},
		{name: "garbage", mutate: garbage, want: Reject, stage: stageDecode},
		{name: "oversized", mutate: oversized, want: Reject, stage: stageSize},
		{name: "empty frame", mutate: func(_ *testing.T, _ *unitMesh, s *spec) { s.txs = nil }, want: Reject, stage: stageDecode},
		{name: "too many objects", mutate: tooManyObjects, want: Reject, stage: stageSize},
		{name: "short publisher", mutate: shortPublisher, want: Reject, stage: stageDecode},
		{name: "a transaction over MaxTxSize", mutate: func(_ *testing.T, _ *unitMesh, s *spec) {
			s.txs[1].Tx.TempoTx.Data = make([]byte, MaxTxSize)
		}, want: Reject, stage: stageSize},
		{name: "a request without a transaction", mutate: func(t *testing.T, _ *unitMesh, s *spec) {
			s.txs[1] = &fastpayv1.SubmitFastPayRequest{}
			s.raw = marshal(t, &fastpayv1.TxFrame{Header: wireHeader(s.hdr), Txs: s.txs})
			s.txs = s.txs[:1]
		}, want: Reject, stage: stageDecode},
		{name: "publisher not a member", mutate: nonMemberPublisher, want: Reject, stage: stageMembership},
		{name: "forwarding peer not a member", mutate: fromOutsider, want: Reject, stage: stageMembership},
		{name: "one transaction of another chain", mutate: func(_ *testing.T, _ *unitMesh, s *spec) {
			s.txs[1].Tx.ChainId.Value = 4217
		}, want: Reject, stage: stageDomain},
		{name: "all transactions accepted before", want: Ignore, stage: stageDuplicate,
			setup: func(t *testing.T, u *unitMesh, s *spec) {
				s.accept(t, u)
				u.RegisterTxValidator(func(context.Context, peer.ID, *TxMessage) (Verdict, error) { return mustNotRun(t)() })
			}},
		{name: "one new, one accepted before", want: Accept, stage: stageOK, objects: keysWithout(0),
			setup: func(t *testing.T, u *unitMesh, s *spec) {
				old := *s
				old.txs = s.txs[:1]
				old.accept(t, u)
			}},
		{name: "a transaction twice in the frame", want: Accept, stage: stageOK, objects: keysWithout(1),
			mutate: func(_ *testing.T, _ *unitMesh, s *spec) {
				s.txs = []*fastpayv1.SubmitFastPayRequest{s.txs[0], s.txs[0], s.txs[1]}
			}},
		{name: "stateful reject of one", want: Reject, stage: stageState,
			setup: registerTx(func(t *testing.T, s *spec) TxStateFunc {
				return decideSecondTx(t, s, Reject, errors.New("equivocation"))
			})},
		{name: "stateful ignore of one", want: Accept, stage: stageOK, objects: keysWithout(1),
			setup: registerTx(func(t *testing.T, s *spec) TxStateFunc {
				return decideSecondTx(t, s, Ignore, errors.New("nonce too high"))
			})},
		{name: "soft reject of one", want: Accept, stage: stageOK, objects: keysWithout(1),
			setup: registerTx(func(t *testing.T, s *spec) TxStateFunc {
				return decideSecondTx(t, s, Reject, Soft(errors.New("expired")))
			})},
		{name: "accept with an error for one", want: Accept, stage: stageOK, objects: keysWithout(1),
			setup: registerTx(func(t *testing.T, s *spec) TxStateFunc {
				return decideSecondTx(t, s, Accept, errors.New("contradictory"))
			})},
		{name: "all ignored", want: Ignore, stage: stageState,
			setup: registerTx(func(*testing.T, *spec) TxStateFunc { return decideAllTxs(Ignore, errors.New("nonce too high")) })},
		{name: "all soft rejected", want: Ignore, stage: stageState,
			setup: registerTx(func(*testing.T, *spec) TxStateFunc { return decideAllTxs(Reject, Soft(errors.New("expired"))) })},
		{name: "unknown verdict", want: Ignore, stage: stageState,
			setup: registerTx(func(*testing.T, *spec) TxStateFunc { return decideAllTxs(Verdict(42), nil) })},
		// A validator that outlives ValidationTimeout (honouring ctx) is
		// ignored, not rejected: the delay is ours.
		{name: "timeout", cfg: shortTimeout, want: Ignore, stage: stageTimeout,
			setup: registerTx(func(*testing.T, *spec) TxStateFunc {
				return func(ctx context.Context, _ peer.ID, _ *TxMessage) (Verdict, error) { return waitForDeadline(ctx) }
			})},
		{name: "panic", want: Reject, stage: stagePanic, check: expectPanicCounted(KindTx),
			setup: registerTx(func(*testing.T, *spec) TxStateFunc {
				return func(context.Context, peer.ID, *TxMessage) (Verdict, error) { return panics("boom")() }
			})},
		{name: "stateful func removed", want: Accept, stage: stageOK,
			setup: func(t *testing.T, u *unitMesh, s *spec) {
				u.RegisterTxValidator(decideAllTxs(Reject, errors.New("never")))
				u.RegisterTxValidator(nil)
			}},
		// A local publish carries its objects and skips decoding and the
		// stateful func (which would panic here).
		{name: "local publish", want: Accept, stage: stageLocal,
			setup: registerTx(func(*testing.T, *spec) TxStateFunc {
				return func(context.Context, peer.ID, *TxMessage) (Verdict, error) {
					return panics("local publish validated")()
				}
			}),
			mutate: func(t *testing.T, u *unitMesh, s *spec) {
				s.from, s.hdr = u.ID(), FrameHeader{Publisher: u.f.signers[0].ID(), Seq: 5}
				objs := &frameObjects{header: s.hdr, local: true}
				for _, r := range s.txs {
					objs.txs = append(objs.txs, &TxMessage{Request: r, TxHash: mustTxHash(t, r)})
				}
				s.vdata = objs
			}},
		// Only this node's own publishes take the local path: the same
		// ValidatorData on a message from a peer is validated as usual.
		{name: "local objects from a peer", want: Accept, stage: stageOK,
			mutate: func(_ *testing.T, _ *unitMesh, s *spec) { s.vdata = &frameObjects{local: true} }},
	})
}

// bulletinFixture: a bulletin frame published and forwarded by validator 1
// with two of its own certificates, an equivocation pair of validator 2 and
// a QC of validators 0, 2 and 3.
func bulletinFixture(t *testing.T, u *unitMesh) *spec {
	f := u.f
	eff := testEffects(2, 0x10)
	hA, hB, hC := mustTxHash(t, testRequest(2)), mustTxHash(t, testRequest(3)), mustTxHash(t, testRequest(4))
	return &spec{kind: KindBulletin, topic: u.topics.bull, from: u.member, hdr: f.hdr(1, 1),
		certs: []qc.Certificate{f.cert(1, hA, eff), f.cert(1, hB, testEffects(3, 0x10))},
		pairs: []qc.Equivocation{f.equivocation(t, 2, 5, 0x10)},
		qcs:   []*qc.QC{f.qcFrom(t, hC, testEffects(4, 0x10), 0, 2, 3)},
	}
}

// TestBulletinPipeline: bulletin frames (validate.go, validateBulletin).
func TestBulletinPipeline(t *testing.T) {
	registerBulletin := func(decide func(it *BulletinItem) (Verdict, error)) func(t *testing.T, u *unitMesh, s *spec) {
		return func(_ *testing.T, u *unitMesh, _ *spec) {
			u.RegisterBulletinValidator(func(_ context.Context, _ peer.ID, it *BulletinItem) (Verdict, error) { return decide(it) })
		}
	}
	onQC := func(v Verdict, err error) func(it *BulletinItem) (Verdict, error) {
		return func(it *BulletinItem) (Verdict, error) {
			if it.QC != nil {
				return v, err
			}
			return Accept, nil
		}
	}
	// qcIndex is the position of the fixture's QC among its objects.
	const qcIndex = 4
	runPipelineCases(t, bulletinFixture, []pipelineCase{
		{name: "valid", want: Accept, stage: stageOK},
		{name: "garbage", mutate: garbage, want: Reject, stage: stageDecode},
		{name: "oversized", mutate: oversized, want: Reject, stage: stageSize},
		{name: "empty frame", mutate: func(_ *testing.T, _ *unitMesh, s *spec) { s.certs, s.pairs, s.qcs = nil, nil, nil },
			want: Reject, stage: stageDecode},
		{name: "too many objects", mutate: tooManyObjects, want: Reject, stage: stageSize},
		{name: "short publisher", mutate: shortPublisher, want: Reject, stage: stageDecode},
		{name: "a certificate without signer", want: Reject, stage: stageDecode,
			mutate: func(t *testing.T, _ *unitMesh, s *spec) {
				w := fastpayv1.NewValidatorCertificate(&s.certs[1])
				w.Signer = nil
				s.raw = marshal(t, &fastpayv1.BulletinFrame{Header: wireHeader(s.hdr), Certs: []*fastpayv1.ValidatorCertificate{fastpayv1.NewValidatorCertificate(&s.certs[0]), w}})
			}},
		{name: "publisher not a member", mutate: nonMemberPublisher, want: Reject, stage: stageMembership},
		{name: "forwarding peer not a member", mutate: fromOutsider, want: Reject, stage: stageMembership},
		// A bulletin frame carries its publisher's own certificates; another
		// signer's travel only inside QCs and equivocation pairs.
		{name: "a certificate signed by another member", want: Reject, stage: stageMembership,
			mutate: func(_ *testing.T, u *unitMesh, s *spec) {
				s.certs[1] = u.f.cert(2, s.certs[1].TxHash, s.certs[1].Effects)
			}},
		{name: "equivocation pair of two signers", want: Reject, stage: stageVerify,
			mutate: func(_ *testing.T, u *unitMesh, s *spec) {
				p := &s.pairs[0]
				p.Second = u.f.cert(3, p.Second.TxHash, p.Second.Effects)
			}},
		{name: "equivocation pair of one transaction and effects", want: Reject, stage: stageVerify,
			mutate: func(_ *testing.T, u *unitMesh, s *spec) {
				p := &s.pairs[0]
				p.Second = p.First
				p.Second.CreatedUnixMillis++
			}},
		{name: "equivocation pair of two contention keys", want: Reject, stage: stageVerify,
			mutate: func(_ *testing.T, u *unitMesh, s *spec) {
				p := &s.pairs[0]
				p.Second = u.f.cert(2, p.Second.TxHash, testEffects(6, 0x10))
			}},
		{name: "equivocation pair with a bad signature", want: Reject, stage: stageVerify,
			mutate: func(_ *testing.T, _ *unitMesh, s *spec) { s.pairs[0].Second.Signature[3] ^= 1 }},
		{name: "equivocation pair of a non-member", want: Reject, stage: stageMembership,
			mutate: func(t *testing.T, u *unitMesh, s *spec) {
				stranger := qc.NewSigner(seededKey(0xEE, 1), "stranger", testDomain)
				p := &s.pairs[0]
				p.First = stranger.Sign(p.First.TxHash, p.First.Effects, 1)
				p.Second = stranger.Sign(p.Second.TxHash, p.Second.Effects, 1)
			}},
		// One bad signature rejects the whole frame; its valid objects are
		// not remembered, so the same objects in a valid frame are accepted.
		{name: "one bad certificate signature among valid ones", want: Reject, stage: stageVerify,
			mutate: func(_ *testing.T, _ *unitMesh, s *spec) { s.certs[1].Signature[0] ^= 1 },
			check:  acceptsFixtureLater(bulletinFixture)},
		{name: "one QC with a bad signature among valid ones", want: Reject, stage: stageVerify,
			mutate: func(t *testing.T, u *unitMesh, s *spec) {
				bad := u.f.qcFrom(t, mustTxHash(t, testRequest(9)), testEffects(9, 0x10), 1, 2, 3)
				corruptQC(bad)
				s.qcs = append(s.qcs, bad)
			},
			check: acceptsFixtureLater(bulletinFixture)},
		{name: "QC below quorum", want: Reject, stage: stageVerify,
			mutate: func(t *testing.T, u *unitMesh, s *spec) {
				s.qcs[0] = belowQuorumQC(u.f, s.qcs[0].TxHash, s.qcs[0].Effects())
			}},
		{name: "QC hash mismatch", want: Reject, stage: stageVerify,
			mutate: func(_ *testing.T, _ *unitMesh, s *spec) {
				q := *s.qcs[0]
				q.Certs = slices.Clone(q.Certs)
				q.Certs[0].CreatedUnixMillis++
				s.qcs[0] = &q
			}},
		{name: "QC with a non-member signer", want: Reject, stage: stageMembership,
			mutate: func(_ *testing.T, _ *unitMesh, s *spec) {
				q := *s.qcs[0]
				q.Certs = slices.Clone(q.Certs)
				q.Certs[2] = qc.NewSigner(seededKey(0xEE, 1), "stranger", testDomain).Sign(q.TxHash, q.Effects(), 1)
				q.Hash = qc.ComputeQCHash(q.TxHash, q.EffectsHash, q.Threshold, q.Certs)
				s.qcs[0] = &q
			}},
		{name: "certificate effects mismatch", want: Reject, stage: stageVerify,
			mutate: func(_ *testing.T, _ *unitMesh, s *spec) { s.certs[0].Effects.Amount++ }},
		{name: "certificate of another epoch", want: Reject, stage: stageVerify,
			mutate: func(_ *testing.T, u *unitMesh, s *spec) {
				other := qc.NewSigner(u.f.keys[1], "val-1", qc.Domain{ChainID: testDomain.ChainID, Epoch: testDomain.Epoch + 1})
				s.certs[0] = other.Sign(s.certs[0].TxHash, s.certs[0].Effects, 1)
			}},
		// Objects accepted before make a frame that adds nothing: it is
		// ignored before any signature is verified (every signature here is
		// corrupted, and the verdict is still Ignore, not Reject).
		{name: "all objects accepted before, signatures corrupted", want: Ignore, stage: stageDuplicate,
			setup: func(t *testing.T, u *unitMesh, s *spec) {
				s.accept(t, u)
				u.RegisterBulletinValidator(func(context.Context, peer.ID, *BulletinItem) (Verdict, error) { return mustNotRun(t)() })
			},
			mutate: func(_ *testing.T, _ *unitMesh, s *spec) {
				s.certs[0].Signature[0] ^= 1
				s.certs[1].CreatedUnixMillis += 5
				s.pairs[0].First.Signature[0] ^= 1
				q := *s.qcs[0]
				corruptQC(&q)
				s.qcs[0] = &q
			}},
		{name: "QC of another signer subset after the first", want: Ignore, stage: stageDuplicate,
			setup: func(t *testing.T, u *unitMesh, s *spec) { s.accept(t, u) },
			mutate: func(t *testing.T, u *unitMesh, s *spec) {
				s.qcs[0] = u.f.qcFrom(t, s.qcs[0].TxHash, s.qcs[0].Effects(), 0, 1, 2)
			}},
		{name: "one new, the rest accepted before", want: Accept, stage: stageOK, objects: keysWithout(1, 2, 3, 4),
			setup: func(t *testing.T, u *unitMesh, s *spec) {
				old := *s
				old.certs = s.certs[1:]
				old.accept(t, u)
			}},
		// A signer's conflicting certificate (same contention key, other
		// effects) is another object: it is evidence.
		{name: "a conflicting certificate after the first", want: Accept, stage: stageOK, objects: keysWithout(1, 2, 3, 4),
			setup: func(t *testing.T, u *unitMesh, s *spec) { s.accept(t, u) },
			mutate: func(_ *testing.T, u *unitMesh, s *spec) {
				s.certs[0] = u.f.cert(1, s.certs[0].TxHash, testEffects(2, 0x11))
			}},
		// Each topic kind deduplicates its own QCs: the QC must reach the
		// bulletin's subscribers even when it came on its shard first.
		{name: "QC accepted on its shard only", want: Accept, stage: stageOK,
			setup: func(t *testing.T, u *unitMesh, s *spec) {
				shard := &spec{kind: KindQC, topic: u.topics.qcTopicFor(s.qcs[0].Effects().Recipient), from: u.member, hdr: s.hdr, qcs: s.qcs}
				shard.accept(t, u)
			}},
		{name: "stateful reject of the QC", want: Reject, stage: stageState,
			setup: registerBulletin(onQC(Reject, errors.New("conflicts with a known QC")))},
		// An object the stateful func ignored is not remembered: a later
		// copy is validated (and here accepted) again.
		{name: "stateful ignore of the QC", want: Accept, stage: stageOK, objects: keysWithout(qcIndex),
			setup: registerBulletin(onQC(Ignore, errors.New("qc already known"))),
			check: func(t *testing.T, u *unitMesh, s *spec) {
				u.RegisterBulletinValidator(nil)
				again := &spec{kind: KindBulletin, topic: s.topic, from: s.from, hdr: s.hdr, qcs: s.qcs}
				again.hdr.Seq++
				u.expect(t, "the ignored QC again", KindBulletin, again.topic, again.from, again.encode(t), nil, Accept, stageOK)
			}},
		{name: "all ignored", want: Ignore, stage: stageState,
			setup: registerBulletin(func(*BulletinItem) (Verdict, error) { return Ignore, errors.New("not now") })},
		{name: "timeout", want: Ignore, stage: stageTimeout,
			cfg: func(c *Config) { c.ValidationTimeout = 50 * time.Millisecond },
			setup: func(_ *testing.T, u *unitMesh, _ *spec) {
				u.RegisterBulletinValidator(func(ctx context.Context, _ peer.ID, _ *BulletinItem) (Verdict, error) { return waitForDeadline(ctx) })
			}},
		{name: "panic", want: Reject, stage: stagePanic, check: expectPanicCounted(KindBulletin),
			setup: registerBulletin(func(*BulletinItem) (Verdict, error) { return panics("boom")() })},
		{name: "local publish", want: Accept, stage: stageLocal,
			setup: registerBulletin(func(*BulletinItem) (Verdict, error) { return panics("local publish validated")() }),
			mutate: func(_ *testing.T, u *unitMesh, s *spec) {
				s.from, s.hdr = u.ID(), FrameHeader{Publisher: u.f.signers[0].ID(), Seq: 5}
				s.certs = []qc.Certificate{u.f.cert(0, s.certs[0].TxHash, s.certs[0].Effects)}
				objs := &frameObjects{header: s.hdr, local: true, items: []*BulletinItem{{Cert: &s.certs[0]}}}
				for i := range s.pairs {
					objs.items = append(objs.items, &BulletinItem{Cert: &s.pairs[i].First}, &BulletinItem{Cert: &s.pairs[i].Second})
				}
				for _, q := range s.qcs {
					objs.items = append(objs.items, &BulletinItem{QC: q})
				}
				s.vdata = objs
			}},
	})
}

// qcFixture: a QC frame on shard 5 named as published by validator 1 and
// forwarded by a peer outside the committee (QC shards are open).
func qcFixture(t *testing.T, u *unitMesh) *spec {
	f := u.f
	effA, effB := testEffects(3, 0x25), testEffects(4, 0x35) // shard 5 of 16
	return &spec{kind: KindQC, topic: u.topics.qc[5], from: u.outsider, hdr: f.hdr(1, 1),
		qcs: []*qc.QC{
			f.qcFrom(t, mustTxHash(t, testRequest(3)), effA, 1, 2, 3),
			f.qcFrom(t, mustTxHash(t, testRequest(4)), effB, 0, 1, 2),
		}}
}

// TestQCPipeline: QC frames on the shards (validate.go, validateQC).
func TestQCPipeline(t *testing.T) {
	registerQC := func(decide func(t *testing.T, s *spec, q *qc.QC) (Verdict, error)) func(t *testing.T, u *unitMesh, s *spec) {
		return func(t *testing.T, u *unitMesh, s *spec) {
			u.RegisterQCValidator(func(_ context.Context, _ peer.ID, q *qc.QC) (Verdict, error) { return decide(t, s, q) })
		}
	}
	second := func(v Verdict, err error) func(t *testing.T, s *spec, q *qc.QC) (Verdict, error) {
		return func(_ *testing.T, s *spec, q *qc.QC) (Verdict, error) {
			if q.TxHash == s.qcs[1].TxHash {
				return v, err
			}
			return Accept, nil
		}
	}
	all := func(v Verdict, err error) func(*testing.T, *spec, *qc.QC) (Verdict, error) {
		return func(*testing.T, *spec, *qc.QC) (Verdict, error) { return v, err }
	}
	runPipelineCases(t, qcFixture, []pipelineCase{
		{name: "valid from a non-member", want: Accept, stage: stageOK},
		{name: "valid from a member", want: Accept, stage: stageOK,
			mutate: func(_ *testing.T, u *unitMesh, s *spec) { s.from = u.member }},
		{name: "garbage", mutate: garbage, want: Reject, stage: stageDecode},
		{name: "oversized", mutate: oversized, want: Reject, stage: stageSize},
		{name: "empty frame", mutate: func(_ *testing.T, _ *unitMesh, s *spec) { s.qcs = nil }, want: Reject, stage: stageDecode},
		{name: "too many objects", mutate: tooManyObjects, want: Reject, stage: stageSize},
		{name: "short publisher", mutate: shortPublisher, want: Reject, stage: stageDecode},
		{name: "publisher not a member", mutate: nonMemberPublisher, want: Reject, stage: stageMembership},
		{name: "wrong shard", want: Reject, stage: stageDomain,
			mutate: func(_ *testing.T, u *unitMesh, s *spec) { s.topic = u.topics.qc[6] }},
		{name: "one QC of another shard", want: Reject, stage: stageDomain,
			mutate: func(t *testing.T, u *unitMesh, s *spec) {
				s.qcs[1] = u.f.qcFrom(t, s.qcs[1].TxHash, testEffects(4, 0x26), 0, 1, 2)
			}},
		{name: "QC below quorum", want: Reject, stage: stageVerify,
			mutate: func(_ *testing.T, u *unitMesh, s *spec) {
				s.qcs[1] = belowQuorumQC(u.f, s.qcs[1].TxHash, s.qcs[1].Effects())
			}},
		{name: "QC of another epoch", want: Reject, stage: stageVerify,
			mutate: func(_ *testing.T, _ *unitMesh, s *spec) {
				q := *s.qcs[1]
				q.Epoch = 99
				s.qcs[1] = &q
			}},
		{name: "QC hash mismatch", want: Reject, stage: stageVerify,
			mutate: func(_ *testing.T, _ *unitMesh, s *spec) {
				q := *s.qcs[1]
				q.Certs = slices.Clone(q.Certs)
				q.Certs[0].CreatedUnixMillis++
				s.qcs[1] = &q
			}},
		{name: "one bad signature among valid QCs", want: Reject, stage: stageVerify,
			mutate: func(t *testing.T, u *unitMesh, s *spec) {
				bad := u.f.qcFrom(t, mustTxHash(t, testRequest(9)), testEffects(9, 0x25), 0, 2, 3)
				corruptQC(bad)
				s.qcs = append(s.qcs, bad)
			},
			check: acceptsFixtureLater(qcFixture)},
		{name: "all QCs accepted before, a signature corrupted", want: Ignore, stage: stageDuplicate,
			setup: func(t *testing.T, u *unitMesh, s *spec) {
				s.accept(t, u)
				u.RegisterQCValidator(func(context.Context, peer.ID, *qc.QC) (Verdict, error) { return mustNotRun(t)() })
			},
			mutate: func(_ *testing.T, _ *unitMesh, s *spec) {
				q := *s.qcs[0]
				corruptQC(&q)
				s.qcs[0] = &q
			}},
		{name: "QC of another signer subset after the first", want: Ignore, stage: stageDuplicate,
			setup: func(t *testing.T, u *unitMesh, s *spec) { s.accept(t, u) },
			mutate: func(t *testing.T, u *unitMesh, s *spec) {
				s.qcs = []*qc.QC{u.f.qcFrom(t, s.qcs[0].TxHash, s.qcs[0].Effects(), 0, 1, 3)}
			}},
		{name: "one new, one accepted before", want: Accept, stage: stageOK, objects: keysWithout(0),
			setup: func(t *testing.T, u *unitMesh, s *spec) {
				old := *s
				old.qcs = s.qcs[:1]
				old.accept(t, u)
			}},
		{name: "QCs accepted on the bulletin only", want: Accept, stage: stageOK,
			setup: func(t *testing.T, u *unitMesh, s *spec) {
				bull := &spec{kind: KindBulletin, topic: u.topics.bull, from: u.member, hdr: s.hdr, qcs: s.qcs}
				bull.accept(t, u)
			}},
		{name: "stateful reject of one", want: Reject, stage: stageState,
			setup: registerQC(second(Reject, errors.New("stale")))},
		{name: "stateful ignore of one", want: Accept, stage: stageOK, objects: keysWithout(1),
			setup: registerQC(second(Ignore, errors.New("known")))},
		{name: "all ignored", want: Ignore, stage: stageState,
			setup: registerQC(all(Ignore, errors.New("known")))},
		{name: "timeout", want: Ignore, stage: stageTimeout,
			cfg: func(c *Config) { c.ValidationTimeout = 50 * time.Millisecond },
			setup: func(_ *testing.T, u *unitMesh, _ *spec) {
				u.RegisterQCValidator(func(ctx context.Context, _ peer.ID, _ *qc.QC) (Verdict, error) { return waitForDeadline(ctx) })
			}},
		{name: "panic", want: Reject, stage: stagePanic, check: expectPanicCounted(KindQC),
			setup: registerQC(func(*testing.T, *spec, *qc.QC) (Verdict, error) { return panics("boom")() })},
		{name: "local publish", want: Accept, stage: stageLocal,
			setup: registerQC(func(*testing.T, *spec, *qc.QC) (Verdict, error) { return panics("local publish validated")() }),
			mutate: func(_ *testing.T, u *unitMesh, s *spec) {
				s.from, s.hdr = u.ID(), FrameHeader{Publisher: u.f.signers[0].ID(), Seq: 5}
				s.vdata = &frameObjects{header: s.hdr, local: true, qcs: s.qcs}
			}},
	})
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
