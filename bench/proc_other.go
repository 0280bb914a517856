//go:build !linux

package bench

import (
	"errors"
	"time"
)

// Fallbacks where /proc and per-thread rusage are not available: costs are
// then measured in wall time, and resident memory is not reported.

func threadCPU() (time.Duration, bool) { return 0, false }

func processCPU() time.Duration { return 0 }

func loadAvg() []float64 { return nil }

func procCPU(int) (time.Duration, error) {
	return 0, errors.New("process CPU time is read from /proc, which this system lacks")
}

func memStatus(int) (MemStatus, error) {
	return MemStatus{}, errors.New("resident memory is read from /proc, which this system lacks")
}

func cpuModel() string { return "" }
