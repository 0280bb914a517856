package node

import (
	"math"
	"os"
	"runtime/debug"
	"strings"
	"testing"
)

func TestParseMemoryLimit(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"150MiB", 150 << 20, true},
		{"1GiB", 1 << 30, true},
		{"512KiB", 512 << 10, true},
		{"2TiB", 2 << 40, true},
		{"1000000B", 1_000_000, true},
		{"123456", 123456, true},
		{" 64MiB ", 64 << 20, true},
		{"off", math.MaxInt64, true},
		{"", 0, false},
		{"0", 0, false},
		{"-5MiB", 0, false},
		{"150MB", 0, false}, // GOMEMLIMIT has no decimal units
		{"1.5GiB", 0, false},
		{"9999999TiB", 0, false}, // overflows int64
	}
	for _, tc := range cases {
		got, err := ParseMemoryLimit(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseMemoryLimit(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestApplyMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })

	cfg := DefaultConfig()
	if cfg.MemoryLimit != DefaultMemoryLimit {
		t.Fatalf("default memory_limit %q", cfg.MemoryLimit)
	}
	cfg.MemoryLimit = "300MiB"
	noEnv := func(string) string { return "" }
	noContainer := func() (int64, bool) { return 0, false }
	limit, source, err := ApplyMemoryLimit(cfg, noEnv, noContainer)
	if err != nil || limit != 300<<20 || source != "memory_limit" || debug.SetMemoryLimit(-1) != 300<<20 {
		t.Fatalf("from config: %d %q %v (runtime %d)", limit, source, err, debug.SetMemoryLimit(-1))
	}
	// GOMEMLIMIT in the environment wins: the runtime's value stays.
	debug.SetMemoryLimit(777 << 20)
	env := func(k string) string {
		if k == "GOMEMLIMIT" {
			return "777MiB"
		}
		return ""
	}
	limit, source, err = ApplyMemoryLimit(cfg, env, noContainer)
	if err != nil || limit != 777<<20 || source != "GOMEMLIMIT" || debug.SetMemoryLimit(-1) != 777<<20 {
		t.Fatalf("with GOMEMLIMIT: %d %q %v (runtime %d)", limit, source, err, debug.SetMemoryLimit(-1))
	}
	cfg.MemoryLimit = "lots"
	if _, _, err := ApplyMemoryLimit(cfg, noEnv, noContainer); err == nil || debug.SetMemoryLimit(-1) != 777<<20 {
		t.Fatalf("a bad value: %v, runtime limit %d", err, debug.SetMemoryLimit(-1))
	}
}

func TestConfigValidateMemoryLimit(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MemoryLimit = "a lot"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "memory_limit") {
		t.Fatalf("Validate: %v", err)
	}
	cfg.MemoryLimit = "off"
	if err := cfg.Validate(); err != nil && strings.Contains(err.Error(), "memory_limit") {
		t.Fatalf("off refused: %v", err)
	}
}

func TestApplyMemoryLimitAuto(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	noEnv := func(string) string { return "" }
	cfg := DefaultConfig()
	if cfg.MemoryLimit != MemoryLimitAuto {
		t.Fatalf("default memory_limit %q, want auto", cfg.MemoryLimit)
	}
	limit, source, err := ApplyMemoryLimit(cfg, noEnv, func() (int64, bool) { return 1 << 30, true })
	if err != nil || limit != (1<<30)/10*9 || debug.SetMemoryLimit(-1) != limit || !strings.Contains(source, "container") {
		t.Fatalf("under a 1 GiB container: %d %q %v", limit, source, err)
	}
	limit, _, err = ApplyMemoryLimit(cfg, noEnv, func() (int64, bool) { return 0, false })
	if err != nil || limit != math.MaxInt64 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Fatalf("without a container limit: %d %v", limit, err)
	}
}

func TestContainerMemoryLimit(t *testing.T) {
	files := func(m map[string]string) func(string) ([]byte, error) {
		return func(p string) ([]byte, error) {
			if v, ok := m[p]; ok {
				return []byte(v), nil
			}
			return nil, os.ErrNotExist
		}
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  int64
		ok    bool
	}{
		{"cgroup v2 limit", map[string]string{"/sys/fs/cgroup/memory.max": "268435456\n"}, 256 << 20, true},
		{"cgroup v2 unlimited", map[string]string{"/sys/fs/cgroup/memory.max": "max\n"}, 0, false},
		{"cgroup v1 limit", map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "536870912"}, 512 << 20, true},
		{"cgroup v1 unlimited", map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712"}, 0, false},
		{"no cgroup files", nil, 0, false},
		{"garbage", map[string]string{"/sys/fs/cgroup/memory.max": "lots"}, 0, false},
	} {
		got, ok := containerMemoryLimit(files(tc.files))
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: %d %v, want %d %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestApplyGCPercent(t *testing.T) {
	// Start from a setting no case applies, so each application shows.
	prev := debug.SetGCPercent(77)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	noEnv := func(string) string { return "" }

	cfg := DefaultConfig()
	if cfg.GCPercent != DefaultGCPercent {
		t.Fatalf("default gc_percent %d, want %d", cfg.GCPercent, DefaultGCPercent)
	}
	got, source, err := ApplyGCPercent(cfg, noEnv)
	if err != nil || got != DefaultGCPercent || source != "gc_percent" || debug.SetGCPercent(77) != DefaultGCPercent {
		t.Fatalf("default: %d %q %v", got, source, err)
	}
	cfg.GCPercent = 50
	if got, _, err := ApplyGCPercent(cfg, noEnv); err != nil || got != 50 || debug.SetGCPercent(77) != 50 {
		t.Fatalf("gc_percent 50: %d %v", got, err)
	}

	// GOGC in the environment wins: the runtime's setting stays.
	debug.SetGCPercent(170)
	env := func(k string) string {
		if k == "GOGC" {
			return "170"
		}
		return ""
	}
	cfg.GCPercent = 30
	got, source, err = ApplyGCPercent(cfg, env)
	if err != nil || got != 170 || source != "GOGC" || debug.SetGCPercent(170) != 170 {
		t.Fatalf("with GOGC: %d %q %v", got, source, err)
	}

	for _, bad := range []int{0, 9, 1001, -1} {
		cfg.GCPercent = bad
		if _, _, err := ApplyGCPercent(cfg, noEnv); err == nil || debug.SetGCPercent(170) != 170 {
			t.Errorf("gc_percent %d: applied (%v)", bad, err)
		}
	}
}

func TestConfigValidateGCPercent(t *testing.T) {
	for _, tc := range []struct {
		percent int
		ok      bool
	}{{DefaultGCPercent, true}, {10, true}, {1000, true}, {0, false}, {9, false}, {1001, false}, {-1, false}} {
		cfg := DefaultConfig()
		cfg.GCPercent = tc.percent
		err := cfg.Validate()
		refused := err != nil && strings.Contains(err.Error(), "gc_percent")
		if refused == tc.ok {
			t.Errorf("gc_percent %d: Validate() = %v, want ok=%v", tc.percent, err, tc.ok)
		}
	}
}
