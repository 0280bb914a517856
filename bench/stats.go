package bench

import (
	"math"
	"slices"
	"time"
)

// Summary describes a sample of durations.
type Summary struct {
	N                        int
	Mean, P50, P95, P99, Max time.Duration
}

// Percentile returns the p-th percentile (0 ≤ p ≤ 1) of sorted by the
// nearest-rank method: the smallest value with at least p of the sample at
// or below it. An empty sample gives 0.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Summarize sorts a copy of d and returns its summary.
func Summarize(d []time.Duration) Summary {
	s := Summary{N: len(d)}
	if len(d) == 0 {
		return s
	}
	sorted := slices.Clone(d)
	slices.Sort(sorted)
	var total time.Duration
	for _, v := range sorted {
		total += v
	}
	s.Mean = total / time.Duration(len(sorted))
	s.P50 = Percentile(sorted, 0.50)
	s.P95 = Percentile(sorted, 0.95)
	s.P99 = Percentile(sorted, 0.99)
	s.Max = sorted[len(sorted)-1]
	return s
}

// ms converts a duration to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ratio returns a/b, NaN when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}
