package bench

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/node"
)

const sampleStatus = `Name:	allegro
Umask:	0022
State:	S (sleeping)
VmPeak:	 2413860 kB
VmSize:	 2413604 kB
VmHWM:	  152344 kB
VmRSS:	  141200 kB
RssAnon:	  101200 kB
RssFile:	   40000 kB
Threads:	12
`

func TestParseMemStatus(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    MemStatus
		wantErr string
	}{
		{"valid", sampleStatus, MemStatus{RSS: 141200 * 1024, Peak: 152344 * 1024, Anon: 101200 * 1024, File: 40000 * 1024}, ""},
		{"without the split", strings.Replace(strings.Replace(sampleStatus, "RssAnon:", "XAnon:", 1), "RssFile:", "XFile:", 1), MemStatus{RSS: 141200 * 1024, Peak: 152344 * 1024}, ""},
		{"bad anon", strings.Replace(sampleStatus, "101200", "1o1200", 1), MemStatus{}, "RssAnon"},
		{"no VmHWM", strings.Replace(sampleStatus, "VmHWM:", "VmXXX:", 1), MemStatus{}, "missing"},
		{"no VmRSS", strings.Replace(sampleStatus, "VmRSS:", "VmXXX:", 1), MemStatus{}, "missing"},
		{"bad unit", strings.Replace(sampleStatus, "141200 kB", "141200 MB", 1), MemStatus{}, "unexpected value"},
		{"bad number", strings.Replace(sampleStatus, "152344", "15x344", 1), MemStatus{}, "VmHWM"},
		{"empty", "", MemStatus{}, "missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMemStatus(strings.NewReader(tc.text))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("parseMemStatus = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestParseLoadAvg(t *testing.T) {
	got, err := parseLoadAvg("1.25 0.50 7.00 3/401 12345\n")
	if err != nil || len(got) != 3 || got[0] != 1.25 || got[1] != 0.5 || got[2] != 7 {
		t.Errorf("parseLoadAvg = %v, %v", got, err)
	}
	for _, bad := range []string{"", "1.0 2.0", "a b c"} {
		if _, err := parseLoadAvg(bad); err == nil {
			t.Errorf("parseLoadAvg(%q) succeeded", bad)
		}
	}
}

func TestHalfway(t *testing.T) {
	samples := []rssSample{{done: 10, rss: []uint64{1}}, {done: 49, rss: []uint64{2}}, {done: 50, rss: []uint64{3}}, {done: 90, rss: []uint64{4}}}
	if got := halfway(samples, 100); len(got) != 1 || got[0] != 3 {
		t.Errorf("halfway = %v, want the sample at 50", got)
	}
	if got := halfway(samples[:2], 100); got != nil {
		t.Errorf("halfway before half = %v, want nil", got)
	}
	if got := maxOf([]uint64{3, 9, 2}); got != 9 {
		t.Errorf("maxOf = %d", got)
	}
	if got := joinMiB([]uint64{1 << 20, 150 << 20}); got != "1/150" {
		t.Errorf("joinMiB = %q", got)
	}
}

func TestParseProcStatCPU(t *testing.T) {
	// Fields 14 and 15 (utime, stime) are 250 and 130 ticks; the command
	// name holds a space and a parenthesis.
	const stat = "4242 (bench (child) x) S 1 4242 4242 0 -1 4194560 1500 0 0 0 250 130 0 0 20 0 12 0 100 1000000 5000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	tests := []struct {
		name string
		text string
		want time.Duration
		ok   bool
	}{
		{"valid", stat, 3800 * time.Millisecond, true},
		{"no command name", "4242 S 1 2 3", 0, false},
		{"too short", "4242 (x) S 1 2 3 4 5 6 7 8 9 10", 0, false},
		{"not a number", strings.Replace(stat, " 250 130 ", " 250 x ", 1), 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcStatCPU(tc.text)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("parseProcStatCPU = %v, %v; want %v, ok=%v", got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestProcCPUOfThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	before, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the kernel's tick-granular count moves, within a bound.
	deadline := time.Now().Add(10 * time.Second)
	x := 0
	for time.Now().Before(deadline) {
		for i := range 1_000_000 {
			x += i
		}
		after, err := procCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if after > before {
			return
		}
	}
	t.Fatalf("process CPU time did not move in 10 s of spinning (%d)", x)
}

func TestChildCollector(t *testing.T) {
	if got, want := childCollector(func(string) string { return "" }), fmt.Sprintf("gc_percent %d (the default)", node.DefaultGCPercent); got != want {
		t.Errorf("without GOGC: %q, want %q", got, want)
	}
	env := func(k string) string {
		if k == "GOGC" {
			return "50"
		}
		return ""
	}
	if got := childCollector(env); got != "GOGC=50 from the environment" {
		t.Errorf("with GOGC=50: %q", got)
	}
}
