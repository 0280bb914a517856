package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestFromBuildInfo(t *testing.T) {
	stamped := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-12-05T01:00:00Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	cases := []struct {
		name    string
		version string
		bi      *debug.BuildInfo
		ok      bool
		want    string
	}{
		{"checkout build", "", stamped, true, "(devel), commit 0123456789ab+modified, committed 2026-12-05T01:00:00Z, go1.26.8"},
		{"release version wins", "v1.2.3", stamped, true, "v1.2.3, commit 0123456789ab+modified, committed 2026-12-05T01:00:00Z, go1.26.8"},
		{"no vcs stamp", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.4.0"}}, true, "v0.4.0, go1.26.8"},
		{"no build info", "", nil, false, "unknown"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := fromBuildInfo(tc.version, tc.bi, tc.ok).String(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestCollector: the gauge is 1 and carries the build as labels.
func TestCollector(t *testing.T) {
	info := Info{Version: "v1.2.3", Commit: "abc", GoVersion: "go1.26.8"}
	r := prometheus.NewRegistry()
	if err := r.Register(info.Collector()); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP allegro_build_info Build of the running binary (always 1): version, commit, whether the checkout was modified, Go version.
# TYPE allegro_build_info gauge
allegro_build_info{commit="abc",go_version="go1.26.8",modified="false",version="v1.2.3"} 1
`
	if err := testutil.GatherAndCompare(r, strings.NewReader(want), "allegro_build_info"); err != nil {
		t.Error(err)
	}
}
