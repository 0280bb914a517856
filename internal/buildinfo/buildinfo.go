// Package buildinfo reports what a binary was built from: its version, the
// commit and commit time Go stamps into binaries built inside a Git
// checkout, and the Go version, for `allegro version` and the
// allegro_build_info metric.
package buildinfo

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Version names the release. Release builds set it with
// -ldflags "-X github.com/allegro-mesh/allegro/internal/buildinfo.Version=v1.2.3";
// otherwise the main module's version from the build info is used ("(devel)"
// for a build from a checkout).
var Version = ""

// Info is what a binary was built from. Commit and Time are empty when the
// build had no VCS information (go build -buildvcs=false, or outside a
// checkout).
type Info struct {
	Version   string
	Commit    string
	Time      string
	Modified  bool // the checkout had uncommitted changes
	GoVersion string
}

// Read returns the running binary's build information.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	return fromBuildInfo(Version, bi, ok)
}

func fromBuildInfo(version string, bi *debug.BuildInfo, ok bool) Info {
	info := Info{Version: version}
	if !ok || bi == nil {
		if info.Version == "" {
			info.Version = "unknown"
		}
		return info
	}
	info.GoVersion = bi.GoVersion
	if info.Version == "" {
		info.Version = bi.Main.Version
	}
	if info.Version == "" {
		info.Version = "unknown"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Commit = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// String is one line: version, short commit (with "+modified" for a dirty
// checkout), commit time and Go version, leaving out what is unknown.
func (i Info) String() string {
	parts := []string{i.Version}
	if i.Commit != "" {
		c := i.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		if i.Modified {
			c += "+modified"
		}
		parts = append(parts, "commit "+c)
	}
	if i.Time != "" {
		parts = append(parts, "committed "+i.Time)
	}
	if i.GoVersion != "" {
		parts = append(parts, i.GoVersion)
	}
	return strings.Join(parts, ", ")
}

// Collector returns the allegro_build_info gauge: always 1, with the build
// as labels, so dashboards can show which build each node runs.
func (i Info) Collector() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "allegro_build_info",
		Help: "Build of the running binary (always 1): version, commit, whether the checkout was modified, Go version.",
		ConstLabels: prometheus.Labels{
			"version": i.Version, "commit": i.Commit, "modified": fmt.Sprint(i.Modified), "go_version": i.GoVersion,
		},
	})
	g.Set(1)
	return g
}
