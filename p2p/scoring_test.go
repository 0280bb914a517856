package p2p

import (
	"math"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
)

// TestScoreParts: a score snapshot is broken down into pubsub's terms with
// the configured weights, topics grouped by kind, positive topic sums
// capped; the terms add up to what pubsub's formula gives.
func TestScoreParts(t *testing.T) {
	s := DefaultConfig().Scoring // invalid -100, bonus 2500, colocation -50, behaviour -10 over 6
	tx, bull := TxTopic(1, 1), BulletinTopic(1, 1)
	qc0, qc5 := QCTopic(1, 1, 0), QCTopic(1, 1, 5)
	for _, tc := range []struct {
		name  string
		snap  pubsub.PeerScoreSnapshot
		kinds map[string]TopicScoreParts // by kind: the wanted terms
		topic float64                    // wanted TopicSum
		total float64
	}{
		{
			name: "a penalised member on a crowded address",
			snap: pubsub.PeerScoreSnapshot{
				Topics: map[string]*pubsub.TopicScoreSnapshot{
					tx:             {TimeInMesh: 1000 * time.Second, FirstMessageDeliveries: 3, InvalidMessageDeliveries: 2},
					qc0:            {TimeInMesh: 10*time.Second + 900*time.Millisecond, FirstMessageDeliveries: 1},
					qc5:            {TimeInMesh: 20 * time.Second, FirstMessageDeliveries: 1},
					"/other/topic": {InvalidMessageDeliveries: 1},
				},
				AppSpecificScore: 2500, IPColocationFactor: 4, BehaviourPenalty: 8,
			},
			kinds: map[string]TopicScoreParts{
				"tx":    {Topics: 1, TimeInMesh: 1000 * time.Second, TimeInMeshScore: 5, FirstDeliveries: 3, FirstDeliveriesScore: 3, InvalidDeliveries: 2, InvalidScore: -400},
				"qc":    {Topics: 2, TimeInMesh: 20 * time.Second, TimeInMeshScore: 0.3, FirstDeliveries: 2, FirstDeliveriesScore: 2},
				"other": {Topics: 1, InvalidDeliveries: 1, InvalidScore: -100},
			},
			topic: 5 + 3 - 400 + 0.3 + 2 - 100,
			total: 5 + 3 - 400 + 0.3 + 2 - 100 + 2500 - 50*4 - 10*2*2,
		},
		{
			name: "a busy outsider: positive topic terms capped",
			snap: pubsub.PeerScoreSnapshot{
				Topics: map[string]*pubsub.TopicScoreSnapshot{
					tx:   {TimeInMesh: time.Hour, FirstMessageDeliveries: 15},
					bull: {TimeInMesh: time.Hour, FirstMessageDeliveries: 15},
				},
				BehaviourPenalty: 5, // under the threshold: no penalty
			},
			kinds: map[string]TopicScoreParts{
				"tx":       {Topics: 1, TimeInMesh: time.Hour, TimeInMeshScore: 5, FirstDeliveries: 15, FirstDeliveriesScore: 15},
				"bulletin": {Topics: 1, TimeInMesh: time.Hour, TimeInMeshScore: 5, FirstDeliveries: 15, FirstDeliveriesScore: 15},
			},
			topic: 40,
			total: topicScoreCap,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := scoreParts(s, &tc.snap)
			near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
			if len(p.Topics) != len(tc.kinds) {
				t.Fatalf("topic kinds %+v, want %d", p.Topics, len(tc.kinds))
			}
			for _, k := range p.Topics {
				w, ok := tc.kinds[k.Kind]
				w.Kind = k.Kind
				if !ok || k.Topics != w.Topics || k.TimeInMesh != w.TimeInMesh || !near(k.TimeInMeshScore, w.TimeInMeshScore) ||
					!near(k.FirstDeliveries, w.FirstDeliveries) || !near(k.FirstDeliveriesScore, w.FirstDeliveriesScore) ||
					!near(k.InvalidDeliveries, w.InvalidDeliveries) || !near(k.InvalidScore, w.InvalidScore) {
					t.Errorf("kind %s: %+v, want %+v", k.Kind, k, w)
				}
			}
			if !near(p.TopicSum, tc.topic) || p.TopicCap != topicScoreCap {
				t.Errorf("topic sum %v (cap %v), want %v", p.TopicSum, p.TopicCap, tc.topic)
			}
			if !near(p.Total(), tc.total) {
				t.Errorf("total %v, want %v (%+v)", p.Total(), tc.total, p)
			}
		})
	}
}
