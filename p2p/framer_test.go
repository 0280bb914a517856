package p2p

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/qc"
)

// queuedFor returns n objects of kind for validator 0 of c to publish (the
// bulletin's are its own certificates) and their keys.
func queuedFor(t *testing.T, f *fixture, kind TopicKind, first, n int) ([]queued, []string) {
	t.Helper()
	var objs []queued
	var keys []string
	for _, req := range requests(first, n) {
		h := mustTxHash(t, req)
		switch kind {
		case KindTx:
			objs = append(objs, mustQueuedTx(t, &TxMessage{Request: req, TxHash: h}))
			keys = append(keys, txKey(h))
		case KindBulletin:
			cert := f.cert(0, h, testEffects(req.GetTx().GetNonce().GetNonceSeq(), 0x10))
			objs = append(objs, queuedCert(&cert))
			keys = append(keys, certKey(&cert))
		default:
			t.Fatalf("queuedFor(%s)", kind)
		}
	}
	return objs, keys
}

// enqueueAtOnce puts objs on n's publisher loop of kind in one step, so the
// loop finds them all queued when it wakes: the state a burst of publishes
// leaves behind while the previous frame is being published.
func enqueueAtOnce(t *testing.T, n *node, kind TopicKind, objs []queued) {
	t.Helper()
	topic := n.topics.tx
	if kind == KindBulletin {
		topic = n.topics.bull
	}
	fr, err := n.framerFor(kind, topic)
	if err != nil {
		t.Fatal(err)
	}
	if err := fr.enqueue(objs...); err != nil {
		t.Fatal(err)
	}
}

func (n *node) recorded(kind TopicKind) interface {
	hasAll([]string) bool
	uniqueRemote() int
	repeats() []string
} {
	if kind == KindTx {
		return &n.txs
	}
	return &n.bull
}

func topicOf(kind TopicKind) string {
	if kind == KindTx {
		return TxTopic(testDomain.ChainID, testDomain.Epoch)
	}
	return BulletinTopic(testDomain.ChainID, testDomain.Epoch)
}

func statsFor(n *node, kind TopicKind) TopicStats {
	if kind == KindTx {
		return n.Stats().Tx
	}
	return n.Stats().Bulletin
}

// waitPublished waits until n counted objects published on kind and
// returns its stats. A frame's counters move when its publish returns,
// which can be after a peer delivered it.
func waitPublished(t *testing.T, n *node, kind TopicKind, objects int) TopicStats {
	t.Helper()
	var st TopicStats
	testkit.Eventually(t, 10*time.Second, fmt.Sprintf("%s to count %d %s objects published", n.name, objects, kind), func() bool {
		st = statsFor(n, kind)
		return st.ObjectsPublished >= uint64(objects)
	})
	return st
}

// checkFrames checks frames a tap saw against the caps of cfg: at most
// FrameMaxObjects objects each and at most FrameMaxBytes bytes unless the
// frame holds a single object (which goes alone, however large). It
// returns the total number of objects.
func checkFrames(t *testing.T, kind TopicKind, frames [][]byte, cfg Config) int {
	t.Helper()
	total := 0
	for i, data := range frames {
		_, n, err := DecodeFrame(kind, data)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if n > cfg.FrameMaxObjects {
			t.Errorf("frame %d holds %d objects, cap %d", i, n, cfg.FrameMaxObjects)
		}
		if n > 1 && len(data) > cfg.FrameMaxBytes {
			t.Errorf("frame %d of %d objects is %d bytes, cap %d", i, n, len(data), cfg.FrameMaxBytes)
		}
		total += n
	}
	return total
}

