package bench

import (
	"strings"
	"testing"
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
