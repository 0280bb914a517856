package bench

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTargetAndStatus(t *testing.T) {
	tests := []struct {
		name   string
		row    Row
		status string
	}{
		{"no target", Row{Value: 3}, ""},
		{"at most, met", Row{Value: 4.9, Target: AtMost(5)}, StatusPass},
		{"at most, equal is met", Row{Value: 5, Target: AtMost(5)}, StatusPass},
		{"at most, missed", Row{Value: 5.1, Target: AtMost(5)}, StatusMiss},
		{"at least, met", Row{Value: 0.6, Target: AtLeast(0.6)}, StatusPass},
		{"at least, missed", Row{Value: 0.59, Target: AtLeast(0.6)}, StatusMiss},
		{"NaN never meets", Row{Value: math.NaN(), Target: AtLeast(0)}, StatusMiss},
		{"n/a stays n/a", Row{Value: 1, Target: AtMost(5), Status: StatusNA}, StatusNA},
		{"n/a without a target is dropped", Row{Value: 1, Status: StatusNA}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.row
			r.evaluate()
			if r.Status != tc.status {
				t.Errorf("status = %q, want %q", r.Status, tc.status)
			}
		})
	}
	if got := AtMost(25).String(); got != "≤ 25.0" {
		t.Errorf("AtMost(25) = %q", got)
	}
	if got := AtLeast(0.6).String(); got != "≥ 0.6" {
		t.Errorf("AtLeast(0.6) = %q", got)
	}
}

func TestFormatValue(t *testing.T) {
	tests := []struct {
		v    float64
		want string
	}{
		{0, "0"}, {0.1234, "0.123"}, {1.234, "1.23"}, {12.345, "12.3"}, {123.4, "123"},
		{1234.5, "1,234"}, {1234567, "1,234,567"}, {-1234, "-1,234"}, {math.NaN(), "—"}, {math.Inf(1), "∞"},
	}
	for _, tc := range tests {
		if got := formatValue(tc.v); got != tc.want {
			t.Errorf("formatValue(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

// sampleReport is a small report with a target met, one missed, one n/a,
// a NaN and a note with a comma and a quote (CSV escaping).
func sampleReport() *Report {
	r := &Report{
		Started:  time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC),
		Finished: time.Date(2026, 11, 25, 12, 9, 30, 0, time.UTC),
		Machine:  Machine{GoVersion: "go1.26", NumCPU: 2, GOMAXPROCS: 2, Commit: "abc", LoadStart: []float64{1, 2, 3}, CoresUsed: 1.5},
		Settings: map[string]string{"payments": "5000"},
	}
	r.add(Row{Section: SectionLatency, Case: "n=4 loopback", Metric: "p50", Value: 4.2, Unit: "ms", Target: AtMost(5), Note: `200 payments, "one at a time"`})
	r.add(Row{Section: SectionLatency, Case: "n=4 loopback", Metric: "p99", Value: 30, Unit: "ms", Target: AtMost(25)})
	r.add(Row{Section: SectionThroughput, Case: "n=4", Metric: "achieved / limit", Value: math.NaN(), Target: AtLeast(0.6)})
	r.add(Row{Section: SectionResources, Case: "n=4 processes", Metric: "peak RSS", Value: 150, Unit: "MiB", Target: AtMost(200), Status: StatusNA})
	r.add(Row{Section: SectionCost, Case: "per operation", Metric: "certificate sign", Value: 27.5, Unit: "µs"})
	return r
}

func TestWriteCSV(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleReport().WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 6 {
		t.Fatalf("%d records, want a header and 5 rows", len(recs))
	}
	if strings.Join(recs[0], ",") != strings.Join(csvHeader, ",") {
		t.Errorf("header %v", recs[0])
	}
	want := []string{SectionLatency, "n=4 loopback", "p50", "4.2", "ms", "<=5", StatusPass, `200 payments, "one at a time"`}
	if strings.Join(recs[1], "|") != strings.Join(want, "|") {
		t.Errorf("row 1 = %q, want %q", recs[1], want)
	}
	if recs[2][6] != StatusMiss || recs[3][3] != "NaN" || recs[3][5] != ">=0.6" || recs[4][6] != StatusNA || recs[5][5] != "" {
		t.Errorf("rows %q", recs[2:])
	}
}

func TestWriteJSON(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleReport().WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Started  time.Time         `json:"started"`
		Machine  Machine           `json:"machine"`
		Settings map[string]string `json:"settings"`
		Rows     []struct {
			Section string   `json:"section"`
			Metric  string   `json:"metric"`
			Value   *float64 `json:"value"`
			Target  *Target  `json:"target"`
			Status  string   `json:"status"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if len(got.Rows) != 5 || got.Machine.Commit != "abc" || got.Settings["payments"] != "5000" || got.Started.Year() != 2026 {
		t.Fatalf("decoded %+v", got)
	}
	if r := got.Rows[0]; r.Value == nil || *r.Value != 4.2 || r.Target == nil || r.Target.Bound != 5 || r.Target.AtLeast || r.Status != StatusPass {
		t.Errorf("row 0 = %+v", r)
	}
	if r := got.Rows[2]; r.Value != nil || r.Status != StatusMiss {
		t.Errorf("NaN row = %+v, want a null value", r)
	}
	if r := got.Rows[4]; r.Target != nil || r.Status != "" {
		t.Errorf("untargeted row = %+v", r)
	}
}

func TestWriteText(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleReport().WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"took 9m30s", "GOMAXPROCS 2", "commit abc", "start 1.00/2.00/3.00, end —", "cores this process got: 1.50",
		"== Per-payment work", "== Latency", "== Throughput", "== Resources", "== Targets",
		"4.20 ms", "≤ 5.00 ms", "PASS", "MISS", "n/a",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
	// Sections come in suite order, the summary last.
	if strings.Index(out, "== Per-payment") > strings.Index(out, "== Latency") || strings.Index(out, "== Resources") > strings.Index(out, "== Targets") {
		t.Errorf("sections out of order:\n%s", out)
	}
	// Columns are aligned: the p50 and p99 lines put their values at the
	// same offset.
	var p50, p99 int
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "n=4 loopback") && !strings.Contains(line, "note") {
			if i := strings.Index(line, "4.20 ms"); i > 0 && p50 == 0 {
				p50 = i
			}
			if i := strings.Index(line, "30.0 ms"); i > 0 && p99 == 0 {
				p99 = i
			}
		}
	}
	if p50 == 0 || p50 != p99 {
		t.Errorf("value columns not aligned (p50 at %d, p99 at %d):\n%s", p50, p99, out)
	}
}

func TestWriteFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	paths, err := sampleReport().WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 3 {
		t.Fatalf("paths %v", paths)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			t.Errorf("%s: %d bytes, %v", p, len(b), err)
		}
	}
}

func TestReportFind(t *testing.T) {
	r := sampleReport()
	if row, ok := r.Find(SectionLatency, "n=4 loopback", "p99"); !ok || row.Value != 30 {
		t.Errorf("Find = %+v, %v", row, ok)
	}
	if _, ok := r.Find(SectionLatency, "n=7 loopback", "p99"); ok {
		t.Error("Find found a missing row")
	}
}