// TestFramerLightLoad: at light load a frame holds one object and leaves
// at once: publishing, waiting for delivery and publishing again makes one
// frame per object.
func TestFramerLightLoad(t *testing.T) {
	c := newCluster(t, clusterOpts{validators: 2})
	ctx := testCtx(t, 60*time.Second)
	v0, v1 := c.validators[0], c.validators[1]
	const rounds = 5
	for i := range rounds {
		seq := uint64(100 + i)
		req := testRequest(seq)
		cert := c.f.cert(0, mustTxHash(t, req), testEffects(seq, 0x10))
		if err := v0.PublishTx(ctx, req); err != nil {
			t.Fatal(err)
		}
		if err := v0.PublishCertificate(ctx, cert); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 20*time.Second, fmt.Sprintf("round %d delivered", i), func() bool {
			return v1.txs.has(txKey(mustTxHash(t, req))) && v1.bull.has(certKey(&cert))
		})
	}
	for _, kind := range []TopicKind{KindTx, KindBulletin} {
		if st := waitPublished(t, v0, kind, rounds); st.Published != rounds || st.ObjectsPublished != rounds {
			t.Errorf("%s: %d frames for %d objects, want %d of each", kind, st.Published, st.ObjectsPublished, rounds)
		}
		total, single := histogram(t, v1.reg, "allegro_p2p_frame_objects", map[string]string{"topic": kind.String(), "direction": "received"}, 1)
		if total != rounds || single != rounds {
			t.Errorf("%s: %d of %d frames received held one object, want all %d", kind, single, total, rounds)
		}
	}
	// What v0 sent its one peer: each frame once, counted with its bytes.
	st := v0.Stats()
	for kind, ts := range map[TopicKind]TopicStats{KindTx: st.Tx, KindBulletin: st.Bulletin} {
		if ts.Sent != rounds || ts.SentBytes < rounds*100 {
			t.Errorf("%s: %d frames of %d bytes sent, want %d frames", kind, ts.Sent, ts.SentBytes, rounds)
		}
		if got := metricValue(t, v0.reg, "allegro_p2p_frame_bytes_sent_total", map[string]string{"topic": kind.String()}); got != float64(ts.SentBytes) {
			t.Errorf("%s: metric says %v bytes sent, stats %d", kind, got, ts.SentBytes)
		}
	}
}

// TestFramerUnderLoad: objects queued while a frame is being built go out
// together, so under load frames grow by themselves: 2,000 objects queued
// at once leave in a few frames within the default caps, and every peer
// gets every object exactly once.
func TestFramerUnderLoad(t *testing.T) {
	const n = 2_000
	for _, kind := range []TopicKind{KindTx, KindBulletin} {
		t.Run(kind.String(), func(t *testing.T) {
			c := newCluster(t, clusterOpts{validators: 3})
			v0 := c.validators[0]
			tap := tapTopic(t, c.validators[1], topicOf(kind))
			objs, keys := queuedFor(t, c.f, kind, 10_000, n)
			enqueueAtOnce(t, v0, kind, objs)
			waitFor(t, 60*time.Second, "every object at every peer", func() string {
				for _, v := range c.validators[1:] {
					if got := v.recorded(kind).uniqueRemote(); got < n {
						return fmt.Sprintf("%s has %d of %d", v.name, got, n)
					}
				}
				return ""
			})
			for _, v := range c.validators[1:] {
				r := v.recorded(kind)
				if !r.hasAll(keys) {
					t.Errorf("%s is missing objects", v.name)
				}
				if rep := r.repeats(); len(rep) > 0 {
					t.Errorf("%s got %d objects more than once", v.name, len(rep))
				}
				if st := statsFor(v, kind); st.Delivered != n || st.ObjectsNew != n || st.ObjectsReceived != n {
					t.Errorf("%s: stats %+v", v.name, st)
				}
			}
			st := waitPublished(t, v0, kind, n)
			cfg := v0.cfg
			minFrames := uint64((n + cfg.FrameMaxObjects - 1) / cfg.FrameMaxObjects)
			if st.ObjectsPublished != n || st.Published < minFrames || st.Published > n/10 {
				t.Errorf("%d objects in %d frames; want %d objects in [%d, %d] frames", st.ObjectsPublished, st.Published, n, minFrames, n/10)
			}
			testkit.Eventually(t, 10*time.Second, "the tap to see every frame", func() bool {
				return len(tap.snapshot()) == int(st.Published)
			})
			if got := checkFrames(t, kind, tap.snapshot(), cfg); got != n {
				t.Errorf("frames carried %d objects, want %d", got, n)
			}
			t.Logf("%s: %d objects in %d frames", kind, n, st.Published)
		})
	}
}

