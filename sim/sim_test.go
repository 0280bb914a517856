package sim

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestFloorHandMadeMatrix(t *testing.T) {
	// Three regions: A–B 10 ms, A–C 100 ms, B–C 50 ms, 2 ms inside a region.
	p := fromUpper("hand", []string{"A", "B", "C"}, [][]float64{{2, 10, 100}, {2, 50}, {2}})
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	// Six validators round-robin: v0 A, v1 B, v2 C, v3 A, v4 B, v5 C.
	tests := []struct {
		entry, n, q int
		want        time.Duration
	}{
		{0, 6, 1, 0},                      // the entry alone
		{0, 6, 2, 2 * time.Millisecond},   // v3, same region
		{0, 6, 4, 10 * time.Millisecond},  // v1, v4 in B
		{0, 6, 5, 100 * time.Millisecond}, // first of C
		{2, 6, 4, 50 * time.Millisecond},  // from C: v5 (2), then B (50)
		{1, 4, 3, 10 * time.Millisecond},  // v1 B; v3 A at 10, v0 A at 10
		{0, 6, 7, 0},                      // no such quorum
	}
	for _, tc := range tests {
		if got := p.Floor(tc.entry, tc.n, tc.q); got != tc.want {
			t.Errorf("Floor(entry %d, n %d, q %d) = %s, want %s", tc.entry, tc.n, tc.q, got, tc.want)
		}
	}
}

func TestProfilesValid(t *testing.T) {
	for _, p := range []Profile{WAN(), LAN()} {
		if err := p.Validate(); err != nil {
			t.Error(err)
		}
	}
	bad := fromUpper("bad", []string{"A", "B"}, [][]float64{{1, 5}, {1}})
	bad.RTT[0][1] = 7 * time.Millisecond
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "RTT[0][1]") {
		t.Errorf("asymmetric matrix: got %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	base := DefaultConfig()
	base.Validators, base.Dir = 10, "x"
	tests := []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"ok", func(*Config) {}, ""},
		{"small", func(c *Config) { c.Validators = 3 }, "Validators"},
		{"too many crashed", func(c *Config) { c.Crashed = 4 }, "Crashed"},
		{"no dir", func(c *Config) { c.Dir = "" }, "Dir"},
		{"partition without heal", func(c *Config) { c.PartitionAt = time.Second }, "PartitionFor"},
		{"sparse", func(c *Config) { c.Degree = 3 }, ""},
		{"degree too small", func(c *Config) { c.Degree = 2 }, "Degree"},
		{"regional", func(c *Config) { c.Degree, c.Remote = 3, 1 }, ""},
		{"remote without degree", func(c *Config) { c.Remote = 1 }, "Remote"},
		{"remote negative", func(c *Config) { c.Degree, c.Remote = 3, -1 }, "Remote"},
	}
	for _, tc := range tests {
		c := base
		tc.edit(&c)
		err := c.Validate()
		if (err == nil) != (tc.field == "") || (err != nil && !strings.Contains(err.Error(), tc.field)) {
			t.Errorf("%s: got %v, want an error naming %q", tc.name, err, tc.field)
		}
	}
}

// TestRunSmall runs ten validators on the WAN profile in virtual time:
// every payment is certified, the floor is the matrix's, and the table
// has its columns. No timed assertions: virtual durations depend only on
// the links, but a loaded machine may still reorder events.
func TestRunSmall(t *testing.T) {
	cases := []struct {
		name string
		edit func(*Config)
	}{
		{"wan", func(*Config) {}},
		{"wan f crashed", func(c *Config) { c.Crashed = 3 }},
		{"wan partition heals", func(c *Config) { c.PartitionAt, c.PartitionFor = 1500*time.Millisecond, 3*time.Second }},
		// Each validator dials three others: gossip crosses validators
		// that are not linked to the entry.
		{"wan sparse", func(c *Config) { c.Degree = 3 }},
		// Three of its own region and one of every other region.
		{"wan regional", func(c *Config) { c.Degree, c.Remote = 3, 1 }},
		{"wan sparse partition heals", func(c *Config) {
			c.Degree = 3
			c.PartitionAt, c.PartitionFor = 1500*time.Millisecond, 3*time.Second
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := DefaultConfig()
				cfg.Validators, cfg.Payments, cfg.Dir = 10, 6, t.TempDir()
				tc.edit(&cfg)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
				defer cancel()
				res, err := Run(ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				if res.Certified != cfg.Payments {
					t.Fatalf("certified %d of %d payments", res.Certified, cfg.Payments)
				}
				if res.Quorum != 7 {
					t.Errorf("quorum %d, want 7", res.Quorum)
				}
				live := float64(cfg.Validators - cfg.Crashed)
				// Full without a degree, fewer than all with a random one
				// (a regional one at this size may link nearly everyone).
				full := live - 1
				if (cfg.Degree == 0 && res.Links != full) || (cfg.Degree > 0 && cfg.Remote == 0 && res.Links == full) || res.Links < float64(min(cfg.Degree, 3)) {
					t.Errorf("mean links %.1f with degree %d (%v live)", res.Links, cfg.Degree, live)
				}
				if cfg.PartitionAt > 0 {
					// The payment sent first after the cut (at the next whole
					// interval) gets its QC only once the halves are healed:
					// neither half holds a quorum.
					firstInside := (cfg.PartitionAt + cfg.Interval - 1) / cfg.Interval * cfg.Interval
					if wait := cfg.PartitionAt + cfg.PartitionFor - firstInside; res.QC.Max < wait {
						t.Errorf("slowest QC %s: a payment sent during the partition was certified before the heal (at least %s after it)", res.QC.Max, wait)
					}
				}
				if res.QC.P50 < res.Floor.P50 {
					t.Errorf("QC p50 %s below the physical floor p50 %s", res.QC.P50, res.Floor.P50)
				}
				if res.BytesPerValidator <= 0 || res.CopiesPerValidator <= 0 {
					t.Errorf("bytes %.0f, copies %.1f per payment per validator: want both positive", res.BytesPerValidator, res.CopiesPerValidator)
				}
				var b strings.Builder
				if err := WriteTable(&b, []*Result{res}); err != nil {
					t.Fatal(err)
				}
				for _, col := range Columns {
					if !strings.Contains(b.String(), col) {
						t.Errorf("table lacks column %q:\n%s", col, b.String())
					}
				}
				t.Logf("\n%s", b.String())
			})
		})
	}
}

// A partition's length names its case unless it is the default, so results
// of different cuts are kept apart.
func TestCaseNamesCut(t *testing.T) {
	for _, tc := range []struct {
		r    Result
		want string
	}{
		{Result{Partition: true}, "partition heals"},
		{Result{Partition: true, Cut: DefaultCut}, "partition heals"},
		{Result{Partition: true, Cut: time.Second}, "partition of 1s heals"},
		{Result{Partition: true, Crashed: 3, Cut: 1500 * time.Millisecond}, "3 crashed, partition of 1.5s heals"},
		{Result{Crashed: 3}, "3 crashed"},
		{Result{}, "all up"},
	} {
		if got := tc.r.Case(); got != tc.want {
			t.Errorf("%+v: Case() = %q, want %q", tc.r, got, tc.want)
		}
	}
}
