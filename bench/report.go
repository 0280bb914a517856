package bench

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Status of a figure against its target.
const (
	StatusPass = "PASS"
	StatusMiss = "MISS"
	// StatusNA: the figure has a target but the run was not the one the
	// target is defined for (for example fewer payments); see the note.
	StatusNA = "n/a"
)

// Target is a bound a figure should meet: Value ≥ Min (AtLeast) or
// Value ≤ Max (!AtLeast).
type Target struct {
	AtLeast bool    `json:"at_least"`
	Bound   float64 `json:"bound"`
}

// AtMost returns the target "≤ bound".
func AtMost(bound float64) *Target { return &Target{Bound: bound} }

// AtLeast returns the target "≥ bound".
func AtLeast(bound float64) *Target { return &Target{AtLeast: true, Bound: bound} }

// Met reports whether v meets the target. NaN never does.
func (t Target) Met(v float64) bool {
	if math.IsNaN(v) {
		return false
	}
	if t.AtLeast {
		return v >= t.Bound
	}
	return v <= t.Bound
}

func (t Target) String() string {
	op := "≤"
	if t.AtLeast {
		op = "≥"
	}
	return op + " " + formatValue(t.Bound)
}

// Row is one figure of a run. Rows are the unit of the CSV and JSON
// outputs; the text table groups them by Section.
type Row struct {
	// Section is the part of the suite (cost, latency, throughput, mesh,
	// resources); Case what was measured (for example "n=4 loopback");
	// Metric the figure (for example "p50").
	Section string  `json:"section"`
	Case    string  `json:"case"`
	Metric  string  `json:"metric"`
	Value   float64 `json:"value"`
	Unit    string  `json:"unit"`
	// Target is nil for figures reported for information.
	Target *Target `json:"target,omitempty"`
	// Status is PASS, MISS or n/a for figures with a target, empty
	// otherwise.
	Status string `json:"status,omitempty"`
	Note   string `json:"note,omitempty"`
}

// evaluate sets Status from Target (n/a stays n/a).
func (r *Row) evaluate() {
	switch {
	case r.Target == nil:
		r.Status = ""
	case r.Status == StatusNA:
	case r.Target.Met(r.Value):
		r.Status = StatusPass
	default:
		r.Status = StatusMiss
	}
}