// TestFramerCaps: frames respect FrameMaxObjects and FrameMaxBytes, and an
// object larger than FrameMaxBytes still goes, alone.
func TestFramerCaps(t *testing.T) {
	big := testRequest(777)
	big.Tx.TempoTx.Data = make([]byte, 3000)
	cases := []struct {
		name  string
		tweak func(*Config)
		reqs  []*fastpayv1.SubmitFastPayRequest
		// frames is the exact number of frames, when the caps determine it.
		frames int
	}{
		{name: "FrameMaxObjects", tweak: func(c *Config) { c.FrameMaxObjects = 16 }, reqs: requests(20_000, 300), frames: 19},
		{name: "FrameMaxBytes", tweak: func(c *Config) { c.FrameMaxBytes = 2048 }, reqs: requests(21_000, 300)},
		{name: "an object over FrameMaxBytes goes alone", tweak: func(c *Config) { c.FrameMaxBytes = 2048 },
			reqs: []*fastpayv1.SubmitFastPayRequest{testRequest(22_000), big, testRequest(22_001)}, frames: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, clusterOpts{validators: 2, tweak: tc.tweak})
			v0, v1 := c.validators[0], c.validators[1]
			tap := tapTopic(t, v1, topicOf(KindTx))
			var objs []queued
			var keys []string
			for _, req := range tc.reqs {
				h := mustTxHash(t, req)
				objs = append(objs, mustQueuedTx(t, &TxMessage{Request: req, TxHash: h}))
				keys = append(keys, txKey(h))
			}
			enqueueAtOnce(t, v0, KindTx, objs)
			testkit.Eventually(t, 30*time.Second, "every object delivered", func() bool { return v1.txs.hasAll(keys) })
			st := waitPublished(t, v0, KindTx, len(keys))
			testkit.Eventually(t, 10*time.Second, "the tap to see every frame", func() bool {
				return len(tap.snapshot()) == int(st.Published)
			})
			if got := checkFrames(t, KindTx, tap.snapshot(), v0.cfg); got != len(keys) {
				t.Errorf("frames carried %d objects, want %d", got, len(keys))
			}
			if tc.frames > 0 && st.Published != uint64(tc.frames) {
				t.Errorf("%d frames, want %d", st.Published, tc.frames)
			}
			// The sent-size histogram agrees (its buckets are powers of two).
			if maxObjects := v0.cfg.FrameMaxObjects; maxObjects == 16 {
				total, within := histogram(t, v0.reg, "allegro_p2p_frame_objects", map[string]string{"topic": "tx", "direction": "sent"}, float64(maxObjects))
				if total != st.Published || within != total {
					t.Errorf("%d of %d frames sent within the cap of %d objects", within, total, maxObjects)
				}
			}
			t.Logf("%d objects in %d frames", len(keys), st.Published)
		})
	}
}

