package bench

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/p2p"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func TestLimit(t *testing.T) {
	tests := []struct {
		name   string
		cores  float64
		n      int
		micros float64
		want   float64
	}{
		// 2 cores, 4 validators of 250 µs: 1 ms of CPU per payment.
		{"two cores, four validators", 2, 4, 250, 2000},
		{"one core, one validator", 1, 1, 100, 10_000},
		{"fractional cores", 0.5, 4, 250, 500},
		{"n=31", 2, 31, 2000, 2e6 / 62_000},
		{"no validators", 2, 0, 250, 0},
		{"no work", 2, 4, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Limit(tc.cores, tc.n, tc.micros); !near(got, tc.want) {
				t.Errorf("Limit(%v, %d, %v) = %v, want %v", tc.cores, tc.n, tc.micros, got, tc.want)
			}
		})
	}
}

func TestWorkMicros(t *testing.T) {
	c := OpCosts{DecodeRecover: 50, Sign: 25, VerifyCert: 55, VerifyQC: map[int]float64{4: 165, 7: 275}}
	tests := []struct {
		name string
		w    Work
		n    int
		want float64
	}{
		{"minimal n=4", MinimalWork(4), 4, 50 + 25 + 3*55},
		{"minimal n=7", MinimalWork(7), 7, 50 + 25 + 6*55},
		{"with QC verifies", Work{Decodes: 1, Signs: 1, CertVerifies: 3, QCVerifies: 0.5}, 4, 50 + 25 + 3*55 + 0.5*165},
		{"QC cost of an unmeasured size is zero", Work{QCVerifies: 2}, 10, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.w.Micros(c, tc.n); !near(got, tc.want) {
				t.Errorf("Micros = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestWorkFromStats(t *testing.T) {
	const n, payments = 4, 100
	// A run of 100 payments on 4 validators: each validator publishes its
	// certificate (400 bulletin publishes) and the QC twice in all (200
	// bulletin + 200 shard publishes); entries publish each tx once.
	valid := func() p2p.Stats {
		var s p2p.Stats
		s.Tx = p2p.TopicStats{Published: 100, Accepted: 100 + 300} // 3 remote copies validated per payment
		s.Bulletin = p2p.TopicStats{Published: 600, Accepted: 600 + 1200 + 150}
		s.QC = p2p.TopicStats{Published: 200, Accepted: 200 + 250}
		return s
	}
	tests := []struct {
		name   string
		mutate func(*p2p.Stats)
		want   Work
	}{
		{"typical", func(*p2p.Stats) {}, Work{Decodes: 1, Signs: 1, CertVerifies: 3, QCVerifies: (150.0 + 250) / 400}},
		{"rejected and ignored copies were verified too", func(s *p2p.Stats) {
			s.QC.Accepted -= 50
			s.QC.Rejected += 30
			s.QC.Ignored += 20
		}, Work{Decodes: 1, Signs: 1, CertVerifies: 3, QCVerifies: (150.0 + 250) / 400}},
		{"no QC traffic", func(s *p2p.Stats) {
			s.Bulletin.Accepted = 600 + 1200
			s.QC = p2p.TopicStats{}
		}, Work{Decodes: 1, Signs: 1, CertVerifies: 3}},
		{"fewer bulletin validations than certificates", func(s *p2p.Stats) {
			s.Bulletin.Accepted = 600 + 800
		}, Work{Decodes: 1, Signs: 1, CertVerifies: 2, QCVerifies: 250.0 / 400}},
		{"duplicate tx validations", func(s *p2p.Stats) { s.Tx.Accepted += 40 }, Work{Decodes: 1.1, Signs: 1, CertVerifies: 3, QCVerifies: (150.0 + 250) / 400}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := valid()
			tc.mutate(&s)
			got := WorkFromStats(s, n, payments)
			if !near(got.Decodes, tc.want.Decodes) || !near(got.Signs, tc.want.Signs) ||
				!near(got.CertVerifies, tc.want.CertVerifies) || !near(got.QCVerifies, tc.want.QCVerifies) {
				t.Errorf("WorkFromStats = %+v, want %+v", got, tc.want)
			}
		})
	}
	if got := WorkFromStats(valid(), 0, payments); got != (Work{}) {
		t.Errorf("no validators: %+v", got)
	}
	if got := WorkFromStats(valid(), n, 0); got != (Work{}) {
		t.Errorf("no payments: %+v", got)
	}
}

func TestSubStats(t *testing.T) {
	a := p2p.Stats{Tx: p2p.TopicStats{Published: 1, Accepted: 2}, QC: p2p.TopicStats{Duplicates: 3}}
	b := p2p.Stats{Tx: p2p.TopicStats{Published: 5, Accepted: 9}, QC: p2p.TopicStats{Duplicates: 10}, Bulletin: p2p.TopicStats{Dropped: 4}}
	got := subStats(b, a)
	want := p2p.Stats{Tx: p2p.TopicStats{Published: 4, Accepted: 7}, QC: p2p.TopicStats{Duplicates: 7}, Bulletin: p2p.TopicStats{Dropped: 4}}
	if got != want {
		t.Errorf("subStats = %+v, want %+v", got, want)
	}
	if c := messageCopies(want); c != 7+7-4 {
		t.Errorf("messageCopies = %v, want 10", c)
	}
}

// TestMeasureCosts: every cost is measured and positive, for each size.
func TestMeasureCosts(t *testing.T) {
	c, err := MeasureCosts(context.Background(), DefaultChainID, []int{4, 7}, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]float64{"decode": c.DecodeRecover, "sign": c.Sign, "verify": c.VerifyCert, "verify stdlib": c.VerifyCertStdlib, "qc4": c.VerifyQC[4], "qc7": c.VerifyQC[7]} {
		if !(v > 0) {
			t.Errorf("%s cost = %v, want > 0", name, v)
		}
	}
	if len(c.VerifyQC) != 2 {
		t.Errorf("VerifyQC sizes = %v, want 4 and 7", c.VerifyQC)
	}
	rows := costRows(c)
	if len(rows) != 4+2+2 {
		t.Errorf("%d cost rows, want 8", len(rows))
	}
}
