package safety

import (
	"slices"
	"sort"
	"time"
)

// Time to QC per fault phase: report statistics, not an invariant.

// phases computes time-to-QC percentiles per phase, in phase order; phases
// named by payments but not listed in the run come last.
func (c *checker) phases() {
	type acc struct {
		stats PhaseStats
		ttqc  []time.Duration
	}
	byName := make(map[string]*acc)
	var order []string
	get := func(name string) *acc {
		a := byName[name]
		if a == nil {
			a = &acc{stats: PhaseStats{Name: name}}
			byName[name] = a
			order = append(order, name)
		}
		return a
	}
	listed := slices.Clone(c.run.Phases)
	sort.SliceStable(listed, func(i, j int) bool { return listed[i].Start.Before(listed[j].Start) })
	for _, ph := range listed {
		a := get(ph.Name)
		a.stats.Start, a.stats.End, a.stats.NoQuorum, a.stats.Sides = ph.Start, ph.End, ph.NoQuorum, ph.Sides
	}
	all := &acc{stats: PhaseStats{Name: "all"}}
	for i := range c.run.Payments {
		p := &c.run.Payments[i]
		name := p.Phase
		if name == "" {
			name = "(none)"
		}
		for _, a := range []*acc{get(name), all} {
			a.stats.Sent++
			if p.Accepted() {
				a.stats.Accepted++
			}
			if p.RejectCode() != "" {
				a.stats.Rejected++
			}
			if _, ok := c.certified[p.TxHash]; ok && !p.TxHash.IsZero() {
				a.stats.WithQC++
			}
			if !p.QCAt.IsZero() && !p.Sent.IsZero() && !p.QCAt.Before(p.Sent) {
				a.ttqc = append(a.ttqc, p.QCAt.Sub(p.Sent))
			}
		}
	}
	for _, name := range order {
		a := byName[name]
		a.stats.TimeToQC = percentiles(a.ttqc)
		c.r.Phases = append(c.r.Phases, a.stats)
	}
	all.stats.TimeToQC = percentiles(all.ttqc)
	c.r.Phases = append(c.r.Phases, all.stats)
}

// percentiles returns nearest-rank percentiles of ds.
func percentiles(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	slices.Sort(ds)
	at := func(p float64) time.Duration {
		rank := int(p*float64(len(ds))+0.999999999) - 1
		return ds[max(0, min(rank, len(ds)-1))]
	}
	return Percentiles{N: len(ds), P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: ds[len(ds)-1]}
}