// TestPublishQueueFull: a topic's queue holds at most PublishQueueSize
// objects; a publish into a full queue fails with ErrPublishQueueFull and
// is counted, and the other topics' queues are not affected. A linger
// longer than the test keeps the publisher loop from draining the queue.
func TestPublishQueueFull(t *testing.T) {
	c := newCluster(t, clusterOpts{validators: 1, tweak: func(c *Config) {
		c.PublishQueueSize = 4
		c.FrameLinger = time.Hour
	}})
	ctx := testCtx(t, 10*time.Second)
	v := c.validators[0]
	for i, req := range requests(30_000, 4) {
		if err := v.PublishTx(ctx, req); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	if err := v.PublishTx(ctx, testRequest(30_004)); !errors.Is(err, ErrPublishQueueFull) {
		t.Fatalf("publish into a full queue = %v", err)
	}
	// All or none: two objects do not fit where one does not.
	fr, err := v.framerFor(KindTx, v.topics.tx)
	if err != nil {
		t.Fatal(err)
	}
	objs, _ := queuedFor(t, c.f, KindTx, 30_010, 2)
	if err := fr.enqueue(objs...); !errors.Is(err, ErrPublishQueueFull) {
		t.Fatalf("enqueue of two into a full queue = %v", err)
	}
	if st := v.Stats().Tx; st.PublishErrors != 3 || st.Published != 0 {
		t.Errorf("tx stats %+v, want 3 objects refused, no frame", st)
	}
	if got := metricValue(t, v.reg, "allegro_p2p_frame_objects_total", map[string]string{"topic": "tx", "kind": "queue_full"}); got != 3 {
		t.Errorf("frame_objects_total{queue_full} = %v", got)
	}
	// The bulletin has its own queue.
	h := mustTxHash(t, testRequest(30_004))
	if err := v.PublishCertificate(ctx, c.f.cert(0, h, testEffects(30_004, 0x10))); err != nil {
		t.Errorf("certificate refused while the tx queue is full: %v", err)
	}
}

// TestFramerSkipsAcceptedQC: a QC accepted from a peer while ours waited in
// a topic's queue is left out of the frame being built (it would carry
// nothing new) and counted as skipped; acceptance on the bulletin does not
// skip the QC on its shard, whose subscribers need it.
func TestFramerSkipsAcceptedQC(t *testing.T) {
	u := newUnitMesh(t, nil)
	f := u.f
	eff := testEffects(40, 0x10)
	q := f.qcFrom(t, mustTxHash(t, testRequest(40)), eff, 1, 2, 3)
	q2 := f.qcFrom(t, mustTxHash(t, testRequest(41)), eff, 1, 2, 3)
	cert := f.cert(0, q2.TxHash, eff)
	u.expect(t, "QC from a peer", KindBulletin, u.topics.bull, u.member, encBulletin(t, f.hdr(1, 1), nil, []*qc.QC{q}, nil), nil, Accept, stageOK)

	skipped := func(k TopicKind) float64 {
		return metricValue(t, u.reg, "allegro_p2p_frame_objects_total", map[string]string{"topic": k.String(), "kind": "skipped"})
	}
	bull := newFramer(u.Mesh, KindBulletin, u.topics.bull)
	if err := bull.enqueue(queuedQC(q), queuedCert(&cert), queuedQC(q2)); err != nil {
		t.Fatal(err)
	}
	got := bull.take()
	if len(got) != 2 || got[0].cert == nil || got[1].qc != q2 {
		t.Errorf("bulletin frame of %d objects, want the certificate and the new QC", len(got))
	}
	if rest := bull.take(); len(rest) != 0 {
		t.Errorf("%d objects left queued", len(rest))
	}
	if skipped(KindBulletin) != 1 {
		t.Errorf("skipped{bulletin} = %v", skipped(KindBulletin))
	}

	shard := newFramer(u.Mesh, KindQC, u.topics.qcTopicFor(eff.Recipient))
	if err := shard.enqueue(queuedQC(q)); err != nil {
		t.Fatal(err)
	}
	if got := shard.take(); len(got) != 1 || got[0].qc != q {
		t.Errorf("shard frame of %d objects, want the QC accepted on the bulletin only", len(got))
	}
	if skipped(KindQC) != 0 {
		t.Errorf("skipped{qc} = %v", skipped(KindQC))
	}
}

// TestFrameLinger: with FrameLinger set, the publisher loop waits before
// building a frame; everything is still delivered.
func TestFrameLinger(t *testing.T) {
	c := newCluster(t, clusterOpts{validators: 2, tweak: func(c *Config) { c.FrameLinger = 20 * time.Millisecond }})
	ctx := testCtx(t, 30*time.Second)
	v0, v1 := c.validators[0], c.validators[1]
	var keys []string
	for _, req := range requests(50_000, 20) {
		if err := v0.PublishTx(ctx, req); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, txKey(mustTxHash(t, req)))
	}
	testkit.Eventually(t, 20*time.Second, "every tx delivered", func() bool { return v1.txs.hasAll(keys) })
	st := waitPublished(t, v0, KindTx, 20)
	if st.ObjectsPublished != 20 || st.Published > 20 {
		t.Errorf("%d objects in %d frames", st.ObjectsPublished, st.Published)
	}
	t.Logf("20 objects in %d frames", st.Published)
}

