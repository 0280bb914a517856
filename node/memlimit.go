package node

import (
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultMemoryLimit is the default of Config.MemoryLimit: 90% of the
// container's memory limit when the process has one, none otherwise. A
// fixed default would either waste a big machine or, set near a busy
// sidecar's live heap, make the collector run almost continuously.
const DefaultMemoryLimit = MemoryLimitAuto

// MemoryLimitAuto derives the limit from the container (cgroup) limit.
const MemoryLimitAuto = "auto"

// ParseMemoryLimit reads a memory limit as GOMEMLIMIT writes it: a number
// of bytes with an optional unit (B, KiB, MiB, GiB, TiB), or "off" for
// none, returned as math.MaxInt64 (the runtime's "no limit").
func ParseMemoryLimit(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "off" {
		return math.MaxInt64, nil
	}
	units := []struct {
		suffix string
		shift  uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}}
	shift := uint(0)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, shift = rest, u.shift
			break
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size such as 512MiB, auto or off", s)
	}
	if n == 0 || n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("size %d<<%d is out of range (use off for no limit)", n, shift)
	}
	return int64(n << shift), nil
}

// validMemoryLimit reports whether s is a valid Config.MemoryLimit.
func validMemoryLimit(s string) error {
	if strings.TrimSpace(s) == MemoryLimitAuto {
		return nil
	}
	_, err := ParseMemoryLimit(s)
	return err
}

// ApplyMemoryLimit sets the Go runtime's soft memory limit of this process
// from cfg.MemoryLimit, unless GOMEMLIMIT is set in the environment
// (getenv), which the runtime has applied already and which wins. For
// "auto" it asks container for the container's memory limit
// (ContainerMemoryLimit in a real process). It returns the limit in force
// and where it came from. The limit is process-wide: call it once from a
// process that runs one sidecar, never from a library or an in-process
// cluster.
func ApplyMemoryLimit(cfg Config, getenv func(string) string, container func() (int64, bool)) (limit int64, source string, err error) {
	if getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1), "GOMEMLIMIT", nil
	}
	if strings.TrimSpace(cfg.MemoryLimit) == MemoryLimitAuto {
		// The other 10% is for the binary's pages, stacks and memory
		// outside the Go heap (pebble's memtables with cgo).
		limit, source = math.MaxInt64, "auto: no container memory limit"
		if c, ok := container(); ok {
			limit, source = c/10*9, fmt.Sprintf("auto: 90%% of the container's %d bytes", c)
		}
		debug.SetMemoryLimit(limit)
		return limit, source, nil
	}
	limit, err = ParseMemoryLimit(cfg.MemoryLimit)
	if err != nil {
		return 0, "", fmt.Errorf("config: memory_limit: %w", err)
	}
	debug.SetMemoryLimit(limit)
	return limit, "memory_limit", nil
}

// ContainerMemoryLimit reads the memory limit of this process's cgroup
// (v2 memory.max, else v1 memory.limit_in_bytes); false when there is none.
func ContainerMemoryLimit() (int64, bool) {
	return containerMemoryLimit(os.ReadFile)
}

func containerMemoryLimit(read func(string) ([]byte, error)) (int64, bool) {
	for _, path := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := read(path)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		if v == "max" {
			return 0, false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		// cgroup v1 writes "no limit" as a page-rounded MaxInt64.
		if err != nil || n <= 0 || n >= math.MaxInt64/2 {
			return 0, false
		}
		return n, true
	}
	return 0, false
}

// DefaultGCPercent is the default of Config.GCPercent. Below Go's own 100
// because a sidecar runs beside a validator and its resident memory is
// mostly this headroom over bounded caches: at 75 the heap peaks about an
// eighth lower, for a few percent more collector work under load. Lower
// settings cost markedly more CPU; a container's limit (memory_limit auto)
// bounds the heap whatever this setting.
const DefaultGCPercent = 75

// The range Config.GCPercent accepts: below 10 the collector runs almost
// continuously; above 1000 the heap is mostly garbage.
const (
	minGCPercent = 10
	maxGCPercent = 1000
)

// ApplyGCPercent sets the collector's heap growth of this process from
// cfg.GCPercent, unless GOGC is set in the environment (getenv), which the
// runtime has applied already and which wins. It returns the setting in
// force (-1: the collector is off) and where it came from. Like
// ApplyMemoryLimit it is process-wide: call it once from a process that
// runs one sidecar.
func ApplyGCPercent(cfg Config, getenv func(string) string) (percent int, source string, err error) {
	if getenv("GOGC") != "" {
		// SetGCPercent reports the setting it replaces; put it back.
		current := debug.SetGCPercent(100)
		debug.SetGCPercent(current)
		return current, "GOGC", nil
	}
	if err := validGCPercent(cfg.GCPercent); err != nil {
		return 0, "", fmt.Errorf("config: gc_percent: %w", err)
	}
	debug.SetGCPercent(cfg.GCPercent)
	return cfg.GCPercent, "gc_percent", nil
}

// validGCPercent reports whether p is a valid Config.GCPercent.
func validGCPercent(p int) error {
	if p < minGCPercent || p > maxGCPercent {
		return fmt.Errorf("%d is not between %d and %d", p, minGCPercent, maxGCPercent)
	}
	return nil
}
