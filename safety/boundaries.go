package safety

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Time to QC around epoch boundaries: report statistics, not an invariant.
// A boundary pauses certification while the old committee closes its epoch
// and the new one takes the handover (SPEC §5a); the payments sent just
// before and after it show how long.

// The window of payments counted at a boundary: those sent from
// BoundaryBefore before the boundary to BoundaryAfter after it (never past
// the next boundary).
const (
	BoundaryBefore = time.Second
	BoundaryAfter  = 4 * time.Second
)

// BoundaryStats describes one epoch boundary of a run.
type BoundaryStats struct {
	Epoch  uint64    `json:"epoch"`
	Height uint64    `json:"height"`
	At     time.Time `json:"at"`
	// Phase is the run phase the boundary fell in.
	Phase string `json:"phase,omitempty"`
	// Joined and Left name the committee members that joined and left at
	// this boundary, when both epochs' committees are in the history.
	Joined []string `json:"joined,omitempty"`
	Left   []string `json:"left,omitempty"`
	// Sent counts the payments sent in the boundary's window, WithQC those
	// of them the client saw certified; TimeToQC is their submit→QC time.
	Sent     int         `json:"sent"`
	WithQC   int         `json:"with_qc"`
	TimeToQC Percentiles `json:"time_to_qc"`
	// FirstQC is the time from the boundary to the first QC the client saw
	// for a payment sent at or after it (zero: none in the window).
	FirstQC time.Duration `json:"first_qc_ns,omitempty"`
}

// boundaries computes BoundaryStats for every boundary of the run.
func (c *checker) boundaries() {
	bs := slices.Clone(c.run.Boundaries)
	sort.SliceStable(bs, func(i, j int) bool { return bs[i].At.Before(bs[j].At) })
	members := make(map[uint64][]string)
	for _, info := range c.h.CommitteeInfos() {
		names := make([]string, 0, len(info.Members))
		for _, m := range info.Members {
			names = append(names, m.Name)
		}
		members[info.Epoch] = names
	}
	for i, b := range bs {
		st := BoundaryStats{Epoch: b.Epoch, Height: b.Height, At: b.At, Phase: c.phaseAt(b.At)}
		if cur, ok := members[b.Epoch]; ok && b.Epoch > 0 {
			if prev, ok := members[b.Epoch-1]; ok {
				st.Joined, st.Left = difference(cur, prev), difference(prev, cur)
			}
		}
		from, to := b.At.Add(-BoundaryBefore), b.At.Add(BoundaryAfter)
		if i+1 < len(bs) && bs[i+1].At.Before(to) {
			to = bs[i+1].At
		}
		var ttqc []time.Duration
		for j := range c.run.Payments {
			p := &c.run.Payments[j]
			if p.Sent.IsZero() || p.Sent.Before(from) || !p.Sent.Before(to) {
				continue
			}
			st.Sent++
			if p.QCAt.IsZero() || p.QCAt.Before(p.Sent) {
				continue
			}
			st.WithQC++
			ttqc = append(ttqc, p.QCAt.Sub(p.Sent))
			if !p.Sent.Before(b.At) {
				if d := p.QCAt.Sub(b.At); st.FirstQC == 0 || d < st.FirstQC {
					st.FirstQC = d
				}
			}
		}
		st.TimeToQC = percentiles(ttqc)
		c.r.Boundaries = append(c.r.Boundaries, st)
	}
}

// phaseAt names the run phase holding t ("" when none does).
func (c *checker) phaseAt(t time.Time) string {
	for _, ph := range c.run.Phases {
		if !t.Before(ph.Start) && t.Before(ph.End) {
			return ph.Name
		}
	}
	return ""
}

// difference returns the names of a not in b.
func difference(a, b []string) []string {
	var out []string
	for _, n := range a {
		if !slices.Contains(b, n) {
			out = append(out, n)
		}
	}
	return out
}

// writeBoundaries writes the boundary table and a summary over all
// boundaries.
func (r *Report) writeBoundaries(ew *errWriter) {
	if len(r.Boundaries) == 0 {
		return
	}
	ew.printf("\nEpoch boundaries (client-observed: payments sent from %s before to %s after each)\n", BoundaryBefore, BoundaryAfter)
	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  EPOCH\tBLOCK\tPHASE\tCHANGE\tSENT\tWITH QC\tP50\tMAX\tFIRST QC AFTER")
	var maxes, p50s []time.Duration
	for _, b := range r.Boundaries {
		var change []string
		for _, n := range b.Joined {
			change = append(change, "+"+n)
		}
		for _, n := range b.Left {
			change = append(change, "-"+n)
		}
		first := "-"
		if b.FirstQC > 0 {
			first = ms(b.FirstQC, 1)
		}
		phase := b.Phase
		if phase == "" {
			phase = "-"
		}
		fmt.Fprintf(tw, "  %d\t%d\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", b.Epoch, b.Height, phase, orDash(strings.Join(change, " ")),
			b.Sent, b.WithQC, ms(b.TimeToQC.P50, b.TimeToQC.N), ms(b.TimeToQC.Max, b.TimeToQC.N), first)
		if b.TimeToQC.N > 0 {
			maxes = append(maxes, b.TimeToQC.Max)
			p50s = append(p50s, b.TimeToQC.P50)
		}
	}
	tw.Flush()
	if len(maxes) > 0 {
		pm, pp := percentiles(maxes), percentiles(p50s)
		ew.printf("  over %d boundaries: p50 of the boundaries' p50 %s; max per boundary: p50 %s, max %s\n",
			len(maxes), ms(pp.P50, pp.N), ms(pm.P50, pm.N), ms(pm.Max, pm.N))
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