// TestFramePacing: after a frame of one object the next leaves at once, so
// light load is not delayed; after a frame of several, the next waits out
// FrameInterval and carries everything queued meanwhile.
func TestFramePacing(t *testing.T) {
	const interval = 900 * time.Millisecond
	c := newCluster(t, clusterOpts{validators: 2, tweak: func(c *Config) { c.FrameInterval = interval }})
	ctx := testCtx(t, 60*time.Second)
	v0, v1 := c.validators[0], c.validators[1]

	// Light load: one object per frame, each delivered long before the
	// interval would have let it go.
	reqs := requests(60_000, 3+2+5)
	for i, req := range reqs[:3] {
		if err := v0.PublishTx(ctx, req); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, interval*2/3, fmt.Sprintf("light-load tx %d delivered without waiting for the interval", i), func() bool {
			return v1.txs.has(txKey(mustTxHash(t, req)))
		})
	}
	if st := waitPublished(t, v0, KindTx, 3); st.Published != 3 {
		t.Fatalf("light load: %d frames for 3 objects", st.Published)
	}

	// Load: a frame of two objects, then five objects published one by one
	// right after it: they wait for the interval and leave as one frame.
	start := time.Now()
	var burst []queued
	for _, req := range reqs[3:5] {
		burst = append(burst, mustQueuedTx(t, &TxMessage{Request: req, TxHash: mustTxHash(t, req)}))
	}
	enqueueAtOnce(t, v0, KindTx, burst)
	waitPublished(t, v0, KindTx, 5)
	var keys []string
	for _, req := range reqs[5:] {
		if err := v0.PublishTx(ctx, req); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, txKey(mustTxHash(t, req)))
	}
	testkit.Eventually(t, 20*time.Second, "the paced objects delivered", func() bool { return v1.txs.hasAll(keys) })
	if waited := time.Since(start); waited < interval {
		t.Errorf("paced objects delivered %s after the two-object frame started, before the %s interval", waited, interval)
	}
	if st := waitPublished(t, v0, KindTx, 10); st.Published != 5 || st.ObjectsPublished != 10 {
		t.Errorf("%d objects in %d frames, want 10 in 5 (3 alone, a pair, then the five paced together)", st.ObjectsPublished, st.Published)
	}
}

// TestPacingGate: with the pacing gate closed (a validator with nothing
// else in flight), the object after a frame of several leaves at once; once
// the gate opens, the next one waits out the interval again.
func TestPacingGate(t *testing.T) {
	const interval = 900 * time.Millisecond
	c := newCluster(t, clusterOpts{validators: 2, tweak: func(c *Config) { c.FrameInterval = interval }})
	ctx := testCtx(t, 60*time.Second)
	v0, v1 := c.validators[0], c.validators[1]
	var open atomic.Bool
	v0.SetPacingGate(open.Load)
	reqs := requests(61_000, 2+1+2+1)
	pair := func(reqs []*fastpayv1.SubmitFastPayRequest, published int) {
		t.Helper()
		var objs []queued
		for _, req := range reqs {
			objs = append(objs, mustQueuedTx(t, &TxMessage{Request: req, TxHash: mustTxHash(t, req)}))
		}
		enqueueAtOnce(t, v0, KindTx, objs)
		waitPublished(t, v0, KindTx, published)
	}

	pair(reqs[:2], 2)
	if err := v0.PublishTx(ctx, reqs[2]); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, interval*2/3, "the object after a two-object frame, gate closed, delivered at once", func() bool {
		return v1.txs.has(txKey(mustTxHash(t, reqs[2])))
	})

	open.Store(true)
	pair(reqs[3:5], 5)
	start := time.Now()
	if err := v0.PublishTx(ctx, reqs[5]); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "the object after a two-object frame, gate open, delivered", func() bool {
		return v1.txs.has(txKey(mustTxHash(t, reqs[5])))
	})
	// The pair's frame started before start, so the wait seen from here is
	// at least the interval less the time the pair took to publish.
	if waited := time.Since(start); waited < interval/2 {
		t.Errorf("gate open: the object after a two-object frame delivered after %s, not paced by the %s interval", waited, interval)
	}
}

