package sim

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// The scale report runs only when asked (docs/scale.md):
//
//	go test ./sim -run TestScaleReport -timeout 0 -args -sim.validators 10,100 -sim.out /tmp/scale
//
// synctest needs a *testing.T, so the report is a test rather than a
// section of allegro-dev bench.
var (
	flagValidators = flag.String("sim.validators", "", "comma-separated committee sizes of the scale report (empty: skip it)")
	flagPayments   = flag.Int("sim.payments", 20, "payments per case")
	flagCases      = flag.String("sim.cases", "wan,lan,crashed,partition", "cases per n: wan, lan, crashed (f down, WAN), partition (halves cut 3 s, WAN)")
	flagDegree     = flag.Int("sim.degree", 0, "validators each one dials (0: every other, as a node does with its committee)")
	flagRemote     = flag.Int("sim.remote", 0, "with -sim.degree, a regional mesh: -sim.degree of the own region and this many of every other region")
	flagCut        = flag.Duration("sim.cut", DefaultCut, "how long the partition case cuts the network")
	flagOut        = flag.String("sim.out", "", "folder for scale.txt and scale.svg (empty: print only)")
	flagHeap       = flag.String("sim.heap-profile", "", "folder for a heap profile per case, taken after its last payment (empty: none)")
)

func TestScaleReport(t *testing.T) {
	if *flagValidators == "" {
		t.Skip("set -sim.validators to run the scale report")
	}
	var sizes []int
	for _, s := range strings.Split(*flagValidators, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 4 {
			t.Fatalf("-sim.validators: %q is not a size of at least 4", s)
		}
		sizes = append(sizes, n)
	}
	// Results accumulate in -sim.out across runs (a case run again
	// replaces its earlier result) and are saved after every case, so a
	// long report can be run size by size and nothing measured is lost.
	var results []*Result
	saved := ""
	if *flagOut != "" {
		if err := os.MkdirAll(*flagOut, 0o755); err != nil {
			t.Fatal(err)
		}
		saved = filepath.Join(*flagOut, "results.json")
		var err error
		if results, err = readResults(saved); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range sizes {
		for _, c := range strings.Split(*flagCases, ",") {
			cfg := DefaultConfig()
			cfg.Validators, cfg.Payments, cfg.Degree, cfg.Remote = n, *flagPayments, *flagDegree, *flagRemote
			cfg.Progress = func(format string, args ...any) {
				fmt.Fprintf(os.Stderr, "n=%d %s: %s\n", n, c, fmt.Sprintf(format, args...))
			}
			if err := cfg.ApplyCase(c); err != nil {
				t.Fatalf("-sim.cases: %v", err)
			}
			if cfg.PartitionFor > 0 {
				if *flagCut <= 0 {
					t.Fatalf("-sim.cut must be positive, got %s", *flagCut)
				}
				cfg.PartitionFor = *flagCut
			}
			if *flagHeap != "" {
				cfg.HeapProfile = filepath.Join(*flagHeap, fmt.Sprintf("heap-n%d-%s.pprof", n, c))
			}
			t.Run(fmt.Sprintf("n=%d/%s", n, c), func(t *testing.T) {
				wall0, cpu0 := time.Now(), processCPU()
				var res *Result
				synctest.Test(t, func(t *testing.T) {
					cfg.Dir = t.TempDir()
					ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
					defer cancel()
					var err error
					if res, err = Run(ctx, cfg); err != nil {
						t.Error(err)
					}
					// Saved before the bubble ends: goroutines a stop
					// left blocked make the bubble's end panic.
					if res != nil {
						results = mergeResult(results, res)
						if saved != "" {
							if err := writeResults(saved, results); err != nil {
								t.Error(err)
							}
						}
					}
				})
				t.Logf("n=%d %s: real %s, CPU %s", n, c, time.Since(wall0).Round(time.Millisecond), (processCPU() - cpu0).Round(time.Millisecond))
			})
		}
	}
	var b strings.Builder
	if err := WriteTable(&b, results); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", b.String())
	if *flagOut == "" {
		return
	}
	if err := os.WriteFile(filepath.Join(*flagOut, "scale.txt"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	// The plot shows one mesh: the WAN results of this run's degree.
	var wan []*Result
	for _, r := range results {
		if r.Profile == "wan" && r.Degree == *flagDegree && r.Remote == *flagRemote {
			wan = append(wan, r)
		}
	}
	mesh := "every validator linked to every other"
	switch {
	case *flagRemote > 0:
		mesh = fmt.Sprintf("each validator dials %d of its region and %d of each other, relaying", *flagDegree, *flagRemote)
	case *flagDegree > 0:
		mesh = fmt.Sprintf("each validator dials %d others, relaying", *flagDegree)
	}
	f, err := os.Create(filepath.Join(*flagOut, "scale.svg"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := WriteSVG(f, "WAN, light load, "+mesh+": submit→QC and bytes against n", wan); err != nil {
		t.Fatal(err)
	}
}

// mergeResult adds r to rs, replacing an earlier result of the same case.
func mergeResult(rs []*Result, r *Result) []*Result {
	key := func(x *Result) string {
		return fmt.Sprintf("%s/%d/%s/%d/%d", x.Profile, x.Validators, x.Case(), x.Degree, x.Remote)
	}
	for i, old := range rs {
		if key(old) == key(r) {
			rs[i] = r
			return rs
		}
	}
	rs = append(rs, r)
	slices.SortStableFunc(rs, func(a, b *Result) int {
		if a.Degree != b.Degree {
			return a.Degree - b.Degree
		}
		if a.Remote != b.Remote {
			return a.Remote - b.Remote
		}
		return a.Validators - b.Validators
	})
	return rs
}

func readResults(path string) ([]*Result, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rs []*Result
	if err := json.Unmarshal(b, &rs); err != nil {
		return nil, fmt.Errorf("%s: %w (remove it to start afresh)", path, err)
	}
	return rs, nil
}

func writeResults(path string, rs []*Result) error {
	b, err := json.MarshalIndent(rs, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
