package sim

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
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
	flagOut        = flag.String("sim.out", "", "folder for scale.txt and scale.svg (empty: print only)")
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
	var results []*Result
	for _, n := range sizes {
		for _, c := range strings.Split(*flagCases, ",") {
			cfg := DefaultConfig()
			cfg.Validators, cfg.Payments = n, *flagPayments
			switch c {
			case "wan":
			case "lan":
				cfg.Profile = LAN()
			case "crashed":
				cfg.Crashed = (n - 1) / 3
			case "partition":
				cfg.PartitionAt, cfg.PartitionFor = 3*cfg.Interval/2, 3*time.Second
			default:
				t.Fatalf("-sim.cases: unknown case %q", c)
			}
			t.Run(fmt.Sprintf("n=%d/%s", n, c), func(t *testing.T) {
				wall0, cpu0 := time.Now(), processCPU()
				synctest.Test(t, func(t *testing.T) {
					cfg.Dir = t.TempDir()
					ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
					defer cancel()
					res, err := Run(ctx, cfg)
					if err != nil {
						t.Error(err)
					}
					if res != nil {
						results = append(results, res)
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
	if err := os.MkdirAll(*flagOut, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*flagOut, "scale.txt"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	var wan []*Result
	for _, r := range results {
		if r.Profile == "wan" {
			wan = append(wan, r)
		}
	}
	f, err := os.Create(filepath.Join(*flagOut, "scale.svg"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := WriteSVG(f, "WAN profile, light load: submit→QC and bytes against n", wan); err != nil {
		t.Fatal(err)
	}
}
