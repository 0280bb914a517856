package bench

import (
	"context"
	"math"
	"reflect"
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
	// A run of 100 payments on 4 validators, from the object counters:
	// each of the 3 other validators decodes every transaction (300 tx
	// objects received), verifies the 3 others' certificates (1,200) and
	// takes in 150 QCs on the bulletin and 250 on the shard. The frame
	// counters are what frames of several objects give; the work does not
	// depend on them.
	valid := func() p2p.Stats {
		var s p2p.Stats
		s.Tx = p2p.TopicStats{Published: 40, ObjectsPublished: 100, Accepted: 40 + 90, ObjectsReceived: 300, ObjectsNew: 300}
		s.Bulletin = p2p.TopicStats{Published: 150, ObjectsPublished: 600, Accepted: 150 + 400, ObjectsReceived: 1200 + 150, ObjectsNew: 1200 + 100}
		s.QC = p2p.TopicStats{Published: 60, ObjectsPublished: 200, Accepted: 60 + 120, ObjectsReceived: 250, ObjectsNew: 200}
		return s
	}
	typical := Work{Decodes: 1, Signs: 1, CertVerifies: 3, QCVerifies: (150.0 + 250) / 400}
	tests := []struct {
		name   string
		mutate func(*p2p.Stats)
		want   Work
	}{
		{"typical", func(*p2p.Stats) {}, typical},
		{"frames ignored as all seen cost nothing", func(s *p2p.Stats) {
			s.Tx.Ignored += 50
			s.Bulletin.Ignored += 70
			s.QC.Ignored += 30
			s.Bulletin.Duplicates += 20
		}, typical},
		{"the frame count does not matter, the objects do", func(s *p2p.Stats) {
			s.Bulletin.Accepted += 300
			s.QC.Rejected += 5
		}, typical},
		{"repeats inside accepted tx frames are decoded", func(s *p2p.Stats) { s.Tx.ObjectsReceived += 40 },
			Work{Decodes: 1.1, Signs: 1, CertVerifies: 3, QCVerifies: (150.0 + 250) / 400}},
		{"no QC traffic", func(s *p2p.Stats) {
			s.Bulletin.ObjectsReceived = 1200
			s.QC = p2p.TopicStats{}
		}, Work{Decodes: 1, Signs: 1, CertVerifies: 3}},
		{"fewer bulletin objects than certificates", func(s *p2p.Stats) {
			s.Bulletin.ObjectsReceived = 800
		}, Work{Decodes: 1, Signs: 1, CertVerifies: 2, QCVerifies: 250.0 / 400}},
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

// distinctTopicStats returns TopicStats with every counter set, each to
// base plus its field index, found by reflection so that a counter added
// to p2p.TopicStats is covered.
func distinctTopicStats(t *testing.T, base uint64) p2p.TopicStats {
	var s p2p.TopicStats
	v := reflect.ValueOf(&s).Elem()
	for i := range v.NumField() {
		if v.Field(i).Kind() != reflect.Uint64 {
			t.Fatalf("TopicStats.%s is not a uint64 counter", v.Type().Field(i).Name)
		}
		v.Field(i).SetUint(base + uint64(i))
	}
	return s
}

// TestStatsArithmetic: subStats and addTopicStats handle every counter.
func TestStatsArithmetic(t *testing.T) {
	a := distinctTopicStats(t, 10)
	b := distinctTopicStats(t, 1000)
	var sum p2p.TopicStats
	addTopicStats(&sum, a)
	addTopicStats(&sum, b)
	d := subStats(p2p.Stats{Tx: b, Bulletin: b, QC: b, Other: b}, p2p.Stats{Tx: a, Bulletin: a, QC: a, Other: a})
	vs, vd := reflect.ValueOf(sum), reflect.ValueOf(d.Tx)
	for i := range vs.NumField() {
		name := vs.Type().Field(i).Name
		if got, want := vs.Field(i).Uint(), uint64(1010+2*i); got != want {
			t.Errorf("addTopicStats: %s = %d, want %d", name, got, want)
		}
		if got := vd.Field(i).Uint(); got != 990 {
			t.Errorf("subStats: %s = %d, want 990", name, got)
		}
	}
	if d.Tx != d.Bulletin || d.Tx != d.QC || d.Tx != d.Other {
		t.Errorf("subStats differs by topic: %+v", d)
	}
}

func TestMessageAndObjectCopies(t *testing.T) {
	tests := []struct {
		name            string
		stats           p2p.Stats
		frames, objects float64
	}{
		{"own publishes excluded, duplicates and ignored frames included", p2p.Stats{
			Tx:       p2p.TopicStats{Published: 4, Accepted: 4 + 10, Ignored: 2, Duplicates: 3, ObjectsReceived: 25},
			Bulletin: p2p.TopicStats{Published: 8, Accepted: 8 + 20, Rejected: 1, ObjectsReceived: 60},
			QC:       p2p.TopicStats{Published: 2, Accepted: 2 + 5, Duplicates: 6, ObjectsReceived: 9},
		}, (10 + 2 + 3) + (20 + 1) + (5 + 6), 25 + 60 + 9},
		{"other topics are not the committee's", p2p.Stats{
			Tx:    p2p.TopicStats{Published: 1, Accepted: 3, ObjectsReceived: 2},
			Other: p2p.TopicStats{Accepted: 100, ObjectsReceived: 100},
		}, 2, 2},
		{"nothing received", p2p.Stats{Tx: p2p.TopicStats{Published: 3, Accepted: 3, ObjectsPublished: 9}}, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := messageCopies(tc.stats); got != tc.frames {
				t.Errorf("messageCopies = %v, want %v", got, tc.frames)
			}
			if got := objectCopies(tc.stats); got != tc.objects {
				t.Errorf("objectCopies = %v, want %v", got, tc.objects)
			}
		})
	}
}

func TestObjectsPerFrame(t *testing.T) {
	tests := []struct {
		name  string
		stats p2p.TopicStats
		want  float64
	}{
		{"one object each", p2p.TopicStats{Published: 5, ObjectsPublished: 5}, 1},
		{"frames of several", p2p.TopicStats{Published: 4, ObjectsPublished: 10}, 2.5},
		{"no frames", p2p.TopicStats{}, math.NaN()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := objectsPerFrame(tc.stats)
			if !(near(got, tc.want) || math.IsNaN(got) && math.IsNaN(tc.want)) {
				t.Errorf("objectsPerFrame = %v, want %v", got, tc.want)
			}
		})
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
