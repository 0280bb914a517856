package safety

import (
	"bytes"
	"strings"
	"testing"
)

// TestSourcesGrouped: a source collected several times (board snapshots)
// is one row of the text report, with its largest counts, how often it was
// collected and unreachable, and the errors of all its collections.
func TestSourcesGrouped(t *testing.T) {
	r := &Report{Sources: []SourceSummary{
		{Name: "v1", Kind: SourceSidecar, Honest: true, Reachable: true, Certs: 10, QCs: 2, Statuses: 3},
		{Name: "lc1", Kind: "lightclient", Honest: true, Reachable: true, QCs: 4},
		{Name: "v1", Kind: SourceSidecar, Honest: true, Reachable: false, Errors: 3},
		{Name: "v1", Kind: SourceSidecar, Honest: true, Reachable: true, Certs: 25, QCs: 1, Statuses: 9, Errors: 1},
	}}
	g := groupSources(r.Sources)
	if len(g) != 2 || g[0].max.Name != "v1" || g[1].max.Name != "lc1" {
		t.Fatalf("groups %+v", g)
	}
	if v1 := g[0]; v1.times != 3 || v1.unreachable != 1 || v1.max.Certs != 25 || v1.max.QCs != 2 || v1.max.Statuses != 9 || v1.max.Errors != 4 {
		t.Fatalf("v1 grouped as %+v", v1)
	}
	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); !strings.Contains(out, "COLLECTED") || strings.Count(out, "\n  v1 ") != 1 {
		t.Fatalf("text report:\n%s", out)
	}
}