// Machine records where and when a run happened, so runs can be compared.
type Machine struct {
	GoVersion  string `json:"go_version"`
	GOOS       string `json:"goos"`
	GOARCH     string `json:"goarch"`
	NumCPU     int    `json:"num_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPUModel   string `json:"cpu_model,omitempty"`
	Commit     string `json:"commit"`
	Hostname   string `json:"hostname,omitempty"`
	// LoadStart and LoadEnd are /proc/loadavg's 1, 5 and 15 minute
	// averages when the run started and ended (nil where unavailable).
	LoadStart []float64 `json:"load_start,omitempty"`
	LoadEnd   []float64 `json:"load_end,omitempty"`
	// CoresUsed is the process's CPU time (user + system) over the run's
	// wall time: how many cores the suite actually got, children excluded.
	CoresUsed float64 `json:"cores_used"`
}

// Report is the result of a run.
type Report struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Machine  Machine   `json:"machine"`
	// Settings are the sizes the run used (flag name → value).
	Settings map[string]string `json:"settings"`
	Rows     []Row             `json:"rows"`
	// Errors are sections that failed; their rows may be missing.
	Errors []string `json:"errors,omitempty"`
}

// add appends a row, evaluating its target.
func (r *Report) add(row Row) {
	row.evaluate()
	r.Rows = append(r.Rows, row)
}

// Find returns the first row of section, case and metric.
func (r *Report) Find(section, cas, metric string) (Row, bool) {
	for _, row := range r.Rows {
		if row.Section == section && row.Case == cas && row.Metric == metric {
			return row, true
		}
	}
	return Row{}, false
}

// formatValue prints v with about three significant digits, thousands
// separated, without exponent.
func formatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "—"
	case math.IsInf(v, 0):
		return "∞"
	}
	a := math.Abs(v)
	var s string
	switch {
	case a == 0 || a >= 100:
		s = strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		s = strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		s = strconv.FormatFloat(v, 'f', 2, 64)
	default:
		s = strconv.FormatFloat(v, 'g', 3, 64)
	}
	return groupThousands(s)
}

// groupThousands inserts commas into the integer part of a decimal.
func groupThousands(s string) string {
	sign := ""
	if strings.HasPrefix(s, "-") {
		sign, s = "-", s[1:]
	}
	intPart, frac := s, ""
	if i := strings.IndexByte(s, '.'); i >= 0 {
		intPart, frac = s[:i], s[i:]
	}
	if len(intPart) <= 3 || strings.ContainsAny(intPart, "e") {
		return sign + s
	}
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return sign + b.String() + frac
}

// sectionTitles name the sections in the text output, in suite order.
var sectionTitles = []struct{ key, title string }{
	{SectionCost, "Per-payment work, measured single-threaded (CPU time per operation)"},
	{SectionLatency, "Latency: submit → verified QC at the client, one payment at a time"},
	{SectionThroughput, "Throughput at saturation and the CPU-bound limit"},
	{SectionMesh, "Mesh against direct fan-out; when the recipient holds the QC"},
	{SectionResources, "Resources"},
}

// WriteText writes the machine facts, one aligned table per section (each
// figure with its target and PASS/MISS) and a summary of the targets.
func (r *Report) WriteText(w io.Writer) error {
	m := r.Machine
	fmt.Fprintf(w, "allegro-dev bench  %s  (took %s)\n", r.Started.Format(time.RFC3339), r.Finished.Sub(r.Started).Round(time.Second))
	fmt.Fprintf(w, "machine: %s %s/%s, %d CPUs (%s), GOMAXPROCS %d, commit %s\n", m.GoVersion, m.GOOS, m.GOARCH, m.NumCPU, orDash(m.CPUModel), m.GOMAXPROCS, m.Commit)
	fmt.Fprintf(w, "load average (1/5/15 min): start %s, end %s; cores this process got: %.2f\n", loadString(m.LoadStart), loadString(m.LoadEnd), m.CoresUsed)
	for _, s := range sectionTitles {
		var rows []Row
		for _, row := range r.Rows {
			if row.Section == s.key {
				rows = append(rows, row)
			}
		}
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n== %s\n", s.title)
		writeRows(w, rows, true)
	}
	var targeted []Row
	for _, row := range r.Rows {
		if row.Target != nil {
			targeted = append(targeted, row)
		}
	}
	if len(targeted) > 0 {
		fmt.Fprintf(w, "\n== Targets\n")
		writeRows(w, targeted, false)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "\nERROR: %s\n", e)
	}
	return nil
}

func writeRows(w io.Writer, rows []Row, notes bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "case\tmetric\tvalue\ttarget\tstatus"
	if notes {
		header += "\tnote"
	}
	fmt.Fprintln(tw, header)
	for _, row := range rows {
		target := ""
		if row.Target != nil {
			target = row.Target.String() + " " + row.Unit
		}
		line := fmt.Sprintf("%s\t%s\t%s %s\t%s\t%s", row.Case, row.Metric, formatValue(row.Value), row.Unit, target, row.Status)
		if notes {
			line += "\t" + row.Note
		}
		fmt.Fprintln(tw, line)
	}
	_ = tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func loadString(l []float64) string {
	if len(l) == 0 {
		return "—"
	}
	parts := make([]string, len(l))
	for i, v := range l {
		parts[i] = strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strings.Join(parts, "/")
}

// csvHeader is the first line of the CSV output.
var csvHeader = []string{"section", "case", "metric", "value", "unit", "target", "status", "note"}

// WriteCSV writes one line per row, after a header. The target column is
// "<=5" or ">=0.6" (empty without a target); values are plain decimals.
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	for _, row := range r.Rows {
		target := ""
		if row.Target != nil {
			op := "<="
			if row.Target.AtLeast {
				op = ">="
			}
			target = op + strconv.FormatFloat(row.Target.Bound, 'g', -1, 64)
		}
		value := strconv.FormatFloat(row.Value, 'g', -1, 64)
		if err := cw.Write([]string{row.Section, row.Case, row.Metric, value, row.Unit, target, row.Status, row.Note}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteJSON writes the whole report, indented. NaN values (figures that
// could not be computed) are written as null.
func (r *Report) WriteJSON(w io.Writer) error {
	type jsonRow struct {
		Row
		Value *float64 `json:"value"`
	}
	out := struct {
		*Report
		Rows []jsonRow `json:"rows"`
	}{Report: r}
	for _, row := range r.Rows {
		jr := jsonRow{Row: row}
		if !math.IsNaN(row.Value) && !math.IsInf(row.Value, 0) {
			v := row.Value
			jr.Value = &v
		}
		out.Rows = append(out.Rows, jr)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// WriteFiles writes results.txt, results.csv and results.json into dir
// (created if needed) and returns their paths.
func (r *Report) WriteFiles(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("output folder: %w", err)
	}
	var paths []string
	for _, f := range []struct {
		name  string
		write func(io.Writer) error
	}{
		{"results.txt", r.WriteText}, {"results.csv", r.WriteCSV}, {"results.json", r.WriteJSON},
	} {
		p := filepath.Join(dir, f.name)
		file, err := os.Create(p)
		if err != nil {
			return paths, err
		}
		err = f.write(file)
		if cerr := file.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return paths, fmt.Errorf("write %s: %w", p, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}
