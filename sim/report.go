package sim

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
)

// Columns are the table's column headers, in order.
var Columns = []string{"profile", "n", "q", "case", "mesh", "links", "certified", "QC p50 ms", "QC p99 ms", "floor p50 ms", "QC/floor p50",
	"bytes/payment/validator", "copies/payment/validator", "CPU µs/payment/validator"}

// Case names a result's scenario.
func (r *Result) Case() string {
	cut := "partition heals"
	if r.Cut > 0 && r.Cut != DefaultCut {
		cut = fmt.Sprintf("partition of %s heals", r.Cut)
	}
	switch {
	case r.Partition && r.Crashed > 0:
		return fmt.Sprintf("%d crashed, %s", r.Crashed, cut)
	case r.Partition:
		return cut
	case r.Crashed > 0:
		return fmt.Sprintf("%d crashed", r.Crashed)
	}
	return "all up"
}

// Mesh names a result's topology: "full" (every pair linked), "random d"
// (each dials d others) or "regional d+r" (d of its region, r of each
// other region).
func (r *Result) Mesh() string {
	switch {
	case r.Remote > 0:
		return fmt.Sprintf("regional %d+%d", r.Degree, r.Remote)
	case r.Degree > 0:
		return fmt.Sprintf("random %d", r.Degree)
	}
	return "full"
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// WriteTable writes the results as an aligned table.
func WriteTable(w io.Writer, results []*Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(Columns, "\t")+"\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%.1f\t%d/%d\t%.1f\t%.1f\t%.1f\t%.2f\t%.0f\t%.1f\t%.0f\t\n",
			r.Profile, r.Validators, r.Quorum, r.Case(), r.Mesh(), r.Links, r.Certified, r.Payments,
			msf(r.QC.P50), msf(r.QC.P99), msf(r.Floor.P50), r.RatioP50,
			r.BytesPerValidator, r.CopiesPerValidator, float64(r.CPUPerValidator)/float64(time.Microsecond))
	}
	return tw.Flush()
}

// WriteSVG writes a two-panel chart of the all-up results of one profile
// against n: QC p50, p99 and the floor (ms), and bytes sent per payment per
// validator. Axes are linear; points are joined in order of n.
func WriteSVG(w io.Writer, title string, results []*Result) error {
	var rs []*Result
	for _, r := range results {
		if !r.Partition && r.Crashed == 0 && r.Certified > 0 {
			rs = append(rs, r)
		}
	}
	const width, height, panelW, panelH, left, top = 760, 340, 300, 220, 70, 50
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%d" y="22" font-size="14">%s</text>`+"\n", left, escape(title))
	maxN := 1.0
	for _, r := range rs {
		maxN = math.Max(maxN, float64(r.Validators))
	}
	type series struct {
		name, color string
		val         func(*Result) float64
	}
	panel := func(x0 int, label string, ss []series) {
		maxY := 0.0
		for _, s := range ss {
			for _, r := range rs {
				maxY = math.Max(maxY, s.val(r))
			}
		}
		maxY = niceCeil(maxY)
		px := func(n float64) float64 { return float64(x0) + n/maxN*panelW }
		py := func(v float64) float64 { return float64(top+panelH) - v/maxY*panelH }
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`+"\n", x0, top, panelW, panelH)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", x0, top-8, escape(label))
		for k := 0; k <= 4; k++ {
			v := maxY * float64(k) / 4
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-4, py(v)+4, trim(v))
		}
		for _, r := range rs {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", px(float64(r.Validators)), top+panelH+14, r.Validators)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">validators (n)</text>`+"\n", x0+panelW/2, top+panelH+30)
		for k, s := range ss {
			var pts []string
			for _, r := range rs {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(float64(r.Validators)), py(s.val(r))))
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", px(float64(r.Validators)), py(s.val(r)), s.color)
			}
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), s.color)
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n",
				x0+8, top+8+14*k, s.color, x0+22, top+17+14*k, escape(s.name))
		}
	}
	panel(left, "submit→QC at the entry (ms, virtual time)", []series{
		{"QC p99", "#d62728", func(r *Result) float64 { return msf(r.QC.P99) }},
		{"QC p50", "#1f77b4", func(r *Result) float64 { return msf(r.QC.P50) }},
		{"floor p50", "#2ca02c", func(r *Result) float64 { return msf(r.Floor.P50) }},
	})
	panel(left+panelW+80, "bytes sent per payment per validator", []series{
		{"bytes", "#9467bd", func(r *Result) float64 { return r.BytesPerValidator }},
	})
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func trim(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.0fk", v/1000)
	}
	return fmt.Sprintf("%g", math.Round(v*10)/10)
}

func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