// TestPacedInterval: the configured interval is that of a committee of
// four; larger committees pace by it per three other members, capped.
func TestPacedInterval(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		base    time.Duration
		members int
		want    time.Duration
	}{
		{15 * ms, 1, 15 * ms},
		{15 * ms, 2, 15 * ms},
		{15 * ms, 4, 15 * ms},
		{15 * ms, 10, 45 * ms},
		{15 * ms, 31, 150 * ms},
		{15 * ms, 1000, maxFrameInterval},
		{0, 31, 0},                // pacing off stays off
		{900 * ms, 2, 900 * ms},   // a configured interval above the cap is kept
		{900 * ms, 100, 900 * ms}, // and not scaled past it
	} {
		if got := pacedInterval(tc.base, tc.members); got != tc.want {
			t.Errorf("pacedInterval(%s, %d) = %s, want %s", tc.base, tc.members, got, tc.want)
		}
	}
}

// TestUnwatchedShardPaces: a QC shard no light client subscribes to
// through its publisher reaches only other members, so its loop waits out
// QCUnwatchedInterval after every frame, even one of a single QC: QCs
// published one by one within the interval wait for its end and share the
// next frame.
func TestUnwatchedShardPaces(t *testing.T) {
	c := newCluster(t, clusterOpts{validators: 4, tweak: func(cfg *Config) {
		cfg.QCUnwatchedInterval = time.Second
	}})
	pub, peer := c.validators[0], c.validators[1]
	const r0 = 0x03
	topic := QCTopic(testDomain.ChainID, testDomain.Epoch, QCShard([20]byte{r0}, pub.cfg.QCShards))
	tap := tapTopic(t, peer, topic)

	var qcs []*qc.QC
	for i, req := range requests(0, 3) {
		qcs = append(qcs, c.f.qcFrom(t, mustTxHash(t, req), testEffects(uint64(i), r0), 0, 1, 2))
	}
	start := time.Now()
	if err := pub.PublishQC(t.Context(), qcs[0]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the first QC on the shard", func() string {
		if len(tap.snapshot()) == 0 {
			return "no frame yet"
		}
		return ""
	})
	// Published one after the other while the loop waits out the interval
	// that the first frame started.
	for _, q := range qcs[1:] {
		if err := pub.PublishQC(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the other QCs on the shard", func() string {
		if got := checkFrames(t, KindQC, tap.snapshot(), pub.cfg); got < len(qcs) {
			return fmt.Sprintf("%d of %d QCs", got, len(qcs))
		}
		return ""
	})
	// The second frame cannot leave before the interval since the first
	// has passed; without the pacing it leaves as soon as a QC is queued.
	if waited := time.Since(start); waited < time.Second {
		t.Errorf("the second frame arrived %s after the first QC was published, before the 1s interval", waited)
	}
	frames := tap.snapshot()
	if len(frames) != 2 {
		t.Fatalf("the shard carried %d frames, want 2 (the first QC, then the other two together)", len(frames))
	}
	if _, n, err := DecodeFrame(KindQC, frames[1]); err != nil || n != 2 {
		t.Fatalf("second frame: %d QCs (err %v), want 2", n, err)
	}
}

// TestWatchedShardIsNotPaced: a light client subscribed through a member
// makes that member's loop for the shard follow FrameInterval again, while
// its other shards stay paced; members do not count as watchers.
func TestWatchedShardIsNotPaced(t *testing.T) {
	const watched, unwatched = 2, 5
	c := newCluster(t, clusterOpts{validators: 4, lights: 1, lightShards: []int{watched}, tweak: func(cfg *Config) {
		cfg.QCUnwatchedInterval = 300 * time.Millisecond
	}})
	v := c.validators[0]
	loop := func(shard int) *framer {
		f, err := v.framerFor(KindQC, QCTopic(testDomain.ChainID, testDomain.Epoch, shard))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	if got := loop(watched).unwatchedInterval(); got != 0 {
		t.Errorf("shard %d, watched by a light client: paced at %s, want not paced", watched, got)
	}
	if got := loop(unwatched).unwatchedInterval(); got != 300*time.Millisecond {
		t.Errorf("shard %d, subscribed only by members: paced at %s, want 300ms", unwatched, got)
	}
}

func mustQueuedTx(t testing.TB, tx *TxMessage) queued {
	t.Helper()
	o, err := queuedTx(tx)
	if err != nil {
		t.Fatal(err)
	}
	return o
}
