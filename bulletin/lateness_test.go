package bulletin

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/allegro-mesh/allegro/qc"
)

func TestLatenessBound(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name    string
		samples []time.Duration
		want    time.Duration
	}{
		{"no samples", nil, 0},
		{"one sample", []time.Duration{30 * ms}, 60 * ms},
		{"uniform", repeat(40, 100*ms), 200 * ms},
		// A crashed first-ranked member makes a third of the samples a
		// whole step late: the bound must not follow them.
		{"a third late", append(repeat(22, 10*ms), repeat(10, 5*time.Second)...), 20 * ms},
		// Only the last latenessSamples count: the mesh slowed down.
		{"slowed down", append(repeat(40, 10*ms), repeat(latenessSamples, 300*ms)...), 600 * ms},
		{"sped up", append(repeat(40, 300*ms), repeat(latenessSamples, 10*ms)...), 20 * ms},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l lateness
			for _, d := range tc.samples {
				l.observe(d)
			}
			if got := l.bound(); got != tc.want {
				t.Fatalf("bound %s, want %s", got, tc.want)
			}
		})
	}
}

func repeat(n int, d time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

// TestPublishStepFollowsLateness: when the mesh's QCs come later than the
// configured step, a ranked node waits longer before publishing its own, so
// it stays quiet where a fixed step would have made it publish a duplicate;
// the step stays within PublishStepMax.
func TestPublishStepFollowsLateness(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 4)
		cfg := DefaultConfig()
		cfg.PublishStep, cfg.PublishStepMax = 200*time.Millisecond, 2*time.Second
		pub := &recordingPublisher{}
		b := f.boardPublishing(t, cfg, 0, pub)
		e := effects(1, 2, 0)
		// Transactions this node is ranked second for: it waits one step.
		var seq uint64
		nextTx := func() qc.Hash {
			for {
				seq++
				if h := txHash(byte(seq), seq); b.publishRank(h) == 1 {
					return h
				}
			}
		}
		form := func(h qc.Hash) *qc.QC {
			var formed *qc.QC
			for _, s := range f.signers[:3] {
				if r := b.AddCertificate(s.Sign(h, e, 1)); r.Formed != nil {
					formed = r.Formed
				}
			}
			if formed == nil {
				t.Fatal("no QC formed")
			}
			return formed
		}
		if got := b.publishStep(); got != cfg.PublishStep {
			t.Fatalf("step before any sample %s, want the configured %s", got, cfg.PublishStep)
		}

		// The mesh's copy comes 400 ms after this node formed each QC.
		for range latenessSamples {
			q := form(nextTx())
			time.Sleep(400 * time.Millisecond)
			b.AddQC(q)
		}
		time.Sleep(cfg.PublishStepMax) // every pending turn has come
		synctest.Wait()
		if got := b.publishStep(); got != 800*time.Millisecond {
			t.Fatalf("step %s after the mesh's QCs came 400 ms late, want 800ms", got)
		}
		if got := testutil.ToFloat64(b.metrics.publishStep); got != 0.8 {
			t.Fatalf("allegro_bulletin_qc_publish_step_seconds %v, want 0.8", got)
		}

		// A QC arriving 500 ms late no longer makes this node publish.
		published := pub.count()
		skipped := testutil.ToFloat64(b.metrics.qcs.WithLabelValues("publish_skipped"))
		q := form(nextTx())
		time.Sleep(500 * time.Millisecond)
		b.AddQC(q)
		time.Sleep(time.Second) // past its turn
		synctest.Wait()
		if pub.count() != published {
			t.Fatal("published a QC the mesh delivered within the adapted step")
		}
		if testutil.ToFloat64(b.metrics.qcs.WithLabelValues("publish_skipped")) != skipped+1 {
			t.Fatal("the delayed publication did not run and skip")
		}

		// Very late QCs: the step stops at PublishStepMax.
		for range latenessSamples {
			q := form(nextTx())
			time.Sleep(10 * time.Second)
			b.AddQC(q)
		}
		if got := b.publishStep(); got != cfg.PublishStepMax {
			t.Fatalf("step %s, want the cap %s", got, cfg.PublishStepMax)
		}
	})
}
