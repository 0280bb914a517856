package bench

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"
)

// BenchmarkSuite runs each section of the suite as a sub-benchmark with
// b.N payments per measured run (latency and throughput on 4 validators,
// the mesh section with b.N payments per design, the resource run with
// b.N payments through 4 sidecar processes) and reports every figure of
// the section as a metric. `allegro-dev bench` runs the full suite with more
// committee sizes and prints the targets; this is the `go test` route:
//
//	go test -run '^$' -bench Suite/latency -benchtime 200x ./bench
//	go test -run '^$' -bench Suite/throughput -benchtime 5000x -cpuprofile cpu.out ./bench
//
// CI runs it with -benchtime 1x: one payment per section, to show it runs.
func BenchmarkSuite(b *testing.B) {
	for _, section := range AllSections {
		b.Run(section, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Sections = []string{section}
			cfg.Validators = []int{4}
			cfg.CostTime = 200 * time.Millisecond
			cfg.LatencyPayments, cfg.LatencyWarmup = b.N, min(10, b.N)
			cfg.Payments, cfg.Warmup = b.N, min(500, b.N)
			cfg.RecipientPayments = b.N
			cfg.ResourcePayments = b.N
			cfg.StartSidecar = startTestSidecar
			cfg.Dir = b.TempDir()
			cfg.ProgressInterval = 0
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			b.ResetTimer()
			report, err := Run(ctx, cfg)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			for _, row := range report.Rows {
				if math.IsNaN(row.Value) || math.IsInf(row.Value, 0) {
					continue
				}
				b.ReportMetric(row.Value, metricUnit(row))
			}
		})
	}
}

// metricUnit names a row as a benchmark metric unit (no whitespace).
func metricUnit(r Row) string {
	unit := r.Case + "/" + r.Metric
	if r.Unit != "" {
		unit += "-" + r.Unit
	}
	return strings.Join(strings.Fields(unit), "_")
}
